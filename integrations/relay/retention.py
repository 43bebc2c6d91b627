"""Keeping the event log bounded without losing anything silently.

`events_expire`: an event still undelivered to a connection after RELAY_MAX_EVENT_AGE_HOURS
becomes a dead letter for that connection (its body is copied), the connection's position
moves past it, and an audit row says how many; nothing is dropped without a trace.
`deliveries_trim`: attempts, counts and filtered-event records past the 30 days the dashboard
shows are deleted.
`events_trim`: events that every connection of the workspace has passed, and that are older
than RELAY_RETENTION_HOURS (the window in which a resent messageId is still recognised), are
deleted in bounded batches.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from integrations.models import (
    Connection,
    DeadLetter,
    DeliveryAttempt,
    DeliveryCount,
    Event,
    EventStream,
    FilteredBatch,
)
from integrations.relay.accounting import failures_record

logger = logging.getLogger(__name__)
CHUNK = 5_000
DELIVERY_HISTORY_DAYS = 31


RETENTION_LEASE_SECONDS = 120


def events_expire() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.RELAY_MAX_EVENT_AGE_HOURS)
    expired = 0
    for connection in Connection.objects.select_related("workspace").iterator():
        expired += _expire_for(connection, cutoff)
    return expired


def _expire_for(connection: Connection, cutoff: datetime) -> int:
    now = timezone.now()
    # Nothing renews this lease, so it is long enough for any expiry to finish.
    lease = timedelta(seconds=RETENTION_LEASE_SECONDS)
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    # Take the connection's lease: no delivery run may move its position meanwhile.
    # Its own owner token, so no lapsed delivery run can renew over it.
    if not Connection.objects.filter(free, pk=connection.pk).update(lease_until=now + lease,
                                                                   lease_owner="retention"):
        return 0
    try:
        total = 0
        while True:
            moved = _expire_chunk(connection, cutoff)
            total += moved
            if moved < CHUNK:
                break
    finally:
        Connection.objects.filter(pk=connection.pk, lease_owner="retention").update(lease_until=None, lease_owner="")
    if total:
        audit_record(actor=Actor.system(), action=AuditAction.CONNECTION_EVENTS_EXPIRED,
                     workspace=connection.workspace, target=connection,
                     details={"events": total, "max_age_hours": settings.RELAY_MAX_EVENT_AGE_HOURS})
        logger.warning("relay.events_expired", extra={"connection_id": connection.pk, "events": total})
    return total


def _expire_chunk(connection: Connection, cutoff: datetime) -> int:
    """Dead-letter the oldest undelivered events while they are past the cutoff (in log order,
    stopping at the first younger one, so the position never skips a live event)."""
    position = Connection.objects.values_list("delivered_seq", flat=True).get(pk=connection.pk)
    rows = (Event.objects.filter(workspace_id=connection.workspace_id, seq__gt=position).order_by("seq")
            .values_list("seq", "message_id", "type", "name", "body", "received_at")[:CHUNK])
    letters = []
    for seq, message_id, kind, name, body, received_at in rows:
        if received_at >= cutoff:
            break
        letters.append(DeadLetter(connection_id=connection.pk, seq=seq, message_id=message_id, type=kind, name=name,
                                  body=bytes(body), received_at=received_at, reason="expired",
                                  response=f"Not delivered within {settings.RELAY_MAX_EVENT_AGE_HOURS} hours."))
    if letters:
        with transaction.atomic():
            DeadLetter.objects.bulk_create(letters, ignore_conflicts=True)
            Connection.objects.filter(pk=connection.pk).update(delivered_seq=letters[-1].seq)
            failures_record(connection_id=connection.pk, at=timezone.now(), events=len(letters))
    return len(letters)


def deliveries_trim() -> int:
    """Forget attempts, counts and the records of filtered events older than the dashboard
    shows (30 days, and a day's margin)."""
    cutoff = timezone.now() - timedelta(days=DELIVERY_HISTORY_DAYS)
    return (DeliveryAttempt.objects.filter(started_at__lt=cutoff).delete()[0]
            + DeliveryCount.objects.filter(bucket__lt=cutoff).delete()[0]
            + FilteredBatch.objects.filter(at__lt=cutoff).delete()[0])


def events_trim() -> int:
    cutoff = timezone.now() - timedelta(hours=settings.RELAY_RETENTION_HOURS)
    deleted = 0
    for stream in EventStream.objects.all().iterator():
        floor = (Connection.objects.filter(workspace_id=stream.workspace_id)
                 .aggregate(floor=Min("delivered_seq"))["floor"])
        passed = stream.last_seq if floor is None else floor
        deleted += _delete_passed(stream.workspace_id, passed, cutoff)
    return deleted


def _delete_passed(workspace_id: int, passed: int, cutoff: datetime) -> int:
    total = 0
    while True:
        ids = list(Event.objects.filter(workspace_id=workspace_id, seq__lte=passed, received_at__lt=cutoff)
                   .order_by("seq").values_list("id", flat=True)[:CHUNK])
        if not ids:
            return total
        total += Event.objects.filter(id__in=ids).delete()[0]
