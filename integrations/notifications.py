"""E-mails about connections, to the people who can act on them: owners and admins.

A pause is told at once (`integrations.relay.pause.connection_pause` queues `send_paused_email`). Dead letters past
DEAD_LETTER_ALERT_THRESHOLD in 24 hours, and a recovery (a paused or long-failing connection
delivering again), are found by `delivery_notices_check`, which beat runs every minute: it
reads DeliveryCount and the attempt log's failures (never the delivered traffic), so delivery
itself does no extra work per event or batch. Audit rows remember what was sent: each notice
is an audit row written with the decision, and the e-mail is rendered from that row.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Max, Sum
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, AuditEvent, Membership, Role
from accounts.validation import one_line
from integrations import enqueue
from integrations.durations import duration_text
from integrations.models import AttemptOutcome, Connection, DeliveryAttempt, DeliveryCount
from integrations.models.deliveries import bucket_of
from integrations.selectors.health import STALE_AFTER
from integrations.selectors.usage import connection_backlog

logger = logging.getLogger(__name__)

# A failing streak at least this long is worth a "recovered" e-mail once it ends; shorter
# blips (a 503, a rate limit) are in the attempt log only.
LONG_FAILING = STALE_AFTER
# Recoveries are looked for this far back, so a check that did not run for a while catches
# up, while history from before that is never announced.
RECOVERY_LOOKBACK = timedelta(hours=1)
PAUSE_LOOKBACK = timedelta(days=7)
DEAD_LETTER_WINDOW = timedelta(hours=24)


def managers_emails(workspace_id: int) -> list[str]:
    return sorted(Membership.objects.filter(workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN])
                  .values_list("user__email", flat=True))


def _emails_of(workspace_id: int, user_ids: list[int]) -> list[str]:
    """The e-mails of those people who are still owners or admins."""
    return sorted(Membership.objects.filter(workspace_id=workspace_id, role__in=[Role.OWNER, Role.ADMIN],
                                            user_id__in=user_ids).values_list("user__email", flat=True))


def _latest_pause(connection: Connection) -> AuditEvent | None:
    return (AuditEvent.objects.filter(workspace_id=connection.workspace_id, action=AuditAction.CONNECTION_PAUSED,
                                      target_type="connection", target_id=str(connection.pk))
            .order_by("-created_at", "-pk").first())


def _pause_told(pause: AuditEvent | None) -> list[int] | None:
    """The people a pause was e-mailed to; None for rows written before this was recorded
    (then owners and admins were told)."""
    if pause is None or "told" not in pause.details:
        return None
    return [int(pk) for pk in pause.details["told"]]


def send_paused_email(*, connection_id: int) -> None:
    connection = Connection.objects.select_related("workspace").filter(pk=connection_id).first()
    if connection is None or not connection.paused_reason:
        return  # deleted or resumed before the worker got here
    told = _pause_told(_latest_pause(connection))
    recipients = managers_emails(connection.workspace_id) if told is None else _emails_of(connection.workspace_id, told)
    if not recipients:
        return
    context = {"connection": connection, "workspace": connection.workspace, "url": _url("connection", connection)}
    subject = f"Delivery to “{connection.name}” is paused ({connection.workspace.name})"
    # one_line: a name stored before names were checked must not make the e-mail fail.
    send_mail(one_line(subject), render_to_string("integrations/email/connection_paused.txt", context), None,
              recipients)


# --- finding what to tell ---------------------------------------------------------------


@dataclass(frozen=True)
class Notices:
    dead_letters: int = 0
    recovered: int = 0


def delivery_notices_check(*, now: datetime | None = None) -> Notices:
    """Decide which owners to tell about dead letters and recoveries; safe to run at any
    time and twice: each decision is one audit row, and an existing row means "already told"."""
    now = now or timezone.now()
    ids = list(Connection.objects.values_list("pk", flat=True))
    dead = sum(_dead_letters_notify(pk, failed, now) for pk, failed in _past_threshold(ids, now))
    recovered = sum(_recovered_after_pause(pk, paused, now) for pk, paused in _paused_recently(ids, now))
    recovered += sum(_recovered_after_failing(pk, now) for pk in _failing_recently(ids, now))
    return Notices(dead, recovered)


def _past_threshold(ids: list[int], now: datetime) -> list[tuple[int, int]]:
    """(connection, dead letters in 24 h) past the threshold: a range read of at most 145
    buckets per connection on the (connection, bucket) index."""
    rows = (DeliveryCount.objects.filter(connection_id__in=ids, bucket__gte=bucket_of(now - DEAD_LETTER_WINDOW),
                                         bucket__lte=now)
            .values("connection_id").annotate(failed=Sum("failed"))
            .filter(failed__gte=settings.DEAD_LETTER_ALERT_THRESHOLD).order_by())
    return [(row["connection_id"], row["failed"]) for row in rows]


def _dead_letters_notify(connection_id: int, failed: int, now: datetime) -> bool:
    with transaction.atomic():
        connection = _locked(connection_id)
        if connection is None or _told(connection, AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, now - DEAD_LETTER_WINDOW):
            return False
        _notice(connection, AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, {
            "dead_letters_24h": failed, "threshold": settings.DEAD_LETTER_ALERT_THRESHOLD})
    return True


def _paused_recently(ids: list[int], now: datetime) -> list[tuple[int, datetime]]:
    """Connections paused in the last week and not paused now, with their latest pause."""
    rows = (AuditEvent.objects.filter(action=AuditAction.CONNECTION_PAUSED, target_type="connection",
                                      created_at__gte=now - PAUSE_LOOKBACK, created_at__lte=now)
            .values("target_id").annotate(at=Max("created_at")).order_by())
    known = set(ids)
    paused = {int(row["target_id"]): row["at"] for row in rows if row["target_id"].isdigit()}
    running = Connection.objects.filter(pk__in=[pk for pk in paused if pk in known], enabled=True, paused_reason="")
    return [(pk, paused[pk]) for pk in running.values_list("pk", flat=True)]


def _recovered_after_pause(connection_id: int, paused_at: datetime, now: datetime) -> bool:
    """Delivering again once it delivered a batch after the pause, or has nothing waiting."""
    delivered = (DeliveryAttempt.objects.filter(connection_id=connection_id, outcome=AttemptOutcome.DELIVERED,
                                                started_at__gt=paused_at, started_at__lte=now)
                 .order_by("started_at").values_list("started_at", flat=True).first())
    with transaction.atomic():
        connection = _locked(connection_id)
        if connection is None or connection.paused_reason or not connection.enabled:
            return False
        if _told(connection, AuditAction.CONNECTION_RECOVERED_NOTIFIED, paused_at):
            return False
        if delivered is None and connection_backlog(connection=connection).waiting:
            return False  # resumed, but nothing has gone out yet
        pause = (AuditEvent.objects.filter(action=AuditAction.CONNECTION_PAUSED, target_type="connection",
                                           target_id=str(connection_id), created_at=paused_at).first())
        told = _pause_told(pause)
        if told is not None and not told:
            return False  # no one was told of the pause (it never worked): no news to end
        reason = pause.details.get("reason", "") if pause else ""
        _notice(connection, AuditAction.CONNECTION_RECOVERED_NOTIFIED, {
            "after": "paused", "since": paused_at.isoformat(), "until": (delivered or now).isoformat(),
            "reason": reason}, told=told)
    return True


def _failing_recently(ids: list[int], now: datetime) -> list[int]:
    """Connections that are not failing now but had retried requests in the last hour: the
    (connection, outcome, started_at) index holds only the failures, however busy delivery is."""
    retried = (DeliveryAttempt.objects.filter(connection_id__in=ids, outcome=AttemptOutcome.RETRYING,
                                              started_at__gte=now - RECOVERY_LOOKBACK, started_at__lte=now)
               .values_list("connection_id", flat=True).distinct().order_by())
    return list(Connection.objects.filter(pk__in=list(retried), failures=0, paused_reason="", enabled=True)
                .values_list("pk", flat=True))


def _recovered_after_failing(connection_id: int, now: datetime) -> bool:
    """The streak: from the first retried request (attempt 1) to the delivery that ended it
    (attempt n + 1 after n failures). Told when it lasted LONG_FAILING or more."""
    # Every read walks the (connection, outcome, started_at) index from a known point: the
    # last retried request, the first delivery after it, and back to the streak's first try.
    retrying = DeliveryAttempt.objects.filter(connection_id=connection_id, outcome=AttemptOutcome.RETRYING)
    last = retrying.filter(started_at__lte=now).order_by("-started_at").first()
    if last is None:
        return False
    # The relay's own delivery after the streak, not a replay of dead letters asked for meanwhile;
    # its attempt number is 1 when no streak led to it (failures were reset by a resume).
    ended = (DeliveryAttempt.objects.filter(connection_id=connection_id, outcome=AttemptOutcome.DELIVERED,
                                            replay=False, started_at__gte=last.started_at, started_at__lte=now)
             .order_by("started_at").first())
    if ended is None or ended.attempt <= 1 or ended.started_at < now - RECOVERY_LOOKBACK:
        return False
    began = retrying.filter(attempt=1, started_at__lte=last.started_at).order_by("-started_at").first()
    if began is None or ended.started_at - began.started_at < LONG_FAILING:
        return False
    with transaction.atomic():
        connection = _locked(connection_id)
        if connection is None or _told(connection, AuditAction.CONNECTION_RECOVERED_NOTIFIED, began.started_at):
            return False
        _notice(connection, AuditAction.CONNECTION_RECOVERED_NOTIFIED, {
            "after": "retrying", "since": began.started_at.isoformat(), "until": ended.started_at.isoformat(),
            "failed_requests": ended.attempt - 1, "last_status": last.status, "last_reply": last.reply[:120]})
    return True


def _locked(connection_id: int) -> Connection | None:
    """The connection, locked: two checks running at once decide one after the other."""
    return Connection.objects.select_for_update().select_related("workspace").filter(pk=connection_id).first()


def _told(connection: Connection, action: AuditAction, since: datetime) -> bool:
    return AuditEvent.objects.filter(workspace_id=connection.workspace_id, action=action, target_type="connection",
                                     target_id=str(connection.pk), created_at__gte=since).exists()


def _notice(connection: Connection, action: AuditAction, details: dict[str, Any],
            told: list[int] | None = None) -> None:
    """`told`: only these people (those told of the pause that ended), when given."""
    if told is None:
        recipients = managers_emails(connection.workspace_id)
    else:
        recipients = _emails_of(connection.workspace_id, told)
        details = {**details, "told": told}
    row = audit_record(actor=Actor.system(), action=action, workspace=connection.workspace, target=connection,
                       details={"name": connection.name, "key": connection.masked_key, **details,
                                "recipients": len(recipients)})
    transaction.on_commit(lambda: enqueue.send_delivery_notice(row.pk))
    logger.info("deliveries.notice", extra={"connection_id": connection.pk, "action": action.value,
                                            "recipients": len(recipients)})


# --- writing the e-mails ----------------------------------------------------------------


def send_delivery_notice(*, audit_event_id: int) -> bool:
    """E-mail what an audit row decided to tell. False when there is no one to tell or the
    connection is gone."""
    row = AuditEvent.objects.filter(pk=audit_event_id).first()
    connection = (Connection.objects.select_related("workspace").filter(pk=int(row.target_id)).first()
                  if row is not None and row.target_id.isdigit() else None)
    if row is None or connection is None:
        return False
    told = row.details.get("told")
    recipients = (managers_emails(connection.workspace_id) if told is None
                  else _emails_of(connection.workspace_id, [int(pk) for pk in told]))
    if not recipients:
        return False
    context = {"connection": connection, "workspace": connection.workspace, "details": row.details,
               "url": _url("connection", connection), "dead_letters_url": _url("dead_letters", connection),
               "attempts_url": _url("connection_attempts", connection),
               "max_age_hours": settings.RELAY_MAX_EVENT_AGE_HOURS}
    if row.action == AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED:
        count = row.details.get("dead_letters_24h", 0)
        subject = f"{count:,} events could not be delivered to “{connection.name}” ({connection.workspace.name})"
        template = "integrations/email/connection_dead_letters.txt"
    elif row.action == AuditAction.CONNECTION_RECOVERED_NOTIFIED:
        since = datetime.fromisoformat(row.details["since"])
        until = datetime.fromisoformat(row.details["until"])
        context.update(since=since, until=until, lasted=duration_text(until - since),
                       waiting=connection_backlog(connection=connection).waiting)
        subject = f"Delivery to “{connection.name}” has recovered ({connection.workspace.name})"
        template = "integrations/email/connection_recovered.txt"
    else:
        return False
    send_mail(one_line(subject), render_to_string(template, context), None, recipients)
    return True


def _url(name: str, connection: Connection) -> str:
    return f"{settings.SITE_URL}{reverse(f'integrations:{name}', args=[connection.workspace.slug, connection.pk])}"
