"""Segment's global messageId dedupe: one store for every write key, as in Segment itself."""

from __future__ import annotations

from collections import deque
from typing import Final

DEFAULT_WINDOW_SECONDS: Final = 24 * 3600.0
# Past this many remembered ids the oldest are forgotten early: Segment itself only promises
# to drop "about 99%" of repeats, and an emulator left running under load must not grow forever.
DEFAULT_MAX_IDS: Final = 5_000_000


class DedupeStore:
    """messageIds accepted within the window, forgotten oldest first.

    `seen` is a set, not a dict: a lookup in a set of millions touches one cache line where
    a dict touches two, and the dedupe lookup is the emulator's costliest per-event step.
    The screening loop adds to it directly; the ids of one request expire together, from a
    queue of (accepted at, ids) in acceptance order.
    """

    def __init__(self, window_seconds: float = DEFAULT_WINDOW_SECONDS, max_ids: int = DEFAULT_MAX_IDS):
        self.window_seconds = window_seconds
        self.max_ids = max_ids
        self.seen: set[str] = set()
        self._by_age: deque[tuple[float, list[str]]] = deque()

    def __len__(self) -> int:
        return len(self.seen)

    def forget_expired(self, now: float) -> None:
        """Drop ids older than the window, and the oldest ones when over `max_ids`."""
        horizon = now - self.window_seconds
        by_age = self._by_age
        while by_age and (by_age[0][0] <= horizon or len(self.seen) > self.max_ids):
            self._forget(by_age.popleft()[1])

    def expire_later(self, ids: list[str], now: float) -> None:
        """Queue ids just added to `seen` for expiry."""
        if ids:
            self._by_age.append((now, ids))

    def clear(self) -> None:
        self.seen.clear()
        self._by_age.clear()

    def _forget(self, ids: list[str]) -> None:
        # An id is only ever accepted once while remembered, so the ids of the oldest request
        # can simply go.
        self.seen.difference_update(ids)
