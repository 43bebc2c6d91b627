"""The baseline: Segment's official Python library (segment-analytics-python 2.4.0) with its
default settings: a 10,000-message in-memory queue, one consumer thread posting batches of
100 every 0.5 s at most, non-blocking `track()` that drops when the queue is full.

It runs in this process, so its producer and its consumer thread share one GIL, as they do
in any application that uses it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from segment.analytics import Client

QUEUE_FULL = "queue is full"
PROPERTIES = {"order_id": "o-1", "revenue": 42.5, "currency": "EUR", "plan": "pro"}
CONTEXT = {"ip": "203.0.113.9", "userAgent": "bench/1.0"}
TIMESTAMP = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


class DropCounter(logging.Handler):
    """Counts the library's "queue is full" warnings (one per dropped message) and keeps
    them off the terminal: a 100k burst would otherwise print ~90,000 lines."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.dropped = 0
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if QUEUE_FULL in message:
            self.dropped += 1
        elif record.levelno >= logging.ERROR and len(self.errors) < 5:
            self.errors.append(message[:200])


@dataclass
class OfficialRun:
    tracked: int = 0  # track() calls
    dropped: int = 0  # the library's own count of messages it dropped
    started: float = 0.0  # epoch of the first track()
    sent_at: dict[str, float] = field(default_factory=dict)  # messageId -> epoch of its track()
    errors: list[str] = field(default_factory=list)


class Official:
    """One client of the library per run, so each run starts with an empty queue."""

    def __init__(self, host: str, write_key: str):
        self.counter = DropCounter()
        logger = logging.getLogger("segment")
        logger.handlers = [self.counter]
        logger.propagate = False
        self.client = Client(write_key=write_key, host=host)  # defaults, on purpose

    def track(self, message_id: str) -> None:
        self.client.track(user_id="user-1", event="Order Completed", properties=PROPERTIES, context=CONTEXT,
                          timestamp=TIMESTAMP, message_id=message_id)

    def close(self, timeout: float) -> bool:
        """Wait (bounded) for the queue to empty, then stop the consumer; True when it emptied.
        `flush()` itself has no timeout: a consumer backing off would hold the benchmark."""
        deadline = time.monotonic() + timeout
        while self.client.queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        emptied = not self.client.queue.unfinished_tasks
        for consumer in self.client.consumers or []:
            consumer.pause()
            consumer.join(timeout=2)
        return emptied

    def _finish(self, run: OfficialRun) -> OfficialRun:
        run.dropped = self.counter.dropped
        run.errors = self.counter.errors
        return run


def sustained(official: Official, prefix: str, seconds: float) -> OfficialRun:
    """As fast as the library delivers, without overflowing its queue: keep the queue near
    full and let the consumer thread set the pace. Measures its delivery capacity."""
    run = OfficialRun(started=time.time())
    queue, deadline = official.client.queue, time.monotonic() + seconds
    while time.monotonic() < deadline:
        if queue.qsize() > queue.maxsize - 1_000:
            time.sleep(0.002)
            continue
        for _ in range(500):
            official.track(f"{prefix}-{run.tracked:09d}")
            run.tracked += 1
    return official._finish(run)


def burst(official: Official, prefix: str, total: int) -> OfficialRun:
    """`total` track() calls as fast as the application can make them."""
    run = OfficialRun(started=time.time())
    for number in range(total):
        official.track(f"{prefix}-{number:09d}")
    run.tracked = total
    return official._finish(run)


def paced(official: Official, prefix: str, rate: float, seconds: float) -> OfficialRun:
    """`rate` track() calls a second, in slices of 10 ms, recording when each was made."""
    run = OfficialRun(started=time.time())
    start, per_slice = time.monotonic(), max(1, round(rate / 100))
    for tick in range(int(seconds * 100)):
        time.sleep(max(0.0, start + tick / 100 - time.monotonic()))
        for _ in range(per_slice):
            message_id = f"{prefix}-{run.tracked:09d}"
            run.sent_at[message_id] = time.time()
            official.track(message_id)
            run.tracked += 1
    return official._finish(run)
