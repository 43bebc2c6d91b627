"""The emulator's single source of truth: keys, faults, dedupe, the request log and counters.

One instance serves both listeners (US and EU) from one asyncio loop, so no locking: every
method runs to completion between two awaits.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from . import rules
from .dedupe import DEFAULT_MAX_IDS, DEFAULT_WINDOW_SECONDS, DedupeStore
from .faults import FaultBook
from .intake import Intake
from .records import Counters, EventBuffer, RequestRecord, StoredRequest
from .screening import screen
from .workspaces import SegmentWorkspaces

logger = logging.getLogger("segment_emulator")


DEFAULT_MAX_EVENTS = 200_000
DEFAULT_MAX_REQUESTS = 20_000


@dataclass(slots=True)
class EmulatorOptions:
    max_events: int = DEFAULT_MAX_EVENTS
    max_requests: int = DEFAULT_MAX_REQUESTS
    dedupe_window_seconds: float = DEFAULT_WINDOW_SECONDS
    dedupe_max_ids: int = DEFAULT_MAX_IDS


def mask(write_key: str) -> str:
    """How a write key appears in logs: never in full."""
    return f"•••• {write_key[-4:]}" if len(write_key) > 4 else "••••"


class EmulatorState:
    def __init__(self, options: EmulatorOptions | None = None):
        self.options = options or EmulatorOptions()
        self.keys: dict[str, str] = {}
        self.faults = FaultBook()
        self.dedupe = DedupeStore(self.options.dedupe_window_seconds, self.options.dedupe_max_ids)
        self.log: deque[RequestRecord] = deque(maxlen=self.options.max_requests)
        self.events = EventBuffer(self.options.max_events)
        self.total = Counters()
        self.per_key: dict[str, Counters] = {}
        # Segment's Public API side: tokens, sources made from `keys`, labels, daily usage.
        self.workspaces = SegmentWorkspaces()
        self._ids = itertools.count(1)

    # Keys -------------------------------------------------------------------------------

    def register_key(self, write_key: str, region: str) -> None:
        if region not in rules.REGIONS:
            raise ValueError(f"region must be one of {', '.join(rules.REGIONS)}")
        if not rules.is_usable_write_key(write_key):
            raise ValueError(f"a write key has at least {rules.MIN_WRITE_KEY_CHARS} characters")
        self.keys[write_key] = region
        logger.info("emulator.key_registered", extra={"write_key": mask(write_key), "region": region})

    def unregister_key(self, write_key: str) -> bool:
        found = self.keys.pop(write_key, None) is not None
        logger.info("emulator.key_unregistered", extra={"write_key": mask(write_key), "found": found})
        return found

    # Recording ----------------------------------------------------------------------------

    def record(self, region: str, path: str, kind: str, write_key: str, status: int | None) -> RequestRecord:
        return RequestRecord(next(self._ids), time.time(), region, path, kind, write_key, status)

    def refuse(self, record: RequestRecord, intake: Intake, error: str | None, fault: str | None) -> None:
        """Log a request answered with anything but 200: none of its events count."""
        record.message_ids = rules.message_ids(intake.events)
        record.received = len(intake.events)
        record.error = error
        record.fault = fault
        self.commit(record)

    def accept(self, record: RequestRecord, intake: Intake) -> None:
        """Log a request answered 200, deciding the fate of each of its events."""
        events = intake.events
        record.received = len(events)
        registered = self.keys.get(intake.write_key)
        if registered == record.region:
            self._screen(record, intake)
        else:
            # Segment's quirks: an unknown key or a key from the other region still gets a 200.
            reason = rules.UNKNOWN_KEY if registered is None else rules.WRONG_REGION
            record.message_ids = rules.message_ids(events)
            record.dropped = {reason: len(events)} if events else {}
        self.commit(record)

    def commit(self, record: RequestRecord) -> None:
        self.log.append(record)
        self.total.count(record)
        if record.write_key:
            counters = self.per_key.get(record.write_key)
            if counters is None:
                counters = self.per_key[record.write_key] = Counters()
            counters.count(record)
            if record.kind == "tracking" and record.status == 200:
                self.workspaces.count_call(record.write_key, time.strftime("%Y-%m-%d", time.gmtime(record.time)))
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("emulator.request", extra=_log_fields(record))

    def _screen(self, record: RequestRecord, intake: Intake) -> None:
        events = intake.events
        kept = events[: rules.MAX_BATCH_EVENTS] if len(events) > rules.MAX_BATCH_EVENTS else events
        now = time.monotonic()
        self.dedupe.forget_expired(now)
        screening = screen(kept, intake.implied_type, self.dedupe.seen)
        self.dedupe.expire_later(screening.accepted_ids, now)
        record.accepted = len(screening.accepted_ids)
        record.dropped = screening.dropped
        if len(events) > len(kept):
            record.dropped[rules.OVER_BATCH_LIMIT] = len(events) - len(kept)
        if record.accepted == len(events) and not screening.assigned_ids:
            record.message_ids = screening.accepted_ids
        else:
            record.message_ids = _effective_ids(events, screening.assigned_ids)
        dropped_at = frozenset(screening.dropped_at)
        self.events.add(StoredRequest(record, intake.body, dropped_at, screening.assigned_ids))

    # Reading ------------------------------------------------------------------------------

    @property
    def last_request_id(self) -> int:
        return self.log[-1].id if self.log else 0

    def requests(
        self, *, write_key: str | None, since: int, limit: int, kind: str | None, message_id: str | None
    ) -> list[RequestRecord]:
        """The newest `limit` matching requests with an id above `since`, oldest first."""
        found: list[RequestRecord] = []
        for record in reversed(self.log):
            if record.id <= since or len(found) >= limit:
                break
            if write_key is not None and record.write_key != write_key:
                continue
            if kind is not None and record.kind != kind:
                continue
            if message_id is not None and message_id not in record.message_ids:
                continue
            found.append(record)
        found.reverse()
        return found

    def stats(self, write_key: str | None = None) -> dict[str, Any]:
        if write_key is not None:
            return {"writeKey": write_key, **self.per_key.get(write_key, Counters()).as_json()}
        return {
            "total": self.total.as_json(),
            "keys": {key: counters.as_json() for key, counters in self.per_key.items()},
            "bufferedEvents": self.events.size,
            "rememberedMessageIds": len(self.dedupe),
        }

    def reset(self, *, keys: bool = False) -> None:
        """Forget everything recorded; keep registered keys unless `keys` is true."""
        self.log.clear()
        self.events.clear()
        self.dedupe.clear()
        self.faults.clear()
        self.total = Counters()
        self.per_key.clear()
        self.workspaces.daily_calls.clear()
        if keys:
            self.keys.clear()
            self.workspaces.clear()
        logger.info("emulator.reset", extra={"keys_cleared": keys})


def _effective_ids(events: list[Any], assigned: dict[int, str]) -> list[Any]:
    ids = rules.message_ids(events)
    for index, message_id in assigned.items():
        ids[index] = message_id
    return ids


def _log_fields(record: RequestRecord) -> dict[str, Any]:
    return {
        "region": record.region,
        # The CDN path holds the write key itself.
        "path": record.path.replace(record.write_key, mask(record.write_key))
        if record.write_key
        else record.path,
        "write_key": mask(record.write_key),
        "status": record.status,
        "events": record.received,
        "accepted": record.accepted,
        "dropped": record.dropped,
        "error": record.error,
        "fault": record.fault,
    }
