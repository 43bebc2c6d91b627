"""Delivering a connection's backlog to Segment, one batch in flight per connection.

A delivery run:
  1. claims the connection with a short lease (see integrations.relay.lease), so no other
     worker sends for it at the same time, and clears its wake-up flag; only a connection whose
     key and region passed a check can be claimed;
  2. reads the next events after the connection's position, in log order, up to 2,500 events
     or 475,000 bytes; when the connection has destination filters (and only then: otherwise
     stored bytes are spliced, never parsed), runs them (integrations.relay.filtering): a
     held-back event is not sent, and is counted as filtered when the position passes it;
  3. sends them to `/v1/batch` of the connection's region, each under a messageId derived from
     the event's own and the connection (so retries and resends dedupe in Segment, while the
     copies for different sources do not collide);
  4. on 200 moves the position past the batch (and the held-back events it spans); on 400/413/422 bisects the batch so that only
     the offending events become dead letters; on 408/429/5xx or a network error waits
     (exponential backoff with jitter, or Segment's Retry-After) with the wait stored in
     `next_attempt_at`; on an unreadable key or 401/403 pauses the connection;
  5. repeats, renewing the lease before each batch (which also stops the run when the key,
     region, pause or enabled state changed), until the backlog is empty or the run's
     time budget is spent, then releases the lease and re-queues itself if anything is left or
     a wake-up arrived meanwhile.

Fair across tenants: with a hundred connections each woken about once a second, what a run
costs whatever its size decides how long the others wait for a pool process. So a small run
makes five round trips to the database: the take (which reads the connection), the read
(which also reads the key of its destination filters), the renewal, one statement recording
the batch and moving the position (`accounting.attempt_settle`), and the release (which reads
whether another run is due). A batch of fewer than STOP_BELOW_EVENTS ends the run at once
rather than lingering for more: the release re-queues it if events came meanwhile, and the
pool process goes to the next connection.
"""
from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from integrations.crypto import CredentialUnreadable
from integrations.models import (
    AttemptOutcome,
    Connection,
    DeadLetter,
    DestinationFilter,
    Event,
    Health,
)
from integrations.relay import pg
from integrations.relay.accounting import (
    Sent,
    attempt_record,
    attempt_settle,
    failures_record,
    filtered_record,
)
from integrations.relay.filtering import Held, connection_filters, run_filters
from integrations.relay.lease import Lease, Released, lease_release, lease_renew, lease_take
from integrations.relay.pause import connection_pause
from integrations.relay.wake import gather_seconds, queue_delivery
from integrations.segment import client
from integrations.segment.destination_filters import CompiledFilter
from integrations.segment.protocol import (
    BATCH_ROOM,
    MAX_BATCH_EVENTS,
    SENT_MESSAGE_ID_BYTES,
    backoff_seconds,
    batch_body,
    batch_cut,
    connection_namespace,
    outcome,
    sent_message_id,
    wire,
)

logger = logging.getLogger(__name__)

# How long one run may hold a pool process. A connection with a backlog then goes to the back of
# the queue, so the others' runs and the sweeper (which hands a dead worker's connections on) wait
# at most this long even when every process is draining a backlog (bench/multinode.py measured
# sweeps queued 24 s behind 20-second runs); a re-queue costs a few milliseconds per run.
RUN_BUDGET_SECONDS = 5.0
SHORT_WAIT_SECONDS = 5.0
# A batch smaller than this came from a trickle: the run ends rather than waiting for more.
STOP_BELOW_EVENTS = 100
LINGER_BELOW_EVENTS = 500
LINGER_SECONDS = 0.02


@dataclass
class Pending:
    seq: int
    message_id: str
    body: bytes
    received_at: datetime
    wire: bytes = b""
    # Events the connection's filters held back, passed together with this one: those between
    # the previous pending event and it (and, for a batch's last, those after it).
    held: list[Held] = field(default_factory=list)

    @property
    def through(self) -> int:
        """The seq the position may move to once this event is done with."""
        return max(self.seq, self.held[-1].seq) if self.held else self.seq


def connection_deliver(*, connection_id: int) -> None:
    # The keeper renews the lease while this run lives, up to its budget and one request.
    keep_for = RUN_BUDGET_SECONDS + settings.SEGMENT_TIMEOUT_SECONDS + 5
    if db.vendor == "postgresql":
        # The claim reads the first batch too: what it reads is in its snapshot, so the check
        # that let the claim through is as fresh as a renewal after a separate read would be.
        taken = lease_take(connection_id, keep_for=keep_for, reading=_TAKE_READING,
                           reading_params=[MAX_BATCH_EVENTS, BATCH_ROOM])
    else:
        taken = lease_take(connection_id, keep_for=keep_for)
    if taken is None:
        return
    lease, rows = taken
    connection = lease.connection
    if connection is None:
        return
    first = _read_rows(rows) if rows else None
    released: Released | None = None
    try:
        deadline = time.monotonic() + RUN_BUDGET_SECONDS
        while time.monotonic() < deadline:
            sent, first = _deliver_next_batch(connection, lease, first), None
            if sent < STOP_BELOW_EVENTS:
                # Nothing left, a wait, or a trickle: free the pool process for the other
                # connections; the release re-queues this one if events came meanwhile.
                break
            if sent < LINGER_BELOW_EVENTS:
                # Events are streaming in: let a few milliseconds' worth gather, so a steady
                # stream goes out in fewer, larger batches (each costs the same round trips to
                # PostgreSQL and one to Segment whatever its size).
                time.sleep(LINGER_SECONDS)
    finally:
        released = lease_release(lease)
        _requeue(connection, released)


def _requeue(connection: Connection, released: Released | None) -> None:
    """After a run: queue the next one if events arrived meanwhile or a retry is due soon.
    `released` is the connection as the release found it (None: the lease was no longer this
    run's, so its holder or the sweeper decides)."""
    if released is None or not released.deliverable:
        return
    if released.next_attempt_at:
        # A short wait is a brief countdown; longer ones are left to the sweeper, since a
        # broker redelivers unacknowledged countdown tasks after its visibility timeout.
        wait = (released.next_attempt_at - timezone.now()).total_seconds()
        if wait <= SHORT_WAIT_SECONDS:
            queue_delivery(connection.pk, countdown=max(0.0, wait))
        return
    if released.wake_queued or released.log_end > released.delivered_seq:
        # Events arrived during the run (their wake-up found the lease taken), or it ran out
        # of time: one more run, after the wait that lets a trickle gather (relay.wake).
        Connection.objects.filter(pk=connection.pk).update(wake_queued_at=timezone.now())
        queue_delivery(connection.pk, countdown=gather_seconds())


def _deliver_next_batch(connection: Connection, lease: Lease, read: Read | None = None) -> int:
    """Send one batch; how many events it held when the run should go on, else 0.

    The lease is renewed after the batch is read and before it is sent, on the condition that
    the key and region this run holds are still the connection's and still checked: a key
    replaced, a region changed, a pause or a disable stops the run before its next request, and
    whatever it sends was in the log before that change committed. A batch `read` by the claim
    itself needs no renewal: the claim checked the same, in the same snapshot.
    """
    batch, held = _next_batch(connection, read)
    if not (batch or held) or (read is None and not lease_renew(lease)):
        return 0
    if not batch:  # every event read was held back by the connection's filters
        with transaction.atomic():
            _advance(connection, held[-1].seq)
            filtered_record(connection_id=connection.pk, at=timezone.now(), held=held)
        return len(held)
    try:
        write_key = connection.write_key()
    except CredentialUnreadable:
        _pause(connection, Health.UNREADABLE, "Credential unreadable: paste the key again.")
        return 0
    return len(batch) if _send(connection, write_key, batch) else 0


def _next_batch(connection: Connection, read: Read | None = None) -> tuple[list[Pending], list[Held]]:
    """The next events in log order (`read` when the claim read them), cut so that what is
    *sent* (with the per-connection messageId added) stays within Segment's batch limits; and,
    when the filters held back every event read, those (else they ride on the pending events)."""
    rows, filters_key = read or _read(connection.pk, connection.workspace_id, connection.delivered_seq)
    if not rows:
        return [], []
    namespace = connection_namespace(connection.pk)
    filters = _filters(connection.pk, filters_key)
    if filters:
        return _filtered_batch(filters, rows, namespace)
    batch = [Pending(seq, message_id, body, received_at, wire(body, sent_message_id(namespace, message_id)))
             for seq, message_id, body, received_at in rows]
    return batch[:batch_cut(len(pending.wire) for pending in batch)], []


def _filtered_batch(filters: list[CompiledFilter], rows: list[tuple[int, str, bytes, datetime]],
                    namespace: bytes) -> tuple[list[Pending], list[Held]]:
    """Run the filters over the rows; held-back events ride on the next pending one. Held
    events past the cut stay unread: the next batch meets them again."""
    batch: list[Pending] = []
    held: list[Held] = []
    for seq, message_id, body, received_at in rows:
        result = run_filters(filters, seq, message_id, body)
        if isinstance(result, Held):
            held.append(result)
            continue
        batch.append(Pending(seq, message_id, result, received_at, wire(result, sent_message_id(namespace, message_id)),
                             held))
        held = []
    cut = batch_cut(len(pending.wire) for pending in batch)
    if cut < len(batch):
        return batch[:cut], []
    if batch:
        batch[-1].held = batch[-1].held + held
        return batch, []
    return [], held


# Per process: each connection's compiled filters under the key they were read with.
_filters_seen: dict[int, tuple[str, list[CompiledFilter]]] = {}


def _filters(connection_id: int, key: str | None) -> list[CompiledFilter]:
    """The connection's filters as they are now. `key` lists their (id, version) pairs as the
    read found them ("" without filters); None when the read could not say (not PostgreSQL)."""
    if key is None:
        return connection_filters(connection_id)
    if not key:
        _filters_seen.pop(connection_id, None)
        return []
    seen = _filters_seen.get(connection_id)
    if seen is not None and seen[0] == key:
        return seen[1]
    # Read after the key: at least as new as it, so a stale pair is never kept under a new key.
    compiled = connection_filters(connection_id)
    _filters_seen[connection_id] = (key, compiled)
    return compiled


Row = tuple[int, str, bytes, datetime]
Read = tuple[list[Row], str | None]


def _read(connection_id: int, workspace_id: int, after: int) -> Read:
    """(seq, messageId, body, received_at) of the next MAX_BATCH_EVENTS seqs after `after`, in
    log order; and the key of the connection's enabled filters (None when not read)."""
    # seqs are dense, so a bounded range keeps the plan an index range scan whatever the
    # backlog or the planner's statistics.
    if db.vendor != "postgresql":
        return [(seq, message_id, bytes(body), received_at) for seq, message_id, body, received_at in
                Event.objects.filter(workspace_id=workspace_id, seq__gt=after, seq__lte=after + MAX_BATCH_EVENTS)
                .order_by("seq").values_list("seq", "message_id", "body", "received_at")], None
    # Only the rows that fit in one batch (the running total of what each adds to the sent
    # body), and binary results, so bodies arrive as bytes rather than hex text. The filters'
    # key rides on the same round trip (one row with no event when nothing is left).
    with pg.cursor() as cursor:
        cursor.execute(_READ_SQL, [connection_id, workspace_id, after, after, MAX_BATCH_EVENTS, BATCH_ROOM],
                       binary=True)
        rows = cursor.fetchall()
    return _read_rows(rows)


def _read_rows(rows: list[tuple[Any, ...]]) -> Read:
    """The events and the filters' key from the rows of _READ_SQL or _TAKE_READING: (seq,
    messageId, body, received_at, key) each (_TAKE_READING: one row of the key alone when no
    event is left; _READ_SQL: no row, and no key is needed)."""
    key = rows[0][4] if rows else ""
    return [row[:4] for row in rows if row[0] is not None], key


_FILTERS_KEY = ("SELECT coalesce(string_agg(id::text || ':' || version::text, ',' ORDER BY position, id), '') "  # noqa: S608
                f"AS key FROM {DestinationFilter._meta.db_table} WHERE enabled AND connection_id = ")
_WINDOW = ("SELECT seq, message_id, body, received_at FROM (SELECT seq, message_id, body, received_at, "  # noqa: S608
           f"sum(size + {SENT_MESSAGE_ID_BYTES + 1}) OVER (ORDER BY seq) AS upto "
           f"FROM {Event._meta.db_table} WHERE workspace_id = {{workspace}} AND seq > {{after}} "
           "AND seq <= {after} + %s::bigint) AS x WHERE upto <= %s")
# The key is an uncorrelated subquery, evaluated once (an InitPlan); the window's order is kept.
# The bound is cast: psycopg sends a small int as smallint, and a position up to 32,767 plus
# the batch size added in smallint would overflow.
_READ_SQL = (f"SELECT w.seq, w.message_id, w.body, w.received_at, ({_FILTERS_KEY}%s) "  # noqa: S608
             f"FROM ({_WINDOW.format(workspace='%s', after='%s')}) AS w ORDER BY w.seq")
# The same after lease_take's `SELECT taken.*, `: the claimed connection's next events.
_TAKE_READING = (f"w.seq, w.message_id, w.body, w.received_at, f.key FROM taken "
                 f"CROSS JOIN LATERAL ({_FILTERS_KEY}taken.id) AS f "
                 f"LEFT JOIN LATERAL ({_WINDOW.format(workspace='taken.workspace_id', after='taken.delivered_seq')}) "
                 "AS w ON true ORDER BY w.seq")


def _send(connection: Connection, write_key: str, batch: list[Pending]) -> bool:
    """Send one batch and act on the answer; True when the position moved."""
    answer = _post(connection, write_key, batch)
    if answer is None:
        return False
    verdict = outcome(answer.status)
    if verdict == AttemptOutcome.DELIVERED:
        return True
    if verdict == AttemptOutcome.REJECTED:
        return _bisect(connection, write_key, batch, answer)
    if verdict == AttemptOutcome.RETRYING:
        _back_off(connection, answer.retry_after, f"HTTP {answer.status}")
        return False
    _pause(connection, Health.FAILING, f"Segment refused the key (HTTP {answer.status}). Check the key and run a check.")
    return False


def _post(connection: Connection, write_key: str, batch: list[Pending]) -> client.Answer | None:
    """One request to Segment, recorded as an attempt; on a 200 the position moves past the
    batch in the same transaction. None when Segment did not answer (the wait is set)."""
    started_at, started = timezone.now(), time.monotonic()
    body = batch_body(pending.wire for pending in batch)
    sent = Sent(batch[0].seq, batch[-1].seq, len(batch), len(body))
    attempt = connection.failures + 1
    try:
        answer = client.post(connection.region, write_key, "batch", body)
    except client.SegmentUnreachable as unreachable:
        _log(connection, sent, None, started)
        attempt_record(connection_id=connection.pk, sent=sent, started_at=started_at, duration_ms=_ms(started),
                       status=None, outcome=AttemptOutcome.RETRYING, attempt=attempt,
                       reply=f"No answer from Segment ({unreachable.reason}).")
        _back_off(connection, None, f"network: {unreachable.reason}")
        return None
    _log(connection, sent, answer.status, started)
    verdict = outcome(answer.status)
    delivered = verdict == AttemptOutcome.DELIVERED
    now = timezone.now()
    held = [h for p in batch for h in p.held] if delivered else []
    with transaction.atomic() if held else nullcontext():  # else one statement, atomic by itself
        attempt_settle(connection_id=connection.pk, sent=sent, started_at=started_at, duration_ms=_ms(started),
                       status=answer.status, outcome=verdict, reply=answer.body, attempt=attempt,
                       latencies=[(now - p.received_at).total_seconds() for p in batch] if delivered else (),
                       advance_to=batch[-1].through if delivered else None)
        filtered_record(connection_id=connection.pk, at=now, held=held)
    if delivered:
        connection.delivered_seq = max(connection.delivered_seq, batch[-1].through)
        connection.failures = 0
    return answer


def _bisect(connection: Connection, write_key: str, batch: list[Pending], refusal: client.Answer) -> bool:
    """Split a refused batch until the refused events stand alone; they become dead letters.
    Each half is a recorded attempt; a half answered with anything but 200 or a refusal
    stops the split and waits like any retryable failure (the position stays before it).
    False when it stopped so."""
    if len(batch) == 1:
        with transaction.atomic():
            _dead_letter(connection, batch[0], refusal)
            _advance(connection, batch[0].through)
            filtered_record(connection_id=connection.pk, at=timezone.now(), held=batch[0].held)
        return True
    middle = len(batch) // 2
    for half in (batch[:middle], batch[middle:]):
        answer = _post(connection, write_key, half)
        if answer is None:
            return False
        if outcome(answer.status) == AttemptOutcome.REJECTED:
            if not _bisect(connection, write_key, half, answer):
                return False
        elif answer.status != 200:
            _back_off(connection, answer.retry_after, f"HTTP {answer.status} while splitting a refused batch")
            return False
    return True


def _advance(connection: Connection, seq: int) -> None:
    Connection.objects.filter(pk=connection.pk, delivered_seq__lt=seq).update(
        delivered_seq=seq, failures=0, next_attempt_at=None)
    connection.delivered_seq = max(connection.delivered_seq, seq)
    connection.failures = 0


def _back_off(connection: Connection, retry_after: int | None, why: str) -> None:
    failures = connection.failures + 1
    wait = backoff_seconds(failures, retry_after)
    Connection.objects.filter(pk=connection.pk).update(
        failures=F("failures") + 1, next_attempt_at=timezone.now() + timedelta(seconds=wait))
    connection.failures = failures
    logger.info("relay.backoff", extra={"connection_id": connection.pk, "why": why, "wait_s": round(wait, 2)})


def _pause(connection: Connection, health: Health, reason: str) -> None:
    connection_pause(connection_id=connection.pk, health=health, reason=reason)


def _dead_letter(connection: Connection, pending: Pending, refusal: client.Answer) -> None:
    kind, name = Event.objects.filter(workspace_id=connection.workspace_id, seq=pending.seq).values_list(
        "type", "name").get()
    _, created = DeadLetter.objects.get_or_create(connection=connection, seq=pending.seq, defaults={
        "message_id": pending.message_id, "type": kind, "name": name, "body": pending.body,
        "received_at": pending.received_at, "reason": "rejected", "status": refusal.status,
        "response": refusal.body[:300]})
    if created:
        failures_record(connection_id=connection.pk, at=timezone.now(), events=1)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _log(connection: Connection, sent: Sent, status: int | None, started: float) -> None:
    """One line per request; `status` None when Segment did not answer."""
    logger.info("relay.batch_sent", extra={
        "connection_id": connection.pk, "events": sent.events, "bytes": sent.bytes, "status": status,
        "duration_ms": round((time.monotonic() - started) * 1000, 1)})
