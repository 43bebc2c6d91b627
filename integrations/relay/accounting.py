"""Recording what delivery did, as it does it: one DeliveryAttempt per request to Segment,
and the connection's DeliveryCount for the current 10-minute bucket (events delivered,
dead-lettered, retried and filtered, API calls, bytes, latency histogram).

Callers record inside the transaction that moves the connection's position, so the counts
and the position never disagree; a delivery run does both with `attempt_settle`, which on
PostgreSQL is one statement (one round trip instead of about ten). Only the run holding a connection's lease (or a replay,
which locks the bucket row too) writes its counts, so the read-modify-write of a bucket is
done under a row lock rather than with expressions.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.db import connection as db
from django.db import transaction

from integrations.models import AttemptOutcome, Connection, DeliveryAttempt, DeliveryCount, FilteredBatch
from integrations.models.deliveries import LATENCY_BOUNDS, bucket_of

REPLY_LENGTH = 300


@dataclass(frozen=True)
class Sent:
    """What one request carried: the seqs it spanned, how many events and bytes."""

    first_seq: int
    last_seq: int
    events: int
    bytes: int


def attempt_record(*, connection_id: int, sent: Sent, started_at: datetime, duration_ms: int, status: int | None,
                   outcome: AttemptOutcome, reply: str, attempt: int = 1, latencies: Iterable[float] = (),
                   replay: bool = False) -> DeliveryAttempt:
    """Log one request and add it to the counts: delivered events (with their latencies, in
    seconds from receipt) for a 200, retried events for a retryable failure."""
    with transaction.atomic():
        row = DeliveryAttempt.objects.create(
            connection_id=connection_id, started_at=started_at, duration_ms=duration_ms, events=sent.events,
            bytes=sent.bytes, first_seq=sent.first_seq, last_seq=sent.last_seq, status=status, outcome=outcome,
            reply=reply[:REPLY_LENGTH], attempt=attempt, replay=replay)
        _add(connection_id, started_at, api_calls=1, bytes=sent.bytes,
             delivered=sent.events if outcome == AttemptOutcome.DELIVERED else 0,
             retried=sent.events if outcome == AttemptOutcome.RETRYING else 0,
             latencies=latencies if outcome == AttemptOutcome.DELIVERED else ())
    return row


def attempt_settle(*, connection_id: int, sent: Sent, started_at: datetime, duration_ms: int, status: int | None,
                   outcome: AttemptOutcome, reply: str, attempt: int, latencies: Sequence[float] = (),
                   advance_to: int | None = None) -> None:
    """`attempt_record`, and with `advance_to` the connection's position moved there (its
    failures and wait cleared), atomically. On PostgreSQL one statement does all three
    writes: the position, the attempt row and the bucket's counts (an upsert whose row lock
    serialises it with a replay's read-modify-write)."""
    if db.vendor != "postgresql":
        with transaction.atomic():
            if advance_to is not None:
                Connection.objects.filter(pk=connection_id, delivered_seq__lt=advance_to).update(
                    delivered_seq=advance_to, failures=0, next_attempt_at=None)
            attempt_record(connection_id=connection_id, sent=sent, started_at=started_at, duration_ms=duration_ms,
                           status=status, outcome=outcome, reply=reply, attempt=attempt, latencies=latencies)
        return
    delivered = outcome == AttemptOutcome.DELIVERED
    added = histogram(latencies) if delivered else [0] * (len(LATENCY_BOUNDS) + 1)
    with db.cursor() as cursor:
        cursor.execute(_SETTLE_SQL, [
            advance_to or 0, connection_id, advance_to or 0, advance_to is not None,
            connection_id, started_at, duration_ms, sent.events, sent.bytes, sent.first_seq, sent.last_seq, status,
            outcome, reply[:REPLY_LENGTH], attempt,
            connection_id, bucket_of(started_at), sent.events if delivered else 0,
            sent.events if outcome == AttemptOutcome.RETRYING else 0, sent.bytes, orjson.dumps(added).decode(),
            max(latencies, default=0.0) if delivered else 0.0, any(added)])


def _settle_sql() -> str:
    connection, attempt, count = (model._meta for model in (Connection, DeliveryAttempt, DeliveryCount))
    return f"""
WITH moved AS (
  UPDATE {connection.db_table} SET delivered_seq = %s, failures = 0, next_attempt_at = NULL
  WHERE id = %s AND delivered_seq < %s AND %s RETURNING id),
attempt AS (
  INSERT INTO {attempt.db_table} (connection_id, started_at, duration_ms, events, bytes, first_seq, last_seq, status,
                                  outcome, reply, attempt, replay)
  VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, false) RETURNING id)
INSERT INTO {count.db_table} AS c (connection_id, bucket, delivered, failed, retried, filtered, api_calls, bytes,
                                   latency, latency_max)
VALUES (%s, %s, %s, 0, %s, 0, 1, %s, %s::jsonb, %s)
ON CONFLICT (connection_id, bucket) DO UPDATE SET
  delivered = c.delivered + EXCLUDED.delivered, retried = c.retried + EXCLUDED.retried,
  api_calls = c.api_calls + 1, bytes = c.bytes + EXCLUDED.bytes,
  latency = CASE
    WHEN NOT %s THEN c.latency
    WHEN jsonb_array_length(c.latency) <> jsonb_array_length(EXCLUDED.latency) THEN EXCLUDED.latency
    ELSE (SELECT jsonb_agg(a.n::bigint + b.n::bigint ORDER BY a.i)
          FROM jsonb_array_elements_text(c.latency) WITH ORDINALITY AS a(n, i)
          JOIN jsonb_array_elements_text(EXCLUDED.latency) WITH ORDINALITY AS b(n, i) USING (i)) END,
  latency_max = GREATEST(c.latency_max, EXCLUDED.latency_max)
"""  # noqa: S608


_SETTLE_SQL = _settle_sql()


def failures_record(*, connection_id: int, at: datetime, events: int) -> None:
    """Count events that became dead letters."""
    _add(connection_id, at, failed=events)


def filtered_record(*, connection_id: int, at: datetime, held: Sequence[tuple[int, str, str]]) -> None:
    """Count events the connection's filters held back, `(seq, filter title, outcome)` each,
    and keep which ones for the debugger: one row per batch, not per event."""
    if not held:
        return
    with transaction.atomic():
        FilteredBatch.objects.create(connection_id=connection_id, first_seq=min(h[0] for h in held),
                                     last_seq=max(h[0] for h in held), at=at, events=[list(h) for h in held])
        _add(connection_id, at, filtered=len(held))


def histogram(latencies: Iterable[float]) -> list[int]:
    counts = [0] * (len(LATENCY_BOUNDS) + 1)
    for seconds in latencies:
        counts[bisect.bisect_left(LATENCY_BOUNDS, seconds)] += 1
    return counts


def histogram_percentile(counts: Sequence[int], quantile: float, ceiling: float = 0.0) -> float | None:
    """The latency (seconds) below which `quantile` of the counted events fall, interpolated
    within its bucket, and never above `ceiling` (the slowest event seen) when one is known;
    None without events. The open last bucket reports its lower bound."""
    value = _interpolated(counts, quantile)
    return min(value, ceiling) if value is not None and ceiling > 0 else value


def _interpolated(counts: Sequence[int], quantile: float) -> float | None:
    total = sum(counts)
    if not total:
        return None
    rank, seen = quantile * total, 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS[index - 1] if index else 0.0
            if index == len(LATENCY_BOUNDS):
                return low
            return low + (LATENCY_BOUNDS[index] - low) * (rank - seen) / count
        seen += count
    return LATENCY_BOUNDS[-1]


def _add(connection_id: int, at: datetime, *, latencies: Iterable[float] = (), **amounts: int) -> None:
    latencies = list(latencies)
    with transaction.atomic():
        row, _ = DeliveryCount.objects.select_for_update().get_or_create(
            connection_id=connection_id, bucket=bucket_of(at),
            defaults={"latency": [0] * (len(LATENCY_BOUNDS) + 1)})
        for field, amount in amounts.items():
            setattr(row, field, getattr(row, field) + amount)
        added = histogram(latencies)
        if any(added):
            current = row.latency if len(row.latency) == len(added) else [0] * len(added)
            row.latency = [a + b for a, b in zip(current, added, strict=True)]
            row.latency_max = max(row.latency_max, *latencies)
        row.save()
