"""The safety net under wake-ups: every few seconds, find connections that have events to
send, are due and are not being served, and queue them. Wake-ups ride on the broker, which
may lose them; the log and positions are in the database, which does not."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from integrations.models import Connection, EventStream
from integrations.relay.log import queue_delivery

WAKE_LOST_AFTER = timedelta(seconds=10)


def connections_sweep() -> int:
    now = timezone.now()
    log_end = EventStream.objects.filter(workspace_id=OuterRef("workspace_id")).values("last_seq")[:1]
    # A wake-up that has not led to a run within WAKE_LOST_AFTER is presumed lost (broker
    # flushed, or it found a dead worker's lease); one merely waiting in a busy queue is not
    # queued again sooner, so a jammed queue gets at most one more task per connection.
    lost = now - WAKE_LOST_AFTER
    stuck = (Connection.objects.filter(enabled=True, paused_reason="")
             .filter(Q(wake_queued_at__isnull=True) | Q(wake_queued_at__lt=lost))
             .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
             .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
             .annotate(log_end=Subquery(log_end)).filter(delivered_seq__lt=Subquery(log_end)))
    woken = 0
    for pk in stuck.values_list("pk", flat=True):
        Connection.objects.filter(pk=pk).update(wake_queued_at=now)
        woken += queue_delivery(pk)
    return woken
