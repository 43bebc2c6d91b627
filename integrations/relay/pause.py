"""Pausing and resuming a connection's delivery: the relay's own writes, for whoever decides it.

Delivery stops while a key is unknown to Segment or unreadable here (events keep accumulating)
and goes on from where it stopped once a check passes. The relay pauses on Segment's refusal or
an undecryptable key, a check's verdict pauses and resumes, and so does a key rotation that
finds a key it cannot read: all come through these two functions, which sit at the relay's floor
so that none of those callers imports a floor above it. The e-mail about a pause is queued by
name (integrations.enqueue); the task renders it for the people this records as told.
"""
from __future__ import annotations

import logging

from django.db import transaction

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Membership, Role
from integrations import enqueue
from integrations.models import Connection
from integrations.relay.wake import connection_wake_now

logger = logging.getLogger(__name__)


def connection_pause(*, connection_id: int, health: str, reason: str) -> bool:
    """Stop delivering (events keep accumulating) until a check passes, recording `health`
    (one write, the reason too the first time). The first pause is audited and e-mailed to the
    workspace's owners and admins (not when no check ever cleared it: nothing was ever sent,
    and the page showing the check says why); repeats change only the health. True when this
    call paused it."""
    reason = reason[:300]
    with transaction.atomic():
        connection = (Connection.objects.select_for_update(of=("self",)).select_related("workspace")
                      .filter(pk=connection_id).first())
        if connection is None:
            return False
        already = bool(connection.paused_reason)
        Connection.objects.filter(pk=connection_id).update(health=health,
                                                           paused_reason=connection.paused_reason or reason)
        if already:
            return False
        told = pause_recipient_ids(connection)
        audit_record(actor=Actor.system(), action=AuditAction.CONNECTION_PAUSED, workspace=connection.workspace,
                     target=connection, details={**_describe(connection), "reason": reason, "told": told})
        if told:
            transaction.on_commit(lambda: enqueue.notify_connection_paused(connection_id))
    logger.warning("relay.paused", extra={"connection_id": connection_id, "reason": reason})
    return True


def connection_resume(*, connection_id: int) -> bool:
    """Deliver again, from where delivery stopped."""
    with transaction.atomic():
        if not Connection.objects.filter(pk=connection_id).exclude(paused_reason="").update(
                paused_reason="", failures=0, next_attempt_at=None):
            return False
        connection = Connection.objects.select_related("workspace").get(pk=connection_id)
        audit_record(actor=Actor.system(), action=AuditAction.CONNECTION_RESUMED, workspace=connection.workspace,
                     target=connection, details=_describe(connection))
        transaction.on_commit(lambda: connection_wake_now(connection_id=connection_id))
    return True


def pause_recipient_ids(connection: Connection) -> list[int]:
    """Who is told of a pause: the owners and admins, unless no check ever cleared the
    connection for delivery (nothing was ever sent; the page showing the check says why)."""
    if not connection.checked_key:
        return []
    return sorted(Membership.objects.filter(workspace_id=connection.workspace_id, role__in=[Role.OWNER, Role.ADMIN])
                  .values_list("user_id", flat=True))


def _describe(connection: Connection) -> dict[str, str]:
    return {"name": connection.name, "region": connection.region, "key": connection.masked_key}
