"""A connection's delivery history over the seeded days: one DeliveryAttempt per request, the
DeliveryCount buckets those requests add up to, and the dead letters they left.

Counts are derived from the attempts as `integrations.relay.accounting` derives them (each
attempt counts in the bucket of its start; delivered events with their latencies, retried
events, API calls, bytes; dead letters in the bucket they were made), so the two tables
agree exactly, as they do in production. The story of each connection (see `Story`) decides
what happens: ordinary buckets go out in batches of about 40 events (a steady trickle), an
outage retries with backoff and then catches up in full batches, a refused event is split out
by bisection and becomes a dead letter, a paused connection stops, an expired one loses its
oldest events after the maximum age.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from dashboard_seed_events import BUCKET, BUCKETS_PER_DAY, Traffic
from dashboard_tenants import Line, Story

from integrations.models.deliveries import LATENCY_BOUNDS

BATCH_MEAN = 40  # events per request while events trickle in
EVENT_BYTES = 810  # an event as sent, its messageId included (the seeded bodies average ~760 bytes)
FULL_BATCH = min(2_500, 475_000 // EVENT_BYTES)  # what a catch-up request carries (the byte cap binds)
MAX_AGE_BUCKETS = 7 * BUCKETS_PER_DAY  # RELAY_MAX_EVENT_AGE_HOURS = 168
DELIVERED = '{"success": true}'
REFUSED_EVENT = ('{"success": false, "error": "invalid_batch", "message": "Event properties must be an object, '
                 'not a string."}')
# The share of a bucket's delivered events per latency bucket (see LATENCY_BOUNDS) when
# nothing is wrong: mostly 50-250 ms from ingest to Segment's 200.
STEADY_LATENCY = (0.07, 0.33, 0.41, 0.12, 0.045, 0.015, 0.01, 0, 0, 0, 0, 0, 0)
# Request durations: the median grows with the batch, spread log-normally (sampled once).
SPREAD = sorted(random.Random(7).lognormvariate(0, 0.35) for _ in range(1024))
RETRYABLE_ANSWERS = (
    (429, '{"success": false, "message": "Too many requests"}'),
    (503, "<html><body><h1>503 Service Unavailable</h1></body></html>"),
    (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
    (None, "No answer from Segment (timeout)."),
)
ATTEMPT_COLUMNS = ("connection_id", "started_at", "duration_ms", "events", "bytes", "first_seq", "last_seq",
                   "status", "outcome", "reply", "attempt", "replay")
ATTEMPT_TYPES = ("int8", "timestamptz", "int4", "int4", "int4", "int8", "int8", "int2", "text", "text", "int4", "bool")
COUNT_COLUMNS = ("connection_id", "bucket", "delivered", "failed", "retried", "filtered", "api_calls", "bytes", "latency",
                 "latency_max")
COUNT_TYPES = ("int8", "timestamptz", "int4", "int4", "int4", "int4", "int4", "int8", "jsonb", "float8")
AttemptRow = tuple[int, datetime, int, int, int, int, int, int | None, str, str, int, bool]


@dataclass
class Letter:
    """A dead letter to write once its event's body is made."""

    seq: int
    reason: str
    status: int | None
    response: str
    created_at: datetime
    received_at: datetime
    replayed_at: datetime | None = None


@dataclass
class Count:
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    api_calls: int = 0
    bytes: int = 0
    steady: int = 0  # delivered events whose latencies follow STEADY_LATENCY
    late: list[int] | None = None  # the latency histogram of the others

    def latency(self) -> list[int]:
        counts = steady_latency(self.steady)
        return [a + b for a, b in zip(counts, self.late, strict=True)] if self.late else counts

    def latency_max(self) -> float:
        """The slowest event's latency: the upper bound of the slowest latency bucket used (twice
        the last bound for the open-ended one)."""
        used = [i for i, count in enumerate(self.latency()) if count]
        if not used:
            return 0.0
        return LATENCY_BOUNDS[used[-1]] if used[-1] < len(LATENCY_BOUNDS) else LATENCY_BOUNDS[-1] * 2


class Ledger:
    """Attempts, counts and dead letters of one connection, as delivery would have written them."""

    def __init__(self, line: Line, traffic: Traffic, rnd: random.Random, now: datetime) -> None:
        self.line, self.traffic, self.rnd, self.now = line, traffic, rnd, now
        self.attempts: list[AttemptRow] = []
        self.counts: dict[int, Count] = {}
        self.letters: list[Letter] = []
        self.written = 0  # attempts already copied to the database

    # Recording, as integrations.relay.accounting does --------------------------------------

    def attempt(self, at: datetime, first: int, last: int, status: int | None, outcome: str, reply: str, *,
                attempt: int = 1, replay: bool = False, late: list[int] | None = None) -> None:
        """One request; delivered events count with steady latencies unless `late` says otherwise."""
        events = last - first + 1
        size = events * EVENT_BYTES + 60
        if status is None:
            duration = 10_000  # no answer: SEGMENT_TIMEOUT_SECONDS
        else:
            duration = int((90 + events // 4) * SPREAD[int(self.rnd.random() * len(SPREAD))])
        self.attempts.append((self.line.id, at, duration, events, size, first, last, status, outcome, reply,
                              attempt, replay))
        count = self._count(at)
        count.api_calls += 1
        count.bytes += size
        if outcome == "delivered":
            count.delivered += events
            if late is None:
                count.steady += events
            else:
                count.late = [a + b for a, b in zip(count.late or [0] * len(late), late, strict=True)]
        elif outcome == "retrying":
            count.retried += events

    def dead_letter(self, letter: Letter) -> None:
        self.letters.append(letter)
        self._count(letter.created_at).failed += 1

    def _count(self, at: datetime) -> Count:
        bucket = int((at - self.traffic.first_bucket) / BUCKET)
        count = self.counts.get(bucket)
        if count is None:
            count = self.counts[bucket] = Count()
        return count

    # What happened, bucket by bucket --------------------------------------------------------

    def deliver(self, bucket: int, position: int, target: int, *, waited_buckets: int = 0) -> int:
        """Send (position, target] during `bucket`, in requests of about BATCH_MEAN events (or
        full batches after an outage); each request may carry an event Segment refuses.
        Returns the new position."""
        pending = target - position
        if pending <= 0:
            return position
        requests = max(1, math.ceil(pending / (FULL_BATCH if waited_buckets else BATCH_MEAN)))
        start = self.traffic.time_of(bucket)
        span = min(BUCKET, self.now - start).total_seconds()
        random = self.rnd.random
        refusing = self.line.spell_rejects if self.line.spell and self.line.spell[0] <= bucket < self.line.spell[1] \
            else self.line.rejects
        for index in range(requests):
            first = position + 1
            last = min(target, position + math.ceil(pending / requests))
            at = start + timedelta(seconds=span * (index + random()) / requests)
            if random() < refusing:
                self.split_refused(at, first, last)
            else:
                late = late_latency(last - first + 1, waited_buckets) if waited_buckets else None
                self.attempt(at, first, last, 200, "delivered", DELIVERED, late=late)
            position = last
        return position

    def split_refused(self, at: datetime, first: int, last: int) -> None:
        """Segment refused the batch: bisect until the refused event stands alone (each half a
        recorded attempt), then dead-letter it. Its halves that Segment took count as delivered."""
        bad = first + int(self.rnd.random() * (last - first + 1))
        step = timedelta(milliseconds=150)
        while True:
            self.attempt(at, first, last, 400, "rejected", REFUSED_EVENT)
            at += step
            if first == last:
                break
            middle = (first + last) // 2
            good = (middle + 1, last) if bad <= middle else (first, middle)
            self.attempt(at, *good, 200, "delivered", DELIVERED)
            at += step
            first, last = (first, middle) if bad <= middle else (middle + 1, last)
        received = self.traffic.time_of(self.traffic.bucket_of_seq(bad))
        letter = Letter(bad, "rejected", 400, REFUSED_EVENT, at, received)
        self.dead_letter(letter)
        replayed = at + timedelta(hours=self.rnd.uniform(1, 30))
        if self.rnd.random() < 0.2 and replayed < self.now:  # a person fixed the cause and replayed it
            self.attempt(replayed, bad, bad, 200, "delivered", DELIVERED, replay=True)
            letter.replayed_at = replayed

    def outage(self, bucket: int, length: int, position: int) -> int:
        """Segment failed for `length` buckets: each retry (after a backoff, as delivery backs
        off) re-sends the first pending batch and nothing moves. Returns the failures."""
        failures, at = 0, self.traffic.time_of(bucket) + timedelta(seconds=self.rnd.uniform(0, 300))
        end = min(self.traffic.time_of(bucket + length), self.now)
        status, reply = RETRYABLE_ANSWERS[self.rnd.randrange(len(RETRYABLE_ANSWERS))]
        while at < end:
            seen = self._seen(at)
            if seen <= position:  # nothing waiting yet: the next wake-up comes with the next events
                at = self.traffic.time_of(int((at - self.traffic.first_bucket) / BUCKET) + 1)
                continue
            self.attempt(at, position + 1, min(seen, position + FULL_BATCH), status, "retrying", reply,
                         attempt=failures + 1)
            failures += 1
            at += timedelta(seconds=min(300.0, 0.5 * 2 ** (failures - 1)) * self.rnd.uniform(0.5, 1.5))
        return failures

    def _seen(self, at: datetime) -> int:
        """The log's end at a moment (the end of the bucket before it, near enough)."""
        bucket = int((at - self.traffic.first_bucket) / BUCKET)
        return self.traffic.starts[min(bucket, len(self.traffic.starts) - 1)]

    def expire(self, paused: int, resumed: int, position: int, hours: int) -> int:
        """Hourly retention sweeps while paused: events older than the maximum age become dead
        letters and the position moves past them. Returns the position at resume."""
        for bucket in range(paused + MAX_AGE_BUCKETS, resumed, 6):
            sweep = self.traffic.time_of(bucket) + timedelta(minutes=3, seconds=self.rnd.uniform(0, 30))
            old_enough = self.traffic.starts[bucket - MAX_AGE_BUCKETS]
            while position < old_enough:
                position += 1
                received = self.traffic.time_of(self.traffic.bucket_of_seq(position))
                self.dead_letter(Letter(position, "expired", None, f"Not delivered within {hours} hours.",
                                        sweep, received))
        return position


def steady_latency(events: int) -> list[int]:
    counts = [int(events * share) for share in STEADY_LATENCY]
    counts[2] += events - sum(counts)
    return counts


def late_latency(events: int, waited_buckets: int) -> list[int]:
    """Events that waited out an outage: spread from a minute up to its length."""
    longest = waited_buckets * BUCKET.total_seconds()
    slots = [i for i, bound in enumerate(LATENCY_BOUNDS) if 30 <= bound <= max(60.0, longest * 2)]
    slots = slots or [len(LATENCY_BOUNDS)]
    if longest > LATENCY_BOUNDS[-1]:
        slots.append(len(LATENCY_BOUNDS))
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for index, slot in enumerate(slots):
        counts[slot] = events // len(slots) + (1 if index < events % len(slots) else 0)
    return counts


def history(line: Line, traffic: Traffic, rnd: random.Random, now: datetime) -> Ledger:
    """Play the connection's story from its creation to now; sets its position and failures."""
    ledger = Ledger(line, traffic, rnd, now)
    position = traffic.starts[line.created_bucket]
    last_bucket = len(traffic.counts) - 1
    outages = dict(line.incidents)
    waited, bucket = 0, line.created_bucket
    while bucket <= last_bucket:
        if line.stop_bucket is not None and bucket >= line.stop_bucket:
            position = _stopped(ledger, bucket, position)
            break
        if line.pause and bucket == line.pause[0]:
            _refuse_key(ledger, bucket, position)
            position = ledger.expire(*line.pause, position, hours=MAX_AGE_BUCKETS // 6)
            waited, bucket = line.pause[1] - line.pause[0], line.pause[1]
            continue
        if bucket in outages:
            ledger.outage(bucket, outages[bucket], position)
            waited, bucket = outages[bucket], bucket + outages[bucket]
            continue
        target = traffic.starts[bucket] + traffic.counts[bucket]
        if bucket == last_bucket:
            target -= min(traffic.counts[bucket], rnd.randrange(4))  # a few still in flight
        position = ledger.deliver(bucket, position, target, waited_buckets=waited)
        waited, bucket = 0, bucket + 1
    line.delivered_seq = position
    return ledger


def _stopped(ledger: Ledger, bucket: int, position: int) -> int:
    """The story's end: a refused key (paused), retries still going on (behind), or nothing
    (disabled). The connection's `failures` is what is left of it now."""
    story = ledger.line.story
    if story == Story.PAUSED:
        _refuse_key(ledger, bucket, position)
        ledger.line.failures = 1
    elif story == Story.BEHIND:
        ledger.line.failures = ledger.outage(bucket, len(ledger.traffic.counts) - bucket, position)
    return position


def _refuse_key(ledger: Ledger, bucket: int, position: int) -> None:
    at = ledger.traffic.time_of(bucket) + timedelta(seconds=ledger.rnd.uniform(0, 500))
    last = min(ledger.traffic.last_seq, position + BATCH_MEAN)
    ledger.attempt(at, position + 1, max(position + 1, last), 401, "refused",
                   '{"success": false, "message": "Unauthorized: invalid write key"}')
