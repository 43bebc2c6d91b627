"""What the emulator remembers: the request log, exact counters, and accepted events."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from . import intake, rules


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class RequestRecord:
    """One request as the emulator saw and answered it."""

    id: int
    time: float
    region: str
    path: str
    kind: str  # "tracking" or "settings"
    write_key: str
    status: int | None  # None when the connection was closed without an answer
    message_ids: list[Any] = field(default_factory=list)
    received: int = 0
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    fault: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": iso_time(self.time),
            "region": self.region,
            "path": self.path,
            "kind": self.kind,
            "writeKey": self.write_key,
            "status": self.status,
            "answered": "connection reset" if self.status is None else str(self.status),
            "messageIds": self.message_ids,
            "events": self.received,
            "accepted": self.accepted,
            "dropped": self.dropped,
            "error": self.error,
            "fault": self.fault,
        }


@dataclass(slots=True)
class Counters:
    """Totals that stay exact however much of the log and the event buffer has rolled over.

    Events of a 200 answer are either accepted or dropped (Segment's silent drops); events of
    any other answer are rejected, and the sender is expected to notice and retry.
    """

    requests: int = 0
    settings_requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    received: int = 0
    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)

    def count(self, record: RequestRecord) -> None:
        status = "reset" if record.status is None else str(record.status)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if record.kind == "settings":
            self.settings_requests += 1
            return
        self.requests += 1
        self.received += record.received
        self.accepted += record.accepted
        for reason, number in record.dropped.items():
            self.dropped[reason] = self.dropped.get(reason, 0) + number
        if record.status != 200:
            reason = record.error or rules.FAULT
            self.rejected[reason] = self.rejected.get(reason, 0) + record.received

    def as_json(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "settingsRequests": self.settings_requests,
            "statuses": dict(self.statuses),
            "received": self.received,
            "accepted": self.accepted,
            "dropped": sum(self.dropped.values()),
            "droppedByReason": dict(self.dropped),
            "duplicates": self.dropped.get(rules.DUPLICATE, 0),
            "rejected": sum(self.rejected.values()),
            "rejectedByReason": dict(self.rejected),
        }


@dataclass(slots=True)
class StoredRequest:
    """Accepted events of one request, kept as the body bytes they arrived in.

    Keeping the body instead of parsed events costs nothing per event on the hot path, holds
    no Python objects for the garbage collector to walk, and is re-parsed only when asked.
    """

    record: RequestRecord
    body: bytes
    dropped_at: frozenset[int]
    assigned_ids: dict[int, str]
    evicted: int = 0  # accepted events already pushed out of the buffer, oldest first

    @property
    def size(self) -> int:
        return self.record.accepted - self.evicted

    def events(self) -> Iterator[dict[str, Any]]:
        """The accepted events as Segment would pass them on, oldest first."""
        call = self.record.path.rsplit("/", 1)[-1]
        events, envelope = intake.decode_stored_events(call, self.body)
        accepted = (i for i in range(min(len(events), rules.MAX_BATCH_EVENTS)) if i not in self.dropped_at)
        for position, index in enumerate(accepted):
            if position >= self.evicted:
                yield _as_delivered(events[index], call, envelope, self.assigned_ids.get(index))


def _as_delivered(
    event: dict[str, Any], call: str, envelope: dict[str, Any], assigned: str | None
) -> dict[str, Any]:
    event = dict(event)
    event.pop("writeKey", None)  # credentials, not event data: Segment does not pass them on
    if assigned:
        event["messageId"] = assigned
    if call in rules.EVENT_TYPES:
        event["type"] = call
    # A batch's own context and integrations apply to each of its calls; the call's win.
    for name in ("context", "integrations"):
        if isinstance(envelope.get(name), dict):
            event[name] = {**envelope[name], **(event.get(name) or {})}
    return event


class EventBuffer:
    """A ring of accepted events, bounded by event count, filled a request at a time."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.size = 0
        self._requests: deque[StoredRequest] = deque()

    def add(self, stored: StoredRequest) -> None:
        if stored.size == 0 or self.capacity <= 0:
            return
        self._requests.append(stored)
        self.size += stored.size
        while self.size > self.capacity:
            oldest = self._requests[0]
            overflow = min(self.size - self.capacity, oldest.size)
            oldest.evicted += overflow
            self.size -= overflow
            if oldest.size == 0:
                self._requests.popleft()

    def find(self, write_key: str | None, message_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` matching events, oldest first."""
        newest_first: list[list[dict[str, Any]]] = []
        wanted = limit
        for stored in reversed(self._requests):
            if wanted <= 0:
                break
            record = stored.record
            if write_key is not None and record.write_key != write_key:
                continue
            if message_id is not None and message_id not in record.message_ids:
                continue
            matches = [
                _listing(record, e) for e in stored.events() if message_id in (None, e.get("messageId"))
            ]
            newest_first.append(matches[-wanted:] if matches else [])
            wanted -= len(newest_first[-1])
        return [event for matches in reversed(newest_first) for event in matches]

    def clear(self) -> None:
        self._requests.clear()
        self.size = 0


def _listing(record: RequestRecord, event: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestId": record.id,
        "receivedAt": iso_time(record.time),
        "region": record.region,
        "path": record.path,
        "writeKey": record.write_key,
        "payload": event,
    }
