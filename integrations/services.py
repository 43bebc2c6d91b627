"""Every write to Segment connections and their checks.

Each function validates, runs in a transaction, writes its audit row (never the key) and
schedules Celery work on commit (by task name, through integrations.enqueue). Views, the admin,
commands and tasks all come through here. Pausing and resuming delivery belong to the relay
(integrations.relay.pause), which a check's verdict calls like the relay itself does.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Workspace
from accounts.permissions import require_manager
from accounts.validation import name_problem
from integrations import enqueue
from integrations.crypto import CredentialUnreadable
from integrations.models import Connection, EventStream, Health, Outcome, Region, Trigger, Verification
from integrations.relay.pause import connection_pause as connection_pause
from integrations.relay.pause import connection_resume as connection_resume
from integrations.relay.wake import connection_wake_now
from integrations.segment import verification as checks
from integrations.selectors.health import retry_now_allowed
from integrations.selectors.usage import attempts_for_connection

logger = logging.getLogger(__name__)


KEY_FIELDS = ("write_key_encrypted", "write_key_key_id", "write_key_last4", "write_key_fingerprint")


class ChecksThrottled(Exception):
    def __init__(self, seconds: int) -> None:
        super().__init__(f"Too many checks for this connection: try again in {seconds} s.")
        self.seconds = seconds


@sensitive_variables("write_key")
def connection_create(*, actor: Actor, workspace: Workspace, name: str, region: str, write_key: str) -> Connection:
    write_key = write_key.strip()
    _validate(name=name, region=region, write_key=write_key)
    with transaction.atomic():
        require_manager(actor, workspace, to="manage Segment connections")
        connection = Connection(workspace=workspace, name=name.strip(), region=region, created_by=actor.user,
                                delivered_seq=_log_end(workspace))
        connection.set_write_key(write_key)
        _refuse_duplicates(connection)
        connection.save()
        audit_record(actor=actor, action=AuditAction.CONNECTION_CREATED, workspace=workspace, target=connection,
                     details=_describe(connection))
        verification_request(actor=actor, connection=connection, trigger=Trigger.CREATED)
    return connection


@sensitive_variables("write_key")
def connection_replace_key(*, actor: Actor, connection: Connection, write_key: str,
                           region: str | None = None) -> Connection:
    """A new key (and optionally region) for everything not yet sent; re-checked at once."""
    write_key = write_key.strip()
    region = region or connection.region
    _validate(name=None, region=region, write_key=write_key)
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        old_last4, old_region = connection.write_key_last4, connection.region
        connection.set_write_key(write_key)
        connection.region = region
        connection.health = Health.PENDING
        connection.key_replaced_at = timezone.now()
        _refuse_duplicates(connection)
        # Only what this change owns: the relay's position and lease move under it meanwhile, and
        # writing back the stale copies would rewind delivery or restore a finished run's lease.
        connection.save(update_fields=[*KEY_FIELDS, "region", "health", "key_replaced_at", "updated_at"])
        details = {**_describe(connection), "previous_key": f"•••• {old_last4}", "previous_region": old_region}
        audit_record(actor=actor, action=AuditAction.CONNECTION_KEY_REPLACED, workspace=connection.workspace,
                     target=connection, details=details)
        verification_request(actor=actor, connection=connection, trigger=Trigger.KEY_REPLACED)
    return connection


def connection_change_region(*, actor: Actor, connection: Connection, region: str) -> Connection:
    """Point the stored key at the other region; delivery waits until its check passes."""
    _validate(name=None, region=region, write_key=None)
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        if region == connection.region:
            return connection
        old_region, connection.region = connection.region, region
        connection.health = Health.PENDING
        connection.save(update_fields=["region", "health", "updated_at"])
        audit_record(actor=actor, action=AuditAction.CONNECTION_REGION_CHANGED, workspace=connection.workspace,
                     target=connection, details={**_describe(connection), "previous_region": old_region})
        verification_request(actor=actor, connection=connection, trigger=Trigger.REGION_CHANGED)
    return connection


def connection_rename(*, actor: Actor, connection: Connection, name: str) -> Connection:
    name = name.strip()
    _validate(name=name, region=connection.region, write_key=None)
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        old, connection.name = connection.name, name
        _refuse_duplicates(connection)
        connection.save(update_fields=["name", "updated_at"])
        audit_record(actor=actor, action=AuditAction.CONNECTION_RENAMED, workspace=connection.workspace,
                     target=connection, details={"from": old, "to": name})
    return connection


def connection_set_enabled(*, actor: Actor, connection: Connection, enabled: bool) -> Connection:
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        if connection.enabled == enabled:
            return connection
        connection.enabled = enabled
        connection.save(update_fields=["enabled", "updated_at"])
        if enabled:
            transaction.on_commit(lambda: connection_wake_now(connection_id=connection.pk))
        action = AuditAction.CONNECTION_ENABLED if enabled else AuditAction.CONNECTION_DISABLED
        audit_record(actor=actor, action=action, workspace=connection.workspace, target=connection,
                     details=_describe(connection))
    return connection


def connection_retry_now(*, actor: Actor, connection: Connection) -> bool:
    """Try a Retrying connection again now instead of at its next try, for a manager who knows
    Segment is back: the backoff after an outage reaches minutes between tries. Its failure
    count stays, so if this try fails too the next wait is as long as it would have been.
    Not while Segment itself asked for the wait (HTTP 429). False, with nothing changed, when
    there is nothing to bring forward (it is not retrying, or the try is due already)."""
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        locked = Connection.objects.select_for_update().get(pk=connection.pk)
        now = timezone.now()
        last = attempts_for_connection(connection=locked).order_by("-started_at", "-id").first()
        if not retry_now_allowed(locked, last, now):
            return False
        was_due = locked.next_attempt_at
        Connection.objects.filter(pk=locked.pk).update(next_attempt_at=now)
        audit_record(actor=actor, action=AuditAction.CONNECTION_RETRIED_NOW, workspace=connection.workspace,
                     target=connection, details={**_describe(connection), "failures": locked.failures,
                                                 "was_due": was_due.isoformat() if was_due else None})
        transaction.on_commit(lambda: connection_wake_now(connection_id=connection.pk))
    connection.next_attempt_at = now
    return True


def connection_delete(*, actor: Actor, connection: Connection) -> None:
    with transaction.atomic():
        require_manager(actor, connection.workspace, to="manage Segment connections")
        audit_record(actor=actor, action=AuditAction.CONNECTION_DELETED, workspace=connection.workspace,
                     target=connection, details=_describe(connection))
        connection.delete()


def verification_request(*, actor: Actor, connection: Connection, trigger: str) -> Verification:
    """Queue a check of the connection; at most VERIFICATIONS_PER_MINUTE a minute each.

    A refusal is audited after the transaction, so the row survives the exception.
    """
    with transaction.atomic():
        # Lock the connection so concurrent requests count each other.
        Connection.objects.select_for_update().filter(pk=connection.pk).first()
        wait = _seconds_until_next_check(connection)
        if not wait:
            run = Verification.objects.create(
                connection=connection, trigger=trigger, requested_by=actor.user,
                requested_ip=actor.ip, requested_user_agent=actor.user_agent,
            )
            Connection.objects.filter(pk=connection.pk).update(latest_verification=run)
            connection.latest_verification = run
            transaction.on_commit(lambda: enqueue.verify_connection(run.pk))
            return run
    audit_record(actor=actor, action=AuditAction.CONNECTION_CHECK_THROTTLED, workspace=connection.workspace,
                 target=connection, details={"retry_in": wait})
    raise ChecksThrottled(wait)


def _seconds_until_next_check(connection: Connection) -> int:
    """0 when a check may start now, else the seconds until the oldest of the minute expires."""
    window_start = timezone.now() - timedelta(minutes=1)
    recent = list(connection.verifications.filter(created_at__gte=window_start)
                  .order_by("created_at").values_list("created_at", flat=True))
    if len(recent) < settings.VERIFICATIONS_PER_MINUTE:
        return 0
    return max(1, int((recent[0] + timedelta(minutes=1) - timezone.now()).total_seconds()) + 1)


def verification_run(*, verification_id: int) -> Verification | None:
    """Run a queued check and record each result. A run already finished is left alone,
    so a redelivered task does nothing twice."""
    run = Verification.objects.select_related("connection__workspace").filter(pk=verification_id).first()
    if run is None or run.outcome != Outcome.RUNNING:
        return run
    connection = run.connection
    # What this run vouches for: the key and region as they are now. A change made while it
    # runs queues a newer run, and only the newest decides.
    checked = connection.cleared_token()
    try:
        report = checks.run(write_key=connection.write_key(), region=connection.region)
    except CredentialUnreadable:
        report = checks.Report(health=Health.UNREADABLE, outcome=Outcome.FAILED, summary=UNREADABLE_MESSAGE)
        report.record("credential", "failed", UNREADABLE_MESSAGE)
    return _record_report(run, report, checked)


UNREADABLE_MESSAGE = "Credential unreadable: paste the key again. Nothing is sent with this connection until then."


def _record_report(run: Verification, report: checks.Report, checked: str) -> Verification | None:
    with transaction.atomic():
        locked = Verification.objects.select_for_update().filter(pk=run.pk, outcome=Outcome.RUNNING).first()
        if locked is None:  # another worker finished it first
            return run
        for field in ("checks", "summary", "test_message_id", "retry_after", "outcome"):
            setattr(locked, field, getattr(report, field))
        locked.finished_at = timezone.now()
        locked.save()
        if _is_latest(locked):
            _record_health(run.connection_id, report, checked)
        actor = Actor(user=locked.requested_by, ip=locked.requested_ip, user_agent=locked.requested_user_agent)
        audit_record(actor=actor, action=AuditAction.CONNECTION_CHECKED, workspace=run.connection.workspace,
                     target=run.connection, details={
                         "trigger": locked.trigger, "outcome": locked.outcome, "summary": locked.summary,
                         "test_message_id": locked.test_message_id,
                     })
    logger.info("integrations.connection_checked", extra={
        "connection_id": run.connection_id, "verification_id": run.pk, "outcome": locked.outcome})
    return locked


def _is_latest(run: Verification) -> bool:
    """Only the newest run decides the connection's health, and whether delivery is paused. The
    connection's row stays locked until commit, so a newer run cannot be queued in between."""
    return Connection.objects.select_for_update().filter(
        pk=run.connection_id, latest_verification=run).values_list("pk", flat=True).first() is not None


def _record_health(connection_id: int, report: checks.Report, checked: str) -> None:
    """The verdict's health, written once: with the pause when the key is unknown or unreadable."""
    reason = _pause_reason(report)
    if reason:
        connection_pause(connection_id=connection_id, health=report.health, reason=reason)
        return
    Connection.objects.filter(pk=connection_id).update(health=report.health)
    if report.key_known:
        _clear_for_delivery(connection_id, checked)


@sensitive_variables("plaintext")
def connection_key_reencrypt(*, connection: Connection) -> bool:
    """Store the connection's write key again under the first FIELD_ENCRYPTION_KEYS key (for
    `manage.py rotate_encryption_keys`, in its transaction). A key no configured key decrypts
    is left as it is and the connection marked unreadable; False then."""
    try:
        plaintext = connection.write_key()
    except CredentialUnreadable:
        connection_mark_unreadable(connection_id=connection.pk)
        return False
    connection.set_write_key(plaintext)
    # Only the stored key: the last four and the fingerprint describe the same key as before.
    connection.save(update_fields=["write_key_encrypted", "write_key_key_id", "write_key_fingerprint"])
    return True


def connection_mark_unreadable(*, connection_id: int) -> bool:
    """A stored key this process cannot decrypt: delivery stops as it does when a check or the
    relay finds one, with the same audit row and e-mail (`connection_pause`). False when it was
    already paused (its owners were told then); its health says unreadable either way."""
    return connection_pause(connection_id=connection_id, health=Health.UNREADABLE, reason=UNREADABLE_MESSAGE)


def _clear_for_delivery(connection_id: int, checked: str) -> None:
    """The check found the key known in its region: deliver with it (resuming a pause)."""
    if Connection.objects.filter(pk=connection_id).exclude(checked_key=checked).update(checked_key=checked):
        transaction.on_commit(lambda: connection_wake_now(connection_id=connection_id))
    connection_resume(connection_id=connection_id)


def _pause_reason(report: checks.Report) -> str:
    """Delivery stops (events keep accumulating) while the key is unknown or unreadable."""
    if report.health == Health.UNREADABLE:
        return UNREADABLE_MESSAGE
    failed = {c["check"] for c in report.checks if c["status"] == "failed"}
    if report.health == Health.FAILING and failed & {"cdn_lookup", "region"}:
        return report.summary[:300]
    return ""


def verifications_expire_stale(*, older_than: timedelta = timedelta(minutes=10)) -> int:
    """Close runs whose worker vanished, so no page spins forever."""
    cutoff = timezone.now() - older_than
    return Verification.objects.filter(outcome=Outcome.RUNNING, created_at__lt=cutoff).update(
        outcome=Outcome.INCOMPLETE, finished_at=timezone.now(),
        summary="The check did not finish (the worker stopped). Run it again.",
    )


RETRY_FIRST_SECONDS = 30
RETRY_MAX_SECONDS = 3600


def verifications_retry_unfinished() -> int:
    """Check again, by themselves, connections whose events wait for a verdict that could not be
    reached (Segment unreachable, slow or rate-limiting the check): 30 s after the first such
    check, doubling to at most an hour, or after Segment's Retry-After. A verdict (known or not)
    ends it; so does disabling the connection."""
    now = timezone.now()
    waiting = (Connection.objects.awaiting_check()
               .filter(enabled=True, latest_verification__outcome=Outcome.INCOMPLETE)
               .select_related("workspace", "latest_verification"))
    due = (c for c in waiting if c.latest_verification is not None and c.latest_verification.finished_at is not None
           and now >= c.latest_verification.finished_at + _retry_wait(c, c.latest_verification))
    return _request_checks(due, Trigger.RETRY)


def _retry_wait(connection: Connection, last: Verification) -> timedelta:
    """Doubles with each unfinished check in a row, from RETRY_FIRST_SECONDS up to an hour."""
    recent = connection.verifications.order_by("-created_at").values_list("outcome", flat=True)[:8]
    unfinished = next((n for n, outcome in enumerate(recent) if outcome != Outcome.INCOMPLETE), len(recent))
    wait = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** max(0, unfinished - 1))
    return timedelta(seconds=max(wait, last.retry_after or 0))


def verifications_schedule_daily() -> int:
    """The daily check of every enabled connection, so a key revoked in Segment is noticed."""
    return _request_checks(Connection.objects.filter(enabled=True).select_related("workspace").iterator(),
                           Trigger.SCHEDULED)


def _request_checks(connections: Iterable[Connection], trigger: str) -> int:
    """Queue a check of each connection as the system; one throttled is skipped, not fatal."""
    queued = 0
    for connection in connections:
        try:
            verification_request(actor=Actor.system(), connection=connection, trigger=trigger)
            queued += 1
        except ChecksThrottled:
            continue
    return queued


@sensitive_variables("write_key")
def _validate(*, name: str | None, region: str, write_key: str | None) -> None:
    """`name` None: the stored name is kept, so it is not judged again (one saved before a rule
    existed must not block a key or region change)."""
    errors: dict[str, str] = {}
    if name is None:
        pass
    elif not name.strip():
        errors["name"] = "Give the connection a name, for example Production or Staging."
    elif problem := name_problem(name):
        errors["name"] = problem
    if region not in Region.values:
        errors["region"] = "Choose US or EU: the region of the Segment workspace that owns the source."
    if write_key is not None:
        problem = checks.key_format_problem(write_key)
        if problem:
            errors["write_key"] = problem
    if errors:
        raise ValidationError(errors)


def _refuse_duplicates(connection: Connection) -> None:
    others = Connection.objects.filter(workspace=connection.workspace).exclude(pk=connection.pk)
    same_key = others.filter(write_key_fingerprint=connection.write_key_fingerprint).first()
    if same_key is not None:
        raise ValidationError({"write_key": f"This write key is already connected in this workspace as "
                                            f"“{same_key.name}”. Each Segment source is connected once."})
    if others.filter(name__iexact=connection.name).exists():
        raise ValidationError({"name": f"Another connection is already called “{connection.name}”."})


def _log_end(workspace: Workspace) -> int:
    """Where a new connection starts: after every event already in the workspace's log."""
    stream = EventStream.objects.filter(workspace=workspace).first()
    return stream.last_seq if stream else 0


def _describe(connection: Connection) -> dict[str, str]:
    return {"name": connection.name, "region": connection.region, "key": connection.masked_key}
