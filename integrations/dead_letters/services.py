"""What people ask of a connection's dead letters: a dry run, a replay, a discard.

`dead_letters_replay` creates the replay's row, queued, in the request's transaction: the
partial unique constraint `dead_letter_replay_one_at_a_time` (one queued or sending replay per
connection) is what refuses a second one, however close together two requests arrive, so
there is no read-then-write to race. A replay whose worker stopped would hold that slot for
ever; `replays_fail_stale` marks it failed once its heartbeat (`updated_at`) is old, and runs
whenever someone looks at the connection's replays or asks for one.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from accounts.permissions import require_manager
from integrations import enqueue
from integrations.crypto import CredentialUnreadable
from integrations.dead_letters.selection import Replay, Selection, replay_active, replay_blocker
from integrations.models import Connection, DeadLetter, DeadLetterReplay, ReplayStatus

logger = logging.getLogger(__name__)

# A queued replay no worker took within this long is given up: workers are stopped or swamped.
QUEUED_FOR = timedelta(minutes=15)
# A sending replay writes its counts after every request to Segment (a batch's tries and
# waits take about a minute at most, the task's hard time limit is 300 s), so one silent for
# this long lost its worker.
SILENT_FOR = timedelta(minutes=5)
NOT_STARTED = "No worker started the replay within 15 minutes (are the workers running?); run the replay again."
STOPPED = "The worker stopped; run the replay again."


class ReplayRefused(Exception):
    """The replay cannot start; the message says why and what to do."""


@dataclass
class Plan:
    """What a replay or a discard of a selection would do, shown before it is confirmed."""

    action: str  # "replay" or "discard"
    selection: Selection
    matched: int
    cap: int
    blocker: str = ""
    busy: Replay | None = None

    @property
    def count(self) -> int:
        return min(self.matched, self.cap) if self.action == "replay" else self.matched

    @property
    def capped(self) -> bool:
        return self.action == "replay" and self.matched > self.cap


def dead_letters_plan(*, connection: Connection, selection: Selection, action: str) -> Plan:
    """The dry run: how many dead letters the selection matches now, the cap, and anything
    that would stop a replay."""
    pinned = selection.pinned(timezone.now())
    matched = pinned.apply(DeadLetter.objects.filter(connection=connection)).count()
    plan = Plan(action=action, selection=pinned, matched=matched, cap=settings.DEAD_LETTER_REPLAY_CAP)
    if action == "replay":
        plan.blocker = replay_blocker(connection)
        replays_fail_stale(connection=connection)
        plan.busy = replay_active(connection=connection)
    return plan


def dead_letters_replay(*, actor: Actor, connection: Connection, selection: Selection) -> Replay:
    """Queue a replay of the selected dead letters (at most the cap, oldest in log order first).

    1. check that the actor manages the workspace and that the connection can send;
    2. mark a replay of the connection whose worker stopped as failed, so it does not block;
    3. count what the selection matches, pinned to now;
    4. create the replay's row, queued: the unique constraint refuses it while another replay
       of the connection is queued or sending;
    5. write the audit row and queue the task once it all commits.
    """
    require_manager(actor, connection.workspace, to="replay or discard dead letters")
    connection = Connection.objects.select_related("workspace").get(pk=connection.pk)
    blocker = replay_blocker(connection) or _key_problem(connection)
    if blocker:
        raise ReplayRefused(blocker)
    replays_fail_stale(connection=connection)
    pinned, cap = selection.pinned(timezone.now()), settings.DEAD_LETTER_REPLAY_CAP
    with transaction.atomic():
        matched = pinned.apply(DeadLetter.objects.filter(connection=connection)).count()
        if not matched:
            raise ValidationError("No dead letters match: there is nothing to replay.")
        try:
            with transaction.atomic():
                record = DeadLetterReplay.objects.create(connection=connection, requested_by=actor.user,
                                                         selection=pinned.to_json(), total=min(matched, cap))
        except IntegrityError:
            raise ReplayRefused(_busy(connection)) from None
        audit_record(actor=actor, action=AuditAction.DEAD_LETTERS_REPLAYED, workspace=connection.workspace,
                     target=connection, details={"connection": connection.name, "replay": record.pk,
                                                 **pinned.describe(), "matched": matched,
                                                 "dead_letters": record.total, "cap": cap})
        transaction.on_commit(lambda: enqueue.replay_dead_letters(record.pk))
    logger.info("dead_letters.replay_queued", extra={"connection_id": connection.pk, "replay_id": record.pk,
                                                     "dead_letters": record.total})
    return Replay(record)


def _busy(connection: Connection) -> str:
    running = replay_active(connection=connection)
    who = f" (asked for by {running.requested_by}, now {running.status})" if running is not None else ""
    return (f"A replay of this connection is already queued or running{who}. Only one runs at a time: wait "
            "for it to finish, then replay again.")


def replays_fail_stale(*, connection: Connection, now: datetime | None = None) -> int:
    """Mark the connection's replay failed if its worker is gone: queued and not taken within
    QUEUED_FOR, or sending and silent for SILENT_FOR. Conditional updates, so a worker that
    claims or reports at the same moment wins or loses cleanly. Returns how many were marked."""
    now = now or timezone.now()
    rules = ((ReplayStatus.QUEUED, now - QUEUED_FOR, NOT_STARTED), (ReplayStatus.SENDING, now - SILENT_FOR, STOPPED))
    replays, stale = DeadLetterReplay.objects.filter(connection=connection), Q()
    for status, before, _failure in rules:
        stale |= Q(status=status, updated_at__lt=before)
    # The usual case, on every look at the page and every poll: one indexed read, no write.
    if not replays.filter(stale).exists():
        return 0
    marked = 0
    for status, before, failure in rules:
        marked += replays.filter(status=status, updated_at__lt=before).update(
            status=ReplayStatus.FAILED, failure=failure, finished_at=now, updated_at=now,
            not_sent=Greatest(F("total") - F("accepted") - F("refused"), Value(0)))
    if marked:
        logger.warning("dead_letters.replay_stale", extra={"connection_id": connection.pk, "replays": marked})
    return marked


def dead_letters_discard(*, actor: Actor, connection: Connection, selection: Selection) -> int:
    """Delete the selected dead letters (pinned to now); how many went."""
    require_manager(actor, connection.workspace, to="replay or discard dead letters")
    pinned = selection.pinned(timezone.now())
    with transaction.atomic():
        discarded = pinned.apply(DeadLetter.objects.filter(connection=connection)).delete()[0]
        if not discarded:
            raise ValidationError("No dead letters match: there is nothing to discard.")
        audit_record(actor=actor, action=AuditAction.DEAD_LETTERS_DISCARDED, workspace=connection.workspace,
                     target=connection, details={"connection": connection.name, **pinned.describe(),
                                                 "dead_letters": discarded})
    logger.info("dead_letters.discarded", extra={"connection_id": connection.pk, "dead_letters": discarded})
    return discarded


@sensitive_variables()
def _key_problem(connection: Connection) -> str:
    try:
        connection.write_key()
    except CredentialUnreadable:
        return "The write key cannot be decrypted: paste it again on the connection's page, then replay."
    return ""
