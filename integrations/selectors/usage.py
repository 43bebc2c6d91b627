"""What a connection sent and what waits for it: the backlog, counts per window and per
day, dead letters no replay delivered, and the attempt log.

Every figure comes from `DeliveryCount` (per connection and 10-minute bucket) or
`DeliveryAttempt` rows, read through their (connection, time) indexes, plus single probes of
the event log by its unique (workspace, seq) index; nothing here counts the event log.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import TruncDate

from integrations.models import (
    AttemptOutcome,
    Connection,
    DeadLetter,
    DeliveryAttempt,
    DeliveryCount,
    Event,
    EventStream,
)
from integrations.models.deliveries import LATENCY_BOUNDS, bucket_of
from integrations.relay.accounting import histogram_percentile

WINDOWS = (("hour", "Last hour", timedelta(hours=1)), ("day", "24 hours", timedelta(days=1)),
           ("week", "7 days", timedelta(days=7)))
CHART_DAYS = 30
# Requests to Segment that delivered nothing.
FAILED_OUTCOMES = (AttemptOutcome.REJECTED, AttemptOutcome.RETRYING, AttemptOutcome.REFUSED)
ATTEMPTS_PAGE_SIZE = 50
# Dead letters are counted up to this many; past it the page says "10,000+".
DEAD_LETTER_COUNT_CAP = 10_000


# --- backlog ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    waiting: int
    oldest_received_at: datetime | None

    def age(self, now: datetime) -> timedelta | None:
        return max(timedelta(0), now - self.oldest_received_at) if self.oldest_received_at else None


def connection_backlog(*, connection: Connection) -> Backlog:
    """Events waiting (seqs are dense, so the log's end minus the position) and when the
    first of them arrived: one probe of the (workspace, seq) index."""
    # Sliced rather than .first(): no ORDER BY id, so the plan is the unique index's probe.
    last_seq = next(iter(EventStream.objects.filter(workspace_id=connection.workspace_id)
                         .values_list("last_seq", flat=True)[:1]), 0)
    waiting = max(0, last_seq - connection.delivered_seq)
    oldest = None
    if waiting:
        oldest = next(iter(Event.objects.filter(workspace_id=connection.workspace_id, seq=connection.delivered_seq + 1)
                           .values_list("received_at", flat=True)[:1]), None)
    return Backlog(waiting, oldest)


# --- counts per window ------------------------------------------------------------------


@dataclass
class Totals:
    """Sums of a connection's DeliveryCount rows over one window."""

    key: str
    label: str
    delivered: int = 0
    failed: int = 0
    filtered: int = 0  # held back by the connection's filters: neither delivered nor failed
    # Events in requests that failed and were tried again, once per such request: an event
    # that failed 5 times counts 5. The buckets cannot tell how many distinct events that is.
    retried: int = 0
    api_calls: int = 0
    # Of those API calls, the ones that delivered nothing (rejected, will retry, key refused).
    failed_calls: int = 0
    bytes: int = 0
    # Of the dead letters of the window, those no replay has delivered (from DeadLetter rows).
    undelivered: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    latency_max: float = 0.0

    @property
    def p50(self) -> float | None:
        return histogram_percentile(self.latency, 0.5, self.latency_max)

    @property
    def p95(self) -> float | None:
        return histogram_percentile(self.latency, 0.95, self.latency_max)

    def add(self, delivered: int, failed: int, retried: int, api_calls: int, sent_bytes: int,
            latency: list[int], latency_max: float = 0.0, filtered: int = 0) -> None:
        # A row counted before latency_max existed knows no maximum: then neither does the window.
        self.latency_max = max(self.latency_max, latency_max if latency_max or not any(latency) else math.inf)
        self.delivered += delivered
        self.failed += failed
        self.retried += retried
        self.filtered += filtered
        self.api_calls += api_calls
        self.bytes += sent_bytes
        if len(latency) == len(self.latency):
            self.latency = list(map(operator.add, self.latency, latency))


def connection_totals(*, connection: Connection, now: datetime) -> list[Totals]:
    """Delivered, dead-lettered, retried and filtered events, API calls (and how many of them
    failed), bytes and latency for the last hour, 24 hours and 7 days: one range read of at
    most 7 * 144 + 1 bucket rows and one of the attempt log's (connection, outcome, started_at)
    index for the failed calls. A window starts at the bucket its start falls in, so it may
    reach up to 10 minutes further back; the failed calls are counted from the same start."""
    totals = [Totals(key, label) for key, label, _ in WINDOWS]
    starts = [bucket_of(now - length) for _, _, length in WINDOWS]
    # Tuples, not model instances: a week is a thousand rows, and building a model (with its
    # deferred-field bookkeeping) for each cost more than the query.
    rows = DeliveryCount.objects.filter(connection=connection, bucket__gte=min(starts)).values_list(
        "bucket", "delivered", "failed", "retried", "api_calls", "bytes", "latency", "latency_max", "filtered")
    for bucket, delivered, failed, retried, api_calls, sent_bytes, latency, latency_max, filtered in rows:
        for total, start in zip(totals, starts, strict=True):
            if bucket >= start:
                total.add(delivered, failed, retried, api_calls, sent_bytes, latency, latency_max, filtered)
    failed_calls = DeliveryAttempt.objects.filter(
        connection=connection, outcome__in=FAILED_OUTCOMES, started_at__gte=min(starts)).aggregate(
        **{total.key: Count("pk", filter=Q(started_at__gte=start)) for total, start in zip(totals, starts, strict=True)})
    for total in totals:
        total.failed_calls = failed_calls[total.key] or 0
    return totals


def undelivered_dead_letters(*, connection: Connection, now: datetime) -> dict[str, int]:
    """Dead letters no replay has delivered yet, by window ("hour", "day", "week"): one read
    of the partial index on (connection, created_at) that holds only those rows."""
    starts = {key: now - length for key, _, length in WINDOWS}
    counts = DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True,
                                       created_at__gte=min(starts.values())).aggregate(
        **{key: Count("connection_id", filter=Q(created_at__gte=start)) for key, start in starts.items()})
    return {key: counts[key] or 0 for key in starts}


def dead_letters_count(*, connection: Connection) -> int:
    """The connection's dead letters that no replay delivered, counted up to
    DEAD_LETTER_COUNT_CAP + 1 (the page shows "10,000+" past the cap), so the count stays
    one bounded read of the partial index that holds only those."""
    return (DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True).order_by()
            .values("pk")[:DEAD_LETTER_COUNT_CAP + 1].count())


# --- counts per day ---------------------------------------------------------------------


@dataclass(frozen=True)
class DayUsage:
    day: date
    delivered: int
    api_calls: int


def connection_daily_usage(*, connection: Connection, today: date, days: int = CHART_DAYS) -> list[DayUsage]:
    """Events delivered and API calls made per UTC day, oldest first, days without activity
    as zeros: one grouped read of at most `days` * 144 bucket rows."""
    first = today - timedelta(days=days - 1)
    rows = (DeliveryCount.objects.filter(connection=connection, bucket__gte=datetime.combine(first, time.min, UTC))
            .annotate(day=TruncDate("bucket", tzinfo=UTC)).values("day")
            .annotate(delivered=Sum("delivered"), api_calls=Sum("api_calls")).order_by("day"))
    by_day: dict[date, tuple[int, int]] = {row["day"]: (row["delivered"] or 0, row["api_calls"] or 0) for row in rows}
    days_shown = (first + timedelta(days=offset) for offset in range(days))
    return [DayUsage(day, *by_day.get(day, (0, 0))) for day in days_shown]


# --- the attempt log --------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptPage:
    attempts: list[DeliveryAttempt]
    newer: int | None  # cursor for the page of newer attempts (the first id shown), if any
    older: int | None  # cursor for the page of older attempts (the last id shown), if any


def attempts_for_connection(*, connection: Connection, outcome: str | None = None) -> QuerySet[DeliveryAttempt]:
    attempts = DeliveryAttempt.objects.filter(connection=connection)
    if outcome:
        attempts = attempts.filter(outcome=outcome)
    return attempts


def attempts_page(*, connection: Connection, outcome: str | None = None, before: int | None = None,
                  after: int | None = None, size: int = ATTEMPTS_PAGE_SIZE) -> AttemptPage:
    """Newest first, `size` at a time, by keyset: `before`/`after` name the attempt the page
    continues from, so each page is one bounded read of the (connection[, outcome],
    started_at) index however long the log is. An unknown cursor gives the newest page."""
    attempts = attempts_for_connection(connection=connection, outcome=outcome)
    anchor_id = before or after
    anchor = attempts.filter(pk=anchor_id).values_list("started_at", flat=True).first() if anchor_id else None
    if anchor is not None and before:
        rows = list(attempts.filter(started_at__lte=anchor).filter(Q(started_at__lt=anchor) | Q(pk__lt=before))
                    .order_by("-started_at", "-id")[:size + 1])
        more, shown = len(rows) > size, rows[:size]
        return AttemptPage(shown, shown[0].pk if shown else None, shown[-1].pk if more else None)
    if anchor is not None and after:
        rows = list(attempts.filter(started_at__gte=anchor).filter(Q(started_at__gt=anchor) | Q(pk__gt=after))
                    .order_by("started_at", "id")[:size + 1])
        more, shown = len(rows) > size, rows[:size][::-1]
        return AttemptPage(shown, shown[0].pk if more else None, shown[-1].pk if shown else None)
    rows = list(attempts.order_by("-started_at", "-id")[:size + 1])
    return AttemptPage(rows[:size], None, rows[size - 1].pk if len(rows) > size else None)
