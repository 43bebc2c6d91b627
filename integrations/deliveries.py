"""What a connection's deliveries look like: health, backlog, counts and latency, the 30-day
chart, the attempt log, and the workspace's "needs attention" banner.

Every figure comes from `DeliveryCount` (per connection and 10-minute bucket) or
`DeliveryAttempt` rows, read through their (connection, time) indexes, plus single probes of
the event log by its unique (workspace, seq) index; nothing here counts the event log.
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery, Sum
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
    Health,
    Outcome,
    Trigger,
    Verification,
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
            latency: list[int], latency_max: float = 0.0) -> None:
        # A row counted before latency_max existed knows no maximum: then neither does the window.
        self.latency_max = max(self.latency_max, latency_max if latency_max or not any(latency) else math.inf)
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
        "bucket", "delivered", "failed", "retried", "api_calls", "bytes", "latency", "latency_max")
    for bucket, delivered, failed, retried, api_calls, sent_bytes, latency, latency_max in rows:
        for total, start in zip(totals, starts, strict=True):
            if bucket >= start:
                total.add(delivered, failed, retried, api_calls, sent_bytes, latency, latency_max)
    return totals


# --- health -----------------------------------------------------------------------------


class State:
    """The one health word of a connection, as every page shows it."""

    CHECKING = "checking"
    WAITING = "waiting"
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    RETRYING = "retrying"
    PAUSED = "paused"
    DISABLED = "disabled"
    UNREADABLE = "unreadable"


WORDS = {State.CHECKING: "Checking", State.WAITING: "Waiting for a check", State.HEALTHY: "Healthy",
         State.DEGRADED: "Degraded", State.RETRYING: "Retrying", State.PAUSED: "Paused", State.DISABLED: "Disabled",
         State.UNREADABLE: "Credential unreadable"}
HELD = "Events are kept and will be sent once a check passes."


@dataclass(frozen=True)
class Issue:
    """Why a connection is not healthy and what to do. `action` names the control that fixes
    it ("region", "replace-key", "check", "enabled", "dead-letters", "attempts"), so the page can
    link straight to it; only people who can use the control get one."""

    reason: str
    next_step: str
    action: str = ""
    action_label: str = ""


@dataclass(frozen=True)
class ConnectionHealth:
    state: str
    summary: str
    issues: list[Issue] = field(default_factory=list)
    # Belongs in the workspace's "needs attention" banner, with this short phrase.
    alert: bool = False
    short: str = ""
    waiting: int = 0
    # "N events are held: why" (or "on their way") while events wait; empty when none wait, so
    # no empty state claims everything was delivered while events are held.
    held: str = ""
    # While enabled but sending nothing: what the "Enabled" pill adds ("paused") and until when.
    stopped: str = ""
    until: str = ""

    @property
    def word(self) -> str:
        return WORDS[self.state]

    @property
    def title(self) -> str:  # the word, under the name the deliveries panel used
        return self.word

    @property
    def checking(self) -> bool:
        """A check runs: the page asks for its verdict every second."""
        return self.state == State.CHECKING


DeliveryHealth = ConnectionHealth


@dataclass(frozen=True)
class Facts:
    """What health is derived from, read for one connection (the page) or for all of a
    workspace's at once (the list and the banner)."""

    connection: Connection
    verification: Verification | None
    backlog: Backlog
    undelivered_24h: int
    last_attempt: DeliveryAttempt | None = None


def connection_health(facts: Facts, *, can_manage: bool, now: datetime,
                      managers: Callable[[], list[str]] | None = None) -> ConnectionHealth:
    """The one place that decides a connection's health word, why, and what the person
    looking can do next. In order: disabled; a check running; the credential unreadable;
    paused; waiting for a check of the current key and region; then degraded (retrying, an
    old backlog, dead letters not delivered, a failed check) or healthy. Nothing says
    Healthy before a check found the current key known in its region."""
    health = _derive(facts, can_manage=can_manage, now=now, managers=managers)
    stopped, until = _stopped(facts.connection, health.state)
    return replace(health, held=_held_why(facts, health.state), stopped=stopped, until=until)


def _stopped(connection: Connection, state: str) -> tuple[str, str]:
    """Why an enabled connection sends nothing, as (a word for its pill, until when)."""
    if state == State.PAUSED:
        return "paused", "the write key or region is corrected and a check passes"
    if state == State.UNREADABLE:
        return "key unreadable", "the write key is pasted again"
    if state == State.WAITING:
        return "waiting for a check", "a check finds the write key known to Segment"
    if state == State.CHECKING and connection.awaiting_check:
        return "checking", "the running check confirms the write key"
    return "", ""


def _derive(facts: Facts, *, can_manage: bool, now: datetime,
            managers: Callable[[], list[str]] | None) -> ConnectionHealth:
    connection, run = facts.connection, facts.verification
    ask = _asker(connection, can_manage, managers)
    if not connection.enabled:
        return _disabled(facts, ask)
    if run is not None and run.is_running:
        return _checking(facts)
    if connection.health == Health.UNREADABLE:
        return _unreadable(facts, ask)
    if connection.paused_reason:
        return _paused(facts, ask)
    if connection.awaiting_check:
        return _waiting(facts, ask)
    return _delivering(facts, ask, now)


def _held_why(facts: Facts, state: str) -> str:
    """How many events wait and why, for the empty states of the Deliveries and Dead letters tabs."""
    waiting, connection = facts.backlog.waiting, facts.connection
    if not waiting:
        return ""
    held = _plural(waiting, "event is held", "events are held")
    if state == State.DISABLED:
        return f"{held}: the connection is disabled, so nothing is sent."
    if state == State.UNREADABLE:
        return f"{held}: the stored write key cannot be decrypted, so nothing is sent."
    if state == State.PAUSED:
        return f"{held}: delivery is paused, so nothing is sent."
    if state in (State.WAITING, State.CHECKING) and connection.awaiting_check:
        return f"{held}, waiting for a check to find the write key known to Segment; nothing is sent until then."
    if connection.failures:
        return f"{held}: Segment has not accepted the last {_plural(connection.failures, 'request', 'requests')}; " \
            "they are retried in order."
    return f"{_plural(waiting, 'event is', 'events are')} on the way to Segment."


def _asker(connection: Connection, can_manage: bool,
           managers: Callable[[], list[str]] | None) -> Callable[[str, str], str]:
    """The next step for a manager, or who to ask for a member."""
    def step(for_manager: str, what: str) -> str:
        if can_manage:
            return for_manager
        names = ", ".join((managers or (lambda: managers_of(connection.workspace_id)))()) or "an owner or admin"
        return f"Owners and admins can {what}: ask {names}."
    return step


def _plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _held(waiting: int) -> str:
    if not waiting:
        return HELD
    return f"{_plural(waiting, 'event waits', 'events wait')}: nothing is lost. {HELD}"


def _disabled(facts: Facts, ask: Callable[[str, str], str]) -> ConnectionHealth:
    waiting = facts.backlog.waiting
    held = f" {_plural(waiting, 'event waits', 'events wait')} for it." if waiting else ""
    summary = (f"Tributary sends nothing to this source while the connection is disabled.{held} Events "
               f"older than {settings.RELAY_MAX_EVENT_AGE_HOURS // 24} days become dead letters.")
    step = ask("Enable it in Settings to deliver what waited, in order.", "enable it")
    return ConnectionHealth(State.DISABLED, summary, [Issue("The connection is disabled.", step, "enabled",
                                                            "Enable the connection")], waiting=waiting)


def _checking(facts: Facts) -> ConnectionHealth:
    connection, waiting = facts.connection, facts.backlog.waiting
    if not connection.awaiting_check:
        summary = "Checking the key with Segment… Delivery continues meanwhile."
    elif waiting:
        summary = (f"Checking the key with Segment… {_plural(waiting, 'event waits', 'events wait')} for the "
                   "verdict and are sent as soon as Segment confirms the key.")
    else:
        summary = ("Checking the key with Segment… Nothing is sent with this key until Segment confirms it; "
                   "events emitted meanwhile are kept and sent after.")
    return ConnectionHealth(State.CHECKING, summary, waiting=waiting)


def _unreadable(facts: Facts, ask: Callable[[str, str], str]) -> ConnectionHealth:
    step = ask("Paste the write key again under Settings → Replace write key.", "paste the write key again")
    issue = Issue("Tributary cannot decrypt the stored write key, so nothing is sent with it.", step,
                  "replace-key", "Replace the write key")
    return ConnectionHealth(State.UNREADABLE, _held(facts.backlog.waiting), [issue], alert=True,
                            short="credential unreadable", waiting=facts.backlog.waiting)


def _fix_for(run: Verification | None) -> tuple[str, str, str]:
    """(what to do, the control, its label) after a check that said no."""
    failed = {c.get("check") for c in (run.check_list() if run else []) if c.get("status") == "failed"}
    if "region" in failed:
        return ("change the region (the stored key is checked again there; no need to paste it)",
                "region", "Change the region")
    if failed & {"cdn_lookup", "key_format"}:
        return ("replace the write key with the one of an existing source (it is checked at once)",
                "replace-key", "Replace the write key")
    return "correct the write key or region, or fix the source in Segment and run the check again", "check", \
        "Run the check again"


def _paused(facts: Facts, ask: Callable[[str, str], str]) -> ConnectionHealth:
    fix, action, label = _fix_for(facts.verification)
    step = ask(f"Next: {fix}.", "correct the write key or region")
    issue = Issue(facts.connection.paused_reason, step, action, label)
    return ConnectionHealth(State.PAUSED, f"Nothing is sent. {_held(facts.backlog.waiting)}", [issue], alert=True,
                            short="delivery is paused", waiting=facts.backlog.waiting)


def _waiting(facts: Facts, ask: Callable[[str, str], str]) -> ConnectionHealth:
    run, waiting = facts.verification, facts.backlog.waiting
    summary = f"Nothing is sent with this key until a check passes. {_held(waiting)}"
    if run is None:
        issue = Issue("No check has run for this key and region yet.",
                      ask("Run a check.", "run a check"), "check", "Run a check")
        return ConnectionHealth(State.WAITING, summary, [issue], waiting=waiting)
    if run.outcome == Outcome.PASSED:
        issue = Issue("The last check passed for an earlier key or region.",
                      ask("Run the check again.", "run the check again"), "check", "Run the check again")
        return ConnectionHealth(State.WAITING, summary, [issue], waiting=waiting)
    if run.outcome == Outcome.INCOMPLETE:
        when = f"in {run.retry_after} s (Segment asked to wait)" if run.retry_after else "in a few minutes"
        step = ask(f"Run the check again {when}; nothing is known to be wrong with the key.", "run the check again")
        issue = Issue(f"The check could not finish: {run.summary or 'Segment did not answer.'}", step, "check",
                      "Run the check again")
    else:
        fix, action, label = _fix_for(run)
        issue = Issue(run.summary or "The check failed.", ask(f"Next: {fix}.", "fix this"), action, label)
    return ConnectionHealth(State.WAITING, summary, [issue], alert=True,
                            short="waiting for a check that passes", waiting=waiting)


def _delivering(facts: Facts, ask: Callable[[str, str], str], now: datetime) -> ConnectionHealth:
    connection, backlog, run = facts.connection, facts.backlog, facts.verification
    issues, shorts = [], []
    age = backlog.age(now)
    if connection.failures:
        issues.append(_retrying(connection, facts.last_attempt, now))
        if age is not None and age > STALE_AFTER:
            shorts.append(f"retrying for {duration_text(age)}")
    elif age is not None and age > STALE_AFTER and not _waited_for_check(facts, now):
        issues.append(Issue(
            f"The oldest of {_plural(backlog.waiting, 'waiting event', 'waiting events')} arrived "
            f"{duration_text(age)} ago.",
            "Look at the attempt log: slow or failing requests hold delivery back. If every request "
            "succeeds, events arrive faster than this source takes them, and the backlog drains once "
            "the burst is over.", "attempts", "Open the attempt log"))
        shorts.append(f"oldest waiting event arrived {duration_text(age)} ago")
    dead = facts.undelivered_24h
    if dead:
        them = "them" if dead != 1 else "it"
        issues.append(Issue(
            f"{_plural(dead, 'event that became a dead letter', 'events that became dead letters')} in the last "
            f"24 hours {'are' if dead != 1 else 'is'} not delivered: Segment refused {them}, or "
            f"{'they' if dead != 1 else 'it'} waited past the maximum age.",
            ask("Open the dead letters to see Segment's reason for each; fix the events at their source, "
                f"then replay {them} (or discard {them}).", "replay or discard them"),
            "dead-letters", "Open dead letters"))
        if dead >= settings.DEAD_LETTER_ALERT_THRESHOLD:
            shorts.append(f"{_plural(dead, 'undelivered dead letter', 'undelivered dead letters')} in 24 hours")
    if run is not None and run.outcome == Outcome.FAILED:
        fix, action, label = _fix_for(run)
        issues.append(Issue(f"The last check failed: {run.summary}", ask(f"Next: {fix}.", "fix this"),
                            action, label))
        shorts.append("the last check failed")
    if connection.failures:
        # `failures` is reset by every delivered batch: nothing reached Segment since they began.
        return ConnectionHealth(State.RETRYING, _retrying_summary(connection, facts.last_attempt, now), issues,
                                alert=bool(shorts), short=", ".join(shorts), waiting=backlog.waiting)
    if issues:
        return ConnectionHealth(State.DEGRADED, "Events still reach Segment, but not all of them or not on time.",
                                issues, alert=bool(shorts), short=", ".join(shorts), waiting=backlog.waiting)
    if backlog.waiting and _waited_for_check(facts, now):
        return ConnectionHealth(State.HEALTHY, f"Sending the {_plural(backlog.waiting, 'event', 'events')} that "
                                f"waited for the check; the oldest arrived {duration_text(age or timedelta(0))} ago.",
                                waiting=backlog.waiting)
    return ConnectionHealth(State.HEALTHY, _healthy_summary(backlog, facts.last_attempt, now),
                            waiting=backlog.waiting)


def _waited_for_check(facts: Facts, now: datetime) -> bool:
    """The backlog is old only because it waited for the check that just passed: the oldest
    event arrived before that check finished, less than STALE_AFTER ago, and no request failed
    since (the caller knows `failures` is 0). The daily check releases nothing, so it does not count."""
    run, oldest = facts.verification, facts.backlog.oldest_received_at
    return (run is not None and run.outcome == Outcome.PASSED and run.trigger != Trigger.SCHEDULED
            and run.finished_at is not None and oldest is not None and oldest <= run.finished_at
            and now - run.finished_at <= STALE_AFTER)


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
                 "check Segment's status page and the attempt log.", "attempts", "Open the attempt log")


def _retrying_summary(connection: Connection, last_attempt: DeliveryAttempt | None, now: datetime) -> str:
    """What a connection whose latest requests all failed says at the top: never that events reach Segment."""
    status = ""
    if last_attempt is not None and last_attempt.outcome == AttemptOutcome.RETRYING:
        status = f" (HTTP {last_attempt.status})" if last_attempt.status is not None else " (no answer)"
    due = connection.next_attempt_at
    when = f"the next try is at {due:%H:%M:%S} UTC" if due and due > now else "the next try is due now"
    failed = "the last request" if connection.failures == 1 else f"the last {connection.failures:,} requests"
    return f"Segment has not accepted {failed}{status}; {when}. Events are kept and sent in order."


def _healthy_summary(backlog: Backlog, last_attempt: DeliveryAttempt | None, now: datetime) -> str:
    if backlog.waiting:
        age = backlog.age(now)
        since = f"; the oldest arrived {duration_text(age)} ago" if age is not None else ""
        return f"{_plural(backlog.waiting, 'event', 'events')} on the way{since}."
    if last_attempt is None:
        return "Segment knows the key. No events sent yet: events emitted from now on reach this source within seconds."
    return "Up to date: every stored event has been delivered."


def undelivered_dead_letters(*, connection: Connection, now: datetime) -> dict[str, int]:
    """Dead letters no replay has delivered yet, by window ("hour", "day", "week"): one read
    of the partial index on (connection, created_at) that holds only those rows."""
    starts = {key: now - length for key, _, length in WINDOWS}
    counts = DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True,
                                       created_at__gte=min(starts.values())).aggregate(
        **{key: Count("connection_id", filter=Q(created_at__gte=start)) for key, start in starts.items()})
    return {key: counts[key] or 0 for key in starts}


def connection_state(*, connection: Connection, can_manage: bool, now: datetime | None = None) -> ConnectionHealth:
    """The health word at the top of every tab of a connection's page: four bounded reads."""
    now = now or timezone.now()
    last = attempts_for_connection(connection=connection).order_by("-started_at", "-id").first()
    day = DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True,
                                    created_at__gte=now - timedelta(days=1)).count()
    facts = Facts(connection, connection.latest_verification, connection_backlog(connection=connection), day, last)
    return connection_health(facts, can_manage=can_manage, now=now)


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
    """The connection's dead letters that no replay delivered, counted up to
    DEAD_LETTER_COUNT_CAP + 1 (the page shows "10,000+" past the cap), so the count stays
    one bounded read of the partial index that holds only those."""
    return (DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True).order_by()
            .values("pk")[:DEAD_LETTER_COUNT_CAP + 1].count())


# --- everything the deliveries panel shows ----------------------------------------------


@dataclass(frozen=True)
class Overview:
    health: ConnectionHealth
    backlog: Backlog
    backlog_age: timedelta | None
    totals: list[Totals]
    latest: list[DeliveryAttempt]
    dead_letters: int  # not delivered by a replay, all time (capped)
    dead_letters_capped: bool
    undelivered: dict[str, int]  # dead letters not delivered by a replay, per window
    now: datetime


def connection_deliveries(*, connection: Connection, can_manage: bool, now: datetime | None = None) -> Overview:
    """The connection's overview and deliveries panel, in six bounded reads."""
    now = now or timezone.now()
    backlog = connection_backlog(connection=connection)
    totals = connection_totals(connection=connection, now=now)
    latest = list(attempts_for_connection(connection=connection).order_by("-started_at", "-id")[:LATEST_ATTEMPTS])
    dead = dead_letters_count(connection=connection)
    undelivered = undelivered_dead_letters(connection=connection, now=now)
    for total in totals:
        total.undelivered = undelivered[total.key]
    facts = Facts(connection, connection.latest_verification, backlog, undelivered["day"],
                  latest[0] if latest else None)
    health = connection_health(facts, can_manage=can_manage, now=now)
    return Overview(health, backlog, backlog.age(now), totals, latest, min(dead, DEAD_LETTER_COUNT_CAP),
                    dead > DEAD_LETTER_COUNT_CAP, undelivered, now)


# --- the list and the banner ------------------------------------------------------------


def workspace_connections_health(*, workspace: Workspace, now: datetime | None = None,
                                 can_manage: bool = True) -> list[tuple[Connection, ConnectionHealth]]:
    """Every connection of the workspace with its health, derived like the connection page
    does, in two reads: the connections with their latest check, the log's end and their
    oldest waiting event (one (workspace, seq) probe each), then their undelivered dead letters
    of 24 hours from the partial index. The last attempt is not read: a retrying connection
    says "the last attempt failed" here, and what Segment answered on its page."""
    now = now or timezone.now()
    oldest = Event.objects.filter(workspace_id=workspace.pk, seq=OuterRef("delivered_seq") + 1).values("received_at")[:1]
    log_end = EventStream.objects.filter(workspace_id=workspace.pk).values("last_seq")[:1]
    connections = list(Connection.objects.filter(workspace=workspace).select_related("latest_verification")
                       .annotate(oldest=Subquery(oldest), log_end=Subquery(log_end)).order_by("name"))
    dead: dict[int, int] = {}
    if connections:
        dead = dict(DeadLetter.objects.filter(connection_id__in=[c.pk for c in connections], replayed_at__isnull=True,
                                              created_at__gte=now - timedelta(days=1))
                    .values("connection_id").annotate(n=Count("connection_id")).values_list("connection_id", "n").order_by())
    found: list[tuple[Connection, ConnectionHealth]] = []
    for c in connections:
        waiting = max(0, (c.log_end or 0) - c.delivered_seq)
        backlog = Backlog(waiting, c.oldest if waiting else None)
        facts = Facts(c, c.latest_verification, backlog, dead.get(c.pk, 0))
        found.append((c, connection_health(facts, can_manage=can_manage, now=now, managers=list)))
    return found


@dataclass(frozen=True)
class Attention:
    connection_id: int
    name: str
    problem: str
    state: str


def workspace_attention(*, workspace: Workspace, now: datetime | None = None) -> list[Attention]:
    """Connections of the workspace that need someone, by the same health the connection
    page shows: paused, credential unreadable, waiting after a check that did not pass,
    retrying or backed up for more than STALE_AFTER, DEAD_LETTER_ALERT_THRESHOLD or more
    undelivered dead letters in 24 hours, or a failed check. Two reads."""
    rows = workspace_connections_health(workspace=workspace, now=now)
    found = [Attention(c.pk, c.name, h.short, h.state) for c, h in rows if h.alert]
    return sorted(found, key=lambda a: a.name.lower())
