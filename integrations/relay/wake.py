"""Waking the connections that deliver from a workspace's log: a Celery task per connection,
coalesced by `Connection.wake_queued_at`, best effort (the sweeper finds what a lost wake-up missed).

A request can hold its wake-ups until its answer is sent (`wakes_held`, then `wakes_release`):
the ingest API does, so an SDK waiting for each answer does not also wait for the wake-up's
write, its commit and the broker, which at light load (every batch finds its connection
asleep) were most of the answer time. The events are committed either way; the wake-up comes
a few hundred microseconds later, from the same process.

A woken connection's run starts RELAY_GATHER_MS later (a broker countdown), and so does the
next run a run queues because events arrived while it sent. Events arriving one by one (single
calls, webhooks) then go out several to a run: a run costs the same five round trips and one
request to Segment whatever its size, and without the wait each event or two paid them all,
and the wake-ups that found the lease taken paid a task each. The wait adds that much to the
first event's latency, nothing to the answer.

On PostgreSQL the wake-up is the function `integrations_connections_wake` (migration 0020),
and the append's own statement calls it (`integrations.relay.log`): the flags are set, and
the connections to queue returned, in the round trip that stores the events. Only the broker
is left for later (`connections_queue`).
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from integrations import enqueue
from integrations.models import Connection
from integrations.relay import pg

logger = logging.getLogger(__name__)

_TABLE = Connection._meta.db_table
# Sets the flag of every enabled connection not already awake, and returns those whose lease is
# free: one a run holds is left to that run, whose release reads the flag and queues the next
# run (a task queued now would find the lease taken and end, a task for nothing). Free is
# written with coalesce: SQLite 3.40 answers `lease_until IS NULL` in a RETURNING clause wrongly.
WAKE_SQL = (f"UPDATE {_TABLE} SET wake_queued_at = %s "  # noqa: S608 (the table name from the model)
            "WHERE workspace_id = %s AND enabled AND wake_queued_at IS NULL "
            "RETURNING id, coalesce(lease_until < %s, TRUE)")
# The same on PostgreSQL, one function for every caller: the append's statement calls it too.
WAKE_FUNCTION_SQL = "SELECT integrations_connections_wake(%s, %s)"
# .workspaces: the workspaces to wake at wakes_release, .connections: the connections to queue
# then (flagged already by an append's statement); .workspaces is None while nothing is held.
_held = threading.local()


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
    """Queue one delivery task per enabled connection that is not already awake (0 while this
    thread holds its wake-ups: the workspace is woken at `wakes_release`).

    `wake_queued_at` coalesces wake-ups: a burst of a thousand requests queues one task per
    connection, not a thousand. The delivery task clears it when it starts reading. A
    connection a run is delivering gets the flag and no task: the run's release, which reads
    the flag in the statement that frees the lease, queues the next run (the two updates of the
    row take its lock in turn, so one of them sees the other).
    """
    held = getattr(_held, "workspaces", None)
    if held is not None:
        held.add(workspace_id)
        return 0
    return _wake(workspace_id)


def connections_queue(connection_ids: list[int]) -> int:
    """Queue a delivery run for each connection an append's statement flagged (its events are
    committed): now, or at `wakes_release` while this thread holds its wake-ups."""
    if getattr(_held, "workspaces", None) is not None:
        _held.connections.extend(connection_ids)
        return 0
    return _queue(connection_ids)


def connections_queue_after_commit(connection_ids: list[int]) -> None:
    """`connections_queue` once the caller's transaction commits, or now in autocommit (the
    append's statement has committed already)."""
    if not connection_ids:
        return
    if connection.in_atomic_block:
        transaction.on_commit(lambda: connections_queue(connection_ids))
    else:
        connections_queue(connection_ids)


def wakes_held() -> None:
    """Hold this thread's wake-ups until `wakes_release`. Any still held (a server that never
    called the answer's close()) are woken first."""
    if getattr(_held, "workspaces", None) is not None and (_held.workspaces or _held.connections):
        wakes_release()
    _held.workspaces, _held.connections = set(), []


def wakes_pending() -> bool:
    """Whether this thread holds any wake-up to send at `wakes_release`."""
    return bool(getattr(_held, "workspaces", None) or getattr(_held, "connections", None))


def wakes_release() -> int:
    """Stop holding, and wake the workspaces whose logs grew meanwhile. Never raises: the
    answer is already sent, and a wake-up lost here is found by the sweeper."""
    held, _held.workspaces = getattr(_held, "workspaces", None), None
    if held is None:
        return 0
    queued, _held.connections = _held.connections, []
    woken = _queue(queued) if queued else 0
    for workspace_id in held:
        try:
            woken += _wake(workspace_id)
        except Exception:
            logger.exception("relay.wake_failed", extra={"workspace_id": workspace_id})
    return woken


def _wake(workspace_id: int) -> int:
    # Raw SQL, since the ORM's update() cannot say which rows it changed; on PostgreSQL the
    # function, through a server-binding cursor. Matching no row (every connection awake, or
    # none) writes nothing.
    if connection.vendor == "postgresql":
        with pg.cursor() as cursor:
            cursor.execute(WAKE_FUNCTION_SQL, [workspace_id, timezone.now()])
            row = cursor.fetchone()
        return _queue(row[0] if row else [])
    now = connection.ops.adapt_datetimefield_value(timezone.now())  # as the lease's statements write it
    with connection.cursor() as cursor:
        cursor.execute(WAKE_SQL, [now, workspace_id, now])
        woken = [pk for pk, free in cursor.fetchall() if free]
    return _queue(woken)


def _queue(connection_ids: list[int]) -> int:
    countdown = gather_seconds()
    return sum(queue_delivery(pk, countdown=countdown) for pk in connection_ids)


def gather_seconds() -> float | None:
    """How long a woken connection waits for more events before its run (None: no wait)."""
    return settings.RELAY_GATHER_MS / 1000 or None


def connection_wake_now(*, connection_id: int) -> None:
    """Queue a delivery run whatever `wake_queued_at` says: after a pause or a disable it may
    still be set by a wake-up that found the connection unable to send."""
    Connection.objects.filter(pk=connection_id).update(wake_queued_at=timezone.now())
    queue_delivery(connection_id)
