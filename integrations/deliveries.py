"""What a connection's deliveries look like: health, backlog, counts and latency, the 30-day
chart, the attempt log, and the workspace's "needs attention" banner.

Every figure comes from `DeliveryCount` (per connection and 10-minute bucket) or
`DeliveryAttempt` rows, read through their (connection, time) indexes, plus single probes of
the event log by its unique (workspace, seq) index; nothing here counts the event log.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Case, OuterRef, Q, QuerySet, Subquery, Sum, When
from django.db.models.functions import TruncDate
from django.utils import timezone

from accounts.models import Membership, Role, Workspace
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

# A backlog whose oldest event waited longer than this is worth a look; so is a connection
# that has been retrying (its oldest waiting event is at least as old as its failures).
STALE_AFTER = timedelta(minutes=5)
WINDOWS = (("hour", "Last hour", timedelta(hours=1)), ("day", "24 hours", timedelta(days=1)),
           ("week", "7 days", timedelta(days=7)))
CHART_DAYS = 30
LATEST_ATTEMPTS = 5
ATTEMPTS_PAGE_SIZE = 50
# Dead letters are counted up to this many; past it the page says "10,000+".
DEAD_LETTER_COUNT_CAP = 10_000


class State:
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    PAUSED = "paused"
    DISABLED = "disabled"


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


# --- counts -----------------------------------------------------------------------------


@dataclass
class Totals:
    """Sums of a connection's DeliveryCount rows over one window."""

    key: str
    label: str
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    api_calls: int = 0
    bytes: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))

    @property
    def p50(self) -> float | None:
        return histogram_percentile(self.latency, 0.5)

    @property
    def p95(self) -> float | None:
        return histogram_percentile(self.latency, 0.95)

    def add(self, delivered: int, failed: int, retried: int, api_calls: int, sent_bytes: int,
            latency: list[int]) -> None:
        self.delivered += delivered
        self.failed += failed
        self.retried += retried
        self.api_calls += api_calls
        self.bytes += sent_bytes
        if len(latency) == len(self.latency):
            self.latency = list(map(operator.add, self.latency, latency))


def connection_totals(*, connection: Connection, now: datetime) -> list[Totals]:
    """Delivered, dead-lettered and retried events, API calls, bytes and latency for the last
    hour, 24 hours and 7 days: one range read of at most 7 * 144 + 1 bucket rows. A window
    starts at the bucket its start falls in, so it may reach up to 10 minutes further back."""
    totals = [Totals(key, label) for key, label, _ in WINDOWS]
    starts = [bucket_of(now - length) for _, _, length in WINDOWS]
    # Tuples, not model instances: a week is a thousand rows, and building a model (with its
    # deferred-field bookkeeping) for each cost more than the query.
    rows = DeliveryCount.objects.filter(connection=connection, bucket__gte=min(starts)).values_list(
        "bucket", "delivered", "failed", "retried", "api_calls", "bytes", "latency")
    for bucket, delivered, failed, retried, api_calls, sent_bytes, latency in rows:
        for total, start in zip(totals, starts, strict=True):
            if bucket >= start:
                total.add(delivered, failed, retried, api_calls, sent_bytes, latency)
    return totals


# --- health -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Issue:
    reason: str
    next_step: str


@dataclass(frozen=True)
class DeliveryHealth:
    state: str
    title: str
    summary: str
    issues: list[Issue] = field(default_factory=list)


def connection_delivery_health(*, connection: Connection, backlog: Backlog, dead_letters_24h: int,
                               last_attempt: DeliveryAttempt | None, can_manage: bool,
                               now: datetime) -> DeliveryHealth:
    """The one place that decides whether a connection's delivery is healthy, degraded,
    paused or disabled, why, and what the person looking can do next."""
    if not connection.enabled:
        return _disabled(connection, backlog, can_manage)
    if connection.paused_reason:
        return _paused(connection, backlog, can_manage)
    issues = []
    if connection.failures:
        issues.append(_retrying(connection, last_attempt, now))
    age = backlog.age(now)
    if age is not None and age > STALE_AFTER and not connection.failures:
        issues.append(Issue(
            f"The oldest of {backlog.waiting:,} waiting event{'s' if backlog.waiting != 1 else ''} "
            f"arrived {duration_text(age)} ago.",
            "Look at the attempt log: slow or failing requests hold delivery back. If every request "
            "succeeds, events arrive faster than this source takes them, and the backlog drains once "
            "the burst is over."))
    if dead_letters_24h:
        issues.append(Issue(
            f"{dead_letters_24h:,} event{'s' if dead_letters_24h != 1 else ''} became "
            f"{'dead letters' if dead_letters_24h != 1 else 'a dead letter'} in the last 24 hours: Segment refused "
            f"{'them' if dead_letters_24h != 1 else 'it'}, or {'they' if dead_letters_24h != 1 else 'it'} waited "
            "past the maximum age.",
            "Open the dead letters to see Segment's reason for each; fix the events at their source, "
            "then replay them."))
    if issues:
        return DeliveryHealth(State.DEGRADED, "Degraded", "Events still reach Segment, but not all of them "
                              "or not on time.", issues)
    return DeliveryHealth(State.HEALTHY, "Healthy", _healthy_summary(backlog, last_attempt, now))


def _disabled(connection: Connection, backlog: Backlog, can_manage: bool) -> DeliveryHealth:
    waiting = f" {backlog.waiting:,} event{'s' if backlog.waiting != 1 else ''} wait for it." if backlog.waiting else ""
    if can_manage:
        step = "Enable it under “Sending is off” below to deliver what waited, in order."
    else:
        managers = ", ".join(managers_of(connection.workspace_id)) or "an owner or admin"
        step = f"Owners and admins can enable it: ask {managers}."
    summary = (f"Tributary sends nothing to this source while the connection is disabled.{waiting} Events "
               f"older than {settings.RELAY_MAX_EVENT_AGE_HOURS // 24} days become dead letters.")
    return DeliveryHealth(State.DISABLED, "Disabled", summary, [Issue("The connection is disabled.", step)])


def _paused(connection: Connection, backlog: Backlog, can_manage: bool) -> DeliveryHealth:
    if connection.health == "unreadable":
        fix, where = "paste the write key again", " under “Replace write key” below"
    else:
        fix, where = ("correct the write key or region", " under “Replace write key” below (it is checked at once), "
                      "or fix the source in Segment and run the check again")
    if can_manage:
        step = f"Next: {fix}{where}."
    else:
        managers = ", ".join(managers_of(connection.workspace_id)) or "an owner or admin"
        step = f"Owners and admins can {fix}: ask {managers}."
    summary = (f"Delivery stopped and new events are kept: {backlog.waiting:,} waiting. They are sent from where "
               "delivery stopped as soon as a check passes.")
    return DeliveryHealth(State.PAUSED, "Paused", summary, [Issue(connection.paused_reason, step)])


def _retrying(connection: Connection, last_attempt: DeliveryAttempt | None, now: datetime) -> Issue:
    if last_attempt is None or last_attempt.outcome != AttemptOutcome.RETRYING:
        answer = "The last attempt failed"
    elif last_attempt.status is None:
        answer = f"Segment did not answer the last attempt ({last_attempt.reply.rstrip('.')})"
    elif last_attempt.status == 429:
        answer = "Segment is rate-limiting this source (HTTP 429)"
    else:
        answer = f"Segment answered HTTP {last_attempt.status} to the last attempt"
    due = connection.next_attempt_at
    if due and due > now:
        when = f" Attempt {connection.failures + 1} is due in {duration_text(due - now)}, at {due:%H:%M:%S} UTC."
    else:
        when = f" Attempt {connection.failures + 1} is due now."
    return Issue(f"Retrying: {answer}.{when}",
                 "Nothing is lost: events wait and go out in order once Segment accepts them. If this lasts, "
                 "check Segment's status page and the attempt log.")


def _healthy_summary(backlog: Backlog, last_attempt: DeliveryAttempt | None, now: datetime) -> str:
    if backlog.waiting:
        age = backlog.age(now)
        since = f"; the oldest arrived {duration_text(age)} ago" if age is not None else ""
        return f"{backlog.waiting:,} event{'s' if backlog.waiting != 1 else ''} on the way{since}."
    if last_attempt is None:
        return "No events sent yet. Events emitted from now on reach this source within seconds."
    return "Up to date: every stored event has been delivered."


def managers_of(workspace_id: int) -> list[str]:
    return list(Membership.objects.filter(workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN])
                .order_by("user__email").values_list("user__email", flat=True)[:5])


def duration_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


# --- the 30-day chart -------------------------------------------------------------------


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


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    slot_x: float
    slot_width: float
    day: date
    value: int
    is_today: bool

    @property
    def center(self) -> float:
        return round(self.x + self.width / 2, 2)


@dataclass(frozen=True)
class Tick:
    y: float
    value: int


@dataclass(frozen=True)
class Chart:
    """A bar chart's geometry in its SVG viewBox; the template only draws it."""

    key: str
    title: str
    unit: str
    bars: list[Bar]
    ticks: list[Tick]
    day_labels: list[Bar]
    total: int
    peak: DayUsage | None
    peak_value: int
    width: int = 320
    height: int = 150
    left: int = 34
    top: int = 8
    bottom: int = 128

    @property
    def right(self) -> int:
        return self.width - 4

    @property
    def plot_height(self) -> int:
        return self.bottom - self.top

    @property
    def middle(self) -> tuple[float, float]:
        """The plot's centre, where an empty chart says so."""
        return (self.left + self.right) / 2, self.top + self.plot_height / 2


def bar_chart(usage: list[DayUsage], *, key: str, title: str, unit: str, today: date) -> Chart:
    values = [getattr(day, key) for day in usage]
    top_value = nice_ceiling(max(values, default=0))
    chart = Chart(key, title, unit, [], [], [], sum(values), None, 0)
    plot_width, plot_height = chart.right - chart.left, chart.plot_height
    slot = plot_width / max(1, len(usage))
    bars = []
    for index, (day, value) in enumerate(zip(usage, values, strict=True)):
        height = plot_height * value / top_value
        if value:
            height = max(height, 1.5)  # a day with a few events stays visible next to a busy one
        x = chart.left + index * slot
        bars.append(Bar(round(x + slot * 0.15, 2), round(chart.bottom - height, 2), round(slot * 0.7, 2),
                        round(height, 2), round(x, 2), round(slot, 2), day.day, value, day.day == today))
    # An idle chart keeps only its base line, under the words saying it is idle.
    shown = (0, top_value // 2, top_value) if any(values) else (0,)
    ticks = [Tick(round(chart.bottom - plot_height * v / top_value, 2), v) for v in shown]
    labels = [bars[i] for i in range(0, len(bars), 7)] if bars else []
    peak = max(usage, key=lambda d: getattr(d, key)) if any(values) else None
    return Chart(key, title, unit, bars, ticks, labels, sum(values), peak,
                 getattr(peak, key) if peak else 0)


def nice_ceiling(value: int) -> int:
    """The axis' top: the smallest of 1, 2, 4, 6, 8, 10 times 10^k at or above `value`, and at
    least 4, so it is always even and its middle tick a whole number (0, 2, 4 for an idle source)."""
    if value <= 4:
        return 4
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 4, 6, 8, 10) if step * power >= value)


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


def dead_letters_count(*, connection: Connection) -> int:
    """The connection's dead letters, counted up to DEAD_LETTER_COUNT_CAP + 1 (the page
    shows "10,000+" past the cap), so the count stays one bounded index read."""
    return DeadLetter.objects.filter(connection=connection).order_by().values("pk")[:DEAD_LETTER_COUNT_CAP + 1].count()


# --- everything the deliveries panel shows ----------------------------------------------


@dataclass(frozen=True)
class Overview:
    health: DeliveryHealth
    backlog: Backlog
    backlog_age: timedelta | None
    totals: list[Totals]
    latest: list[DeliveryAttempt]
    dead_letters: int
    dead_letters_capped: bool
    now: datetime


def connection_deliveries(*, connection: Connection, can_manage: bool, now: datetime | None = None) -> Overview:
    """The connection page's deliveries panel, in five bounded reads (six when disabled)."""
    now = now or timezone.now()
    backlog = connection_backlog(connection=connection)
    totals = connection_totals(connection=connection, now=now)
    latest = list(attempts_for_connection(connection=connection).order_by("-started_at", "-id")[:LATEST_ATTEMPTS])
    dead = dead_letters_count(connection=connection)
    health = connection_delivery_health(connection=connection, backlog=backlog, dead_letters_24h=totals[1].failed,
                                        last_attempt=latest[0] if latest else None, can_manage=can_manage, now=now)
    return Overview(health, backlog, backlog.age(now), totals, latest, min(dead, DEAD_LETTER_COUNT_CAP),
                    dead > DEAD_LETTER_COUNT_CAP, now)


# --- the banner -------------------------------------------------------------------------


@dataclass(frozen=True)
class Attention:
    connection_id: int
    name: str
    problem: str


def workspace_attention(*, workspace: Workspace, now: datetime | None = None) -> list[Attention]:
    """Connections of the workspace that need someone: paused, retrying for more than
    STALE_AFTER, or past DEAD_LETTER_ALERT_THRESHOLD dead letters in 24 hours. Two reads: the
    workspace's connections (with one (workspace, seq) probe each, for those retrying, for the
    oldest waiting event), and their 24-hour dead-letter sums, read by connection id so the
    (connection, bucket) index serves it whatever the planner thinks of the workspace."""
    now = now or timezone.now()
    oldest = Event.objects.filter(workspace_id=workspace.pk, seq=OuterRef("delivered_seq") + 1).values("received_at")[:1]
    connections = list(Connection.objects.filter(workspace=workspace).annotate(
        oldest=Case(When(failures__gt=0, then=Subquery(oldest)), default=None))
        .values_list("pk", "name", "enabled", "paused_reason", "oldest"))
    names = {pk: name for pk, name, *_ in connections}
    found: dict[int, list[str]] = {}
    for pk, _, enabled, paused_reason, oldest_at in connections:
        if enabled and paused_reason:
            found[pk] = ["delivery is paused"]
        elif enabled and oldest_at is not None and now - oldest_at > STALE_AFTER:
            found[pk] = [f"retrying for {duration_text(now - oldest_at)}"]
    dead = (DeliveryCount.objects.filter(connection_id__in=list(names), bucket__gte=bucket_of(now - timedelta(days=1)))
            .values("connection_id").annotate(failed=Sum("failed"))
            .filter(failed__gte=settings.DEAD_LETTER_ALERT_THRESHOLD).order_by())
    for row in dead:
        found.setdefault(row["connection_id"], []).append(f"{row['failed']:,} dead letters in 24 hours")
    return sorted((Attention(pk, names[pk], ", ".join(problems)) for pk, problems in found.items()),
                  key=lambda a: a.name.lower())
