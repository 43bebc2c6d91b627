"""A connection's health: the one word every page shows, why, and what the person looking
can do next; and the workspace's connections that need someone (the "needs attention" banner).

Health is derived from facts read in a few bounded reads (`integrations.selectors.usage`):
the latest check, the backlog, the undelivered dead letters of 24 hours, the last attempt.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict, cast

from django.conf import settings
from django.db.models import Count, OuterRef, QuerySet, Subquery
from django.utils import timezone

from accounts.models import ACCEPTED, Membership, Role, Workspace
from integrations.durations import duration_text
from integrations.models import (
    AttemptOutcome,
    Connection,
    DeadLetter,
    DeliveryAttempt,
    Event,
    EventStream,
    Health,
    Outcome,
    Trigger,
    Verification,
)
from integrations.selectors.usage import Backlog, attempts_for_connection, connection_backlog

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


class Probes(TypedDict):
    """What the connections list reads beside each connection: the log's end and the arrival
    of the oldest event waiting for it."""

    log_end: int | None
    oldest: datetime | None


# A backlog whose oldest event waited longer than this is worth a look; so is a connection
# that has been retrying (its oldest waiting event is at least as old as its failures).
STALE_AFTER = timedelta(minutes=5)


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
    retry_now: bool = False  # a Retrying connection's next try may be brought forward (owners, admins)


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
    # Retrying, and the next try is due now (after "Retry now", or the wait ran out).
    due_now: bool = False

    @property
    def word(self) -> str:
        return WORDS[self.state]

    @property
    def checking(self) -> bool:
        """A check runs: the page asks for its verdict every second."""
        return self.state == State.CHECKING

    @property
    def poll_seconds(self) -> int:
        """How often the page asks again: every second while an outcome is moments away (a
        check's verdict, a try that is due), else every 5 seconds."""
        return 1 if self.checking or self.due_now else 5


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
        due = connection.next_attempt_at
        return ConnectionHealth(State.RETRYING, _retrying_summary(connection, facts.last_attempt, now), issues,
                                alert=bool(shorts), short=", ".join(shorts), waiting=backlog.waiting,
                                due_now=due is None or due <= now)
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


def retry_now_allowed(connection: Connection, last_attempt: DeliveryAttempt | None, now: datetime) -> bool:
    """Whether someone may bring the next try forward: the latest requests failed and the next
    try is still ahead, and Segment did not ask for the wait itself (HTTP 429: it is refusing
    more requests until then, and another one would only be refused)."""
    due = connection.next_attempt_at
    return (bool(connection.failures) and due is not None and due > now
            and not (last_attempt is not None and last_attempt.status == 429))


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
    retry_now = retry_now_allowed(connection, last_attempt, now)
    if retry_now:
        step = ("Nothing is lost: events wait and go out in order once Segment accepts them. If Segment is back "
                "(its status page), retry now; if this lasts, check the attempt log.")
    elif last_attempt is not None and last_attempt.status == 429:
        step = ("Nothing is lost: events wait and go out in order once Segment accepts them. Tributary waits as "
                "long as Segment asked; if this lasts, the source sends more than Segment's limit.")
    else:
        step = ("Nothing is lost: events wait and go out in order once Segment accepts them. If this lasts, "
                "check Segment's status page and the attempt log.")
    return Issue(f"Retrying: {answer}.{when}", step, "attempts", "Open the attempt log",
                 retry_now=retry_now)


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


def connection_state(*, connection: Connection, can_manage: bool, now: datetime | None = None) -> ConnectionHealth:
    """The health word at the top of every tab of a connection's page: four bounded reads."""
    now = now or timezone.now()
    last = attempts_for_connection(connection=connection).order_by("-started_at", "-id").first()
    day = DeadLetter.objects.filter(connection=connection, replayed_at__isnull=True,
                                    created_at__gte=now - timedelta(days=1)).count()
    facts = Facts(connection, connection.latest_verification, connection_backlog(connection=connection), day, last)
    return connection_health(facts, can_manage=can_manage, now=now)


def managers_of(workspace_id: int) -> list[str]:
    return list(Membership.objects.filter(ACCEPTED, workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN])
                .order_by("user__email").values_list("user__email", flat=True)[:5])


# --- the list and the banner ------------------------------------------------------------


def workspace_connections_health(*, workspace: Workspace, now: datetime | None = None,
                                 can_manage: bool = True) -> list[tuple[Connection, ConnectionHealth]]:
    """Every connection of the workspace with its health, derived like the connection page
    does (see `connections_health`)."""
    return connections_health(connections=Connection.objects.filter(workspace=workspace), now=now,
                              can_manage=can_manage)


def connections_health(*, connections: QuerySet[Connection], now: datetime | None = None,
                       can_manage: bool = True) -> list[tuple[Connection, ConnectionHealth]]:
    """The given connections (one workspace's, or every workspace's for the admin) with their
    health, derived like the connection page does, in two reads: the connections with their
    latest check, the log's end and their oldest waiting event (one (workspace, seq) probe
    each), then their undelivered dead letters of 24 hours from the partial index. The last
    attempt is not read: a retrying connection says "the last attempt failed" here, and what
    Segment answered on its page; the health word does not depend on it."""
    now = now or timezone.now()
    oldest = Event.objects.filter(workspace_id=OuterRef("workspace_id"),
                                  seq=OuterRef("delivered_seq") + 1).values("received_at")[:1]
    log_end = EventStream.objects.filter(workspace_id=OuterRef("workspace_id")).values("last_seq")[:1]
    rows = (connections.select_related("latest_verification")
            .annotate(oldest=Subquery(oldest), log_end=Subquery(log_end)).order_by("name", "pk"))
    # The custom queryset's iterator forgets the annotations the plugin knows: name them here.
    found_rows = cast("list[WithAnnotations[Connection, Probes]]", list(rows))
    dead: dict[int, int] = {}
    if found_rows:
        dead = dict(DeadLetter.objects.filter(connection_id__in=[c.pk for c in found_rows], replayed_at__isnull=True,
                                              created_at__gte=now - timedelta(days=1))
                    .values("connection_id").annotate(n=Count("connection_id")).values_list("connection_id", "n").order_by())
    found: list[tuple[Connection, ConnectionHealth]] = []
    for c in found_rows:
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
