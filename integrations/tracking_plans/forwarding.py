"""Violations forwarded as `Violation Generated` track events to the connection a plan names
(Segment's forwardingViolationsTo), with Segment's properties: eventName, eventType,
violationType, violationField, violationDescription, trackingPlanID.

They go straight to that one Segment source, not through the workspace's log (every
connection delivers the log):
1. at ingest, `violations_queue` stores them (at most MAX_PER_REQUEST per request) in the
   caller's transaction and, once committed, queues a send by task name (best effort: the
   hourly sweep sends what a lost wake-up left);
2. `violations_forward` (a worker) sends the connection's waiting ones in one batch request,
   marks them sent on a 200, counts an attempt otherwise and gives up after MAX_ATTEMPTS.
Rows are claimed with SKIP LOCKED, so two runs never send one twice.
"""
from __future__ import annotations

import logging
import uuid
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError

from integrations import enqueue
from integrations.crypto import CredentialUnreadable
from integrations.models import Connection, ViolationForward
from integrations.segment import client
from integrations.segment.client import LIBRARY

logger = logging.getLogger(__name__)

MAX_PER_REQUEST = 100
MAX_PER_SEND = 500
MAX_ATTEMPTS = 10


def violation_messages(*, plan_id: int, event: dict[str, Any], violations: list[dict[str, str]]) -> list[dict[str, Any]]:
    """One `Violation Generated` track call per violation, for the event's user."""
    who = {key: event[key] for key in ("userId", "anonymousId") if event.get(key)}
    name = event.get("event") or event.get("name") or ""
    return [{"type": "track", "event": "Violation Generated", **who, "messageId": str(uuid.uuid4()),
             "timestamp": timezone.now().isoformat(),
             "properties": {"eventName": name, "eventType": event.get("type", ""),
                            "violationType": violation["kind"], "violationField": violation["field"],
                            "violationDescription": violation["description"], "trackingPlanID": str(plan_id)},
             "context": {"library": LIBRARY}}
            for violation in violations]


def violations_queue(*, workspace_id: int, connection_id: int, messages: list[dict[str, Any]]) -> None:
    if not messages:
        return
    ViolationForward.objects.bulk_create([
        ViolationForward(workspace_id=workspace_id, connection_id=connection_id, message=message)
        for message in messages[:MAX_PER_REQUEST]])
    transaction.on_commit(lambda: _wake(connection_id))


def _wake(connection_id: int) -> None:
    try:
        enqueue.forward_violations(connection_id, retry=False)
    except OperationalError:
        logger.warning("tracking_plan.forward_wake_lost", extra={"connection_id": connection_id})


def violations_forward(*, connection_id: int) -> int:
    """Send the connection's waiting violations (step 2); how many were sent."""
    connection = Connection.objects.filter(pk=connection_id).first()
    if connection is None:
        return 0
    with transaction.atomic():
        rows = list(ViolationForward.objects.select_for_update(skip_locked=True)
                    .filter(connection_id=connection_id, sent_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
                    .order_by("pk")[:MAX_PER_SEND])
        if not rows:
            return 0
        status = _send(connection, [row.message for row in rows])
        ids = [row.pk for row in rows]
        if status == 200:
            ViolationForward.objects.filter(pk__in=ids).update(sent_at=timezone.now(), attempts=F("attempts") + 1)
            return len(rows)
        ViolationForward.objects.filter(pk__in=ids).update(attempts=F("attempts") + 1)
    logger.warning("tracking_plan.forward_failed", extra={"connection_id": connection_id, "status": status})
    return 0


def _send(connection: Connection, messages: list[dict[str, Any]]) -> int | None:
    try:
        write_key = connection.write_key()
    except CredentialUnreadable:
        return None
    try:
        return client.post(connection.region, write_key, "batch", {"batch": messages}).status
    except client.SegmentUnreachable:
        return None


def violations_forward_sweep() -> int:
    """Send what a lost wake-up left (hourly, with the retention work)."""
    waiting = (ViolationForward.objects.filter(sent_at__isnull=True, attempts__lt=MAX_ATTEMPTS)
               .values_list("connection_id", flat=True).distinct())
    return sum(violations_forward(connection_id=pk) for pk in set(waiting))
