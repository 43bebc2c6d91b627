"""Keeping the event log bounded without losing anything silently.

`events_expire`: an event still undelivered to a connection after RELAY_MAX_EVENT_AGE_HOURS
becomes a dead letter for that connection (its body is copied), the connection's position
moves past it, and an audit row says how many; nothing is dropped without a trace.
`deliveries_trim`: attempts, counts and filtered-event records past the 30 days the dashboard
shows are deleted.
`events_trim`: events that every connection of the workspace has passed, and that are older
than RELAY_RETENTION_HOURS (the window in which a resent messageId is still recognised), are
removed. On PostgreSQL the log is partitioned by day of `received_at` (migration 0018): a
day goes as a whole, its partition dropped once every event in it qualifies, which takes
milliseconds and leaves nothing for vacuum; `events_trim` also makes the partitions of the
coming days. Rows elsewhere (SQLite, and PostgreSQL's DEFAULT partition, which holds only
rows whose day has no partition) are deleted in bounded batches.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, connection, transaction
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
    for each in Connection.objects.select_related("workspace").iterator():
        expired += _expire_for(each, cutoff)
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
    """Remove what every connection passed once it is past the dedupe window; the number of
    events removed (for a dropped partition, PostgreSQL's estimate once it has analysed it)."""
    cutoff = timezone.now() - timedelta(hours=settings.RELAY_RETENTION_HOURS)
    deleted = 0
    if connection.vendor == "postgresql":
        partitions_prepare(today=timezone.now().date())
        deleted += _drop_passed_days(cutoff)
    for stream in EventStream.objects.all().iterator():
        floor = (Connection.objects.filter(workspace_id=stream.workspace_id)
                 .aggregate(floor=Min("delivered_seq"))["floor"])
        passed = stream.last_seq if floor is None else floor
        deleted += _delete_passed(stream.workspace_id, passed, cutoff)
    return deleted


def _delete_passed(workspace_id: int, passed: int, cutoff: datetime) -> int:
    if connection.vendor == "postgresql":
        return _delete_passed_from_default(workspace_id, passed, cutoff)
    total = 0
    while True:
        ids = list(Event.objects.filter(workspace_id=workspace_id, seq__lte=passed, received_at__lt=cutoff)
                   .order_by("seq").values_list("id", flat=True)[:CHUNK])
        if not ids:
            return total
        total += Event.objects.filter(id__in=ids).delete()[0]


def _delete_passed_from_default(workspace_id: int, passed: int, cutoff: datetime) -> int:
    """Row by row, only in the DEFAULT partition: the day partitions go whole."""
    total = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {DEFAULT_PARTITION} WHERE id IN (SELECT id FROM {DEFAULT_PARTITION} "  # noqa: S608
                           "WHERE workspace_id = %s AND seq <= %s AND received_at < %s ORDER BY seq LIMIT %s)",
                           [workspace_id, passed, cutoff, CHUNK])
            removed = int(cursor.rowcount)
        total += removed
        if removed < CHUNK:
            return total


# PostgreSQL's day partitions: `integrations_event_pYYYYMMDD` holds the events received on
# that UTC day; `integrations_event_default` whatever falls outside every day partition.
LOG = Event._meta.db_table
DEFAULT_PARTITION = f"{LOG}_default"
PARTITIONS_AHEAD_DAYS = 3
# DDL on a partition briefly locks the whole log against ingest and delivery, so it never
# queues for long behind a slow reader (which would hold everyone up behind it): it gives up
# after this long and tries again a little later, then at the next hourly run.
DDL_LOCK_TIMEOUT = "200ms"
DDL_ATTEMPTS = 5


def partition_name(day: date) -> str:
    return f"{LOG}_p{day:%Y%m%d}"


def partitions_existing() -> dict[date, str]:
    """The day partitions of the log, by day (other partitions, DEFAULT included, left out)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = %s::regclass", [LOG])
        names = [row[0] for row in cursor.fetchall()]
    days = {}
    for name in names:
        try:
            days[datetime.strptime(name.removeprefix(f"{LOG}_p"), "%Y%m%d").date()] = name
        except ValueError:
            continue
    return days


def partitions_prepare(*, today: date, ahead: int = PARTITIONS_AHEAD_DAYS) -> list[str]:
    """Make the partitions of today and the next `ahead` days that do not exist yet (the
    migration made the first ones; the hourly retention run keeps them coming). Returns the
    names made."""
    existing = partitions_existing()
    made = []
    for n in range(ahead + 1):
        day = today + timedelta(days=n)
        if day not in existing and _with_short_locks(partial(partition_create, day)):
            made.append(partition_name(day))
    return made


def partition_create(day: date) -> None:
    """Make the day's partition: a table of the log's shape, given the day's rows that waited in
    DEFAULT, then attached (which, unlike CREATE … PARTITION OF, lets ingest and delivery go on;
    it scans DEFAULT, kept small, to check none of its rows belongs to the day)."""
    name, start, end = partition_name(day), f"{day.isoformat()} 00:00+00", f"{day + timedelta(days=1)} 00:00+00"
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TABLE {name} (LIKE {LOG} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
        cursor.execute(f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE received_at >= %s "  # noqa: S608
                       f"AND received_at < %s RETURNING *) INSERT INTO {name} SELECT * FROM moved", [start, end])
        cursor.execute(f"ALTER TABLE {LOG} ATTACH PARTITION {name} FOR VALUES FROM ('{start}') TO ('{end}')")
    logger.info("relay.partition_created", extra={"partition": name})


def _drop_passed_days(cutoff: datetime) -> int:
    """Drop each day partition whose whole day is older than the cutoff and whose events every
    connection has passed (the rule `_delete_passed` applies row by row). Positions only move
    forward and no new event belongs to a past day, so once true this stays true: the check
    needs no lock.

    In two steps: DETACH takes the day out of the log under a brief lock on the whole log;
    then DROP removes the table, which the product no longer reads. One DROP would hold the
    log's lock until its commit had removed the files, seconds per GB where the disk frees
    blocks synchronously (ext4 mounted with `discard`, as here), with every append waiting.
    Both wait for their lock at most DDL_LOCK_TIMEOUT: a detached table someone still reads
    (a query run by hand) is dropped by a later run."""
    dropped = 0
    for day, name in sorted(partitions_existing().items()):
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        if end > cutoff:
            break
        if not _all_passed(name):
            continue
        events = _events_in(name)
        if _with_short_locks(partial(_detach, name)):
            logger.info("relay.partition_detached", extra={"partition": name, "events": events})
            dropped += events
    for name in _detached():  # this run's, and any an earlier run left (stopped or timed out in between)
        if _with_short_locks(partial(_drop, name)):
            logger.info("relay.partition_dropped", extra={"partition": name})
    return dropped


def _detach(partition: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {LOG} DETACH PARTITION {partition}")


def _detached() -> list[str]:
    """Day tables no longer part of the log (named as its day partitions, not partitions)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname FROM pg_class WHERE relkind = 'r' AND NOT relispartition "
                       "AND relnamespace = current_schema()::regnamespace AND relname ~ %s",
                       [f"^{LOG}_p[0-9]{{8}}$"])
        return [row[0] for row in cursor.fetchall()]


def _all_passed(partition: str) -> bool:
    """No workspace has an event in the partition beyond its floor: the lowest position of its
    connections, or the log's end when it has none. Per workspace, the partition's last seq
    read from the end of its (workspace, seq) index. (Not EXISTS … seq > floor LIMIT 1: the
    planner expects a third of the rows to match and scans the partition for the first, which
    is all of it when none does: seconds for a day of millions.)"""
    with connection.cursor() as cursor:
        cursor.execute(f"""
            SELECT NOT EXISTS (
                SELECT FROM (SELECT s.workspace_id, coalesce(min(c.delivered_seq), s.last_seq) AS passed
                             FROM {EventStream._meta.db_table} s
                             LEFT JOIN {Connection._meta.db_table} c ON c.workspace_id = s.workspace_id
                             GROUP BY s.workspace_id, s.last_seq) AS f
                WHERE (SELECT max(e.seq) FROM {partition} e WHERE e.workspace_id = f.workspace_id) > f.passed)
            """)  # noqa: S608
        return bool(cursor.fetchone()[0])


def _events_in(partition: str) -> int:
    """The partition's rows: PostgreSQL's estimate once it analysed the table (a day of
    millions is not counted again to be dropped), else counted."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [partition])
        estimate = cursor.fetchone()[0]
        if estimate >= 0:
            return int(estimate)
        cursor.execute(f"SELECT count(*) FROM {partition}")  # noqa: S608
        return int(cursor.fetchone()[0])


def _drop(partition: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE {partition}")


def _with_short_locks(ddl: Callable[[], None]) -> bool:
    """Run `ddl` in a transaction whose lock waits give up after DDL_LOCK_TIMEOUT; try again a
    few times, a little later each time. False when every attempt timed out."""
    failure = ""
    for attempt in range(DDL_ATTEMPTS):
        try:
            with transaction.atomic():
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
                ddl()
            return True
        except DatabaseError as error:
            # lock_timeout (a long reader or writer holds the log), or, when attaching, a row
            # of the day that reached DEFAULT meanwhile: nothing was changed either way.
            failure = f"{type(error).__name__}: {error}"
            logger.info("relay.partition_ddl_retried", extra={"attempt": attempt + 1, "error": failure[:300]})
            time.sleep(0.5 * (attempt + 1))
    logger.warning("relay.partition_ddl_postponed", extra={"attempts": DDL_ATTEMPTS, "error": failure[:300]})
    return False
