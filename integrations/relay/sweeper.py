"""The safety net under wake-ups: every few seconds, find connections that have events to
send, are due and are not being served, and queue them. Wake-ups ride on the broker, which
may lose them; the log and positions are in the database, which does not."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import F, OuterRef, Q, Subquery
from django.utils import timezone

from integrations.models import Connection, EventStream
from integrations.relay.wake import queue_delivery

WAKE_LOST_AFTER = timedelta(seconds=10)


def connections_sweep() -> int:
    now = timezone.now()
    log_end = EventStream.objects.filter(workspace_id=OuterRef("workspace_id")).values("last_seq")[:1]
    # A wake-up that has not led to a run within WAKE_LOST_AFTER is presumed lost (broker
    # flushed); one merely waiting in a busy queue is not queued again sooner, so a jammed
    # queue gets at most one more task per connection. A wake-up queued while a lease that has
    # since lapsed was held found that lease taken and is gone: the dead run's connection is
    # handed on at once, not WAKE_LOST_AFTER later.
    lost = now - WAKE_LOST_AFTER
    lapsed = Q(lease_until__lt=now) & Q(wake_queued_at__lt=F("lease_until"))
    stuck = (Connection.objects.deliverable()
             .filter(Q(wake_queued_at__isnull=True) | Q(wake_queued_at__lt=lost) | lapsed)
             .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
             .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
             .annotate(log_end=Subquery(log_end)).filter(delivered_seq__lt=Subquery(log_end)))
    woken = 0
    for pk in stuck.values_list("pk", flat=True):
        Connection.objects.filter(pk=pk).update(wake_queued_at=now)
        woken += queue_delivery(pk)
    return woken
