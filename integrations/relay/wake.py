"""Waking the connections that deliver from a workspace's log: a Celery task per connection,
coalesced by `Connection.wake_queued_at`, best effort (the sweeper finds what a lost wake-up missed)."""
from __future__ import annotations

import logging

from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError

from integrations import enqueue
from integrations.models import Connection

logger = logging.getLogger(__name__)


def queue_delivery(connection_id: int, *, countdown: float | None = None) -> bool:
    """Ask a worker to deliver; best effort. The event is already stored when this runs, so a
    broker that is down must not fail the emitter: the sweeper finds the backlog instead.
    No publish retries either, so an unreachable broker cannot stall the request."""
    try:
        enqueue.deliver_connection(connection_id, countdown=countdown, retry=False)
    except OperationalError:
        logger.warning("relay.wake_lost", extra={"connection_id": connection_id})
        return False
    return True


def connections_wake(*, workspace_id: int) -> int:
    """Queue one delivery task per enabled connection that is not already awake.

    `wake_queued_at` coalesces wake-ups: a burst of a thousand requests queues one task per
    connection, not a thousand. The delivery task clears it when it starts reading.
    """
    # One statement, run after every append: raw SQL, since the ORM's update() cannot say
    # which rows it changed.
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Connection._meta.db_table} SET wake_queued_at = %s "  # noqa: S608
                       "WHERE workspace_id = %s AND enabled = %s AND wake_queued_at IS NULL RETURNING id",
                       [timezone.now(), workspace_id, True])
        woken = [row[0] for row in cursor.fetchall()]
    return sum(queue_delivery(pk) for pk in woken)


def connection_wake_now(*, connection_id: int) -> None:
    """Queue a delivery run whatever `wake_queued_at` says: after a pause or a disable it may
    still be set by a wake-up that found the connection unable to send."""
    Connection.objects.filter(pk=connection_id).update(wake_queued_at=timezone.now())
    queue_delivery(connection_id)
