"""Leases on connections: one delivery run sends for a connection at a time, and a dead
worker's connection is taken over within seconds.

A lease is `lease_until` (when it lapses) and `lease_owner` (a random token per run). It is
short (RELAY_LEASE_SECONDS, 5 s by default) and kept alive two ways:
  1. before sending each batch the run renews it with a conditional UPDATE that also requires
     the connection to be still deliverable (enabled, not paused) with the key and region the
     run holds, checked; so a replaced key, a changed region, a pause or a disable stops the run
     before its next request;
  2. while the run waits on Segment (up to the request timeout) or lingers between batches,
     one keeper thread per process renews every lease the process holds every third of the
     lease.
A process killed with -9 stops renewing; its leases lapse within RELAY_LEASE_SECONDS and the
sweeper hands the connection to another worker. The keeper stops renewing a run that has gone
on past its time budget (a hung run must not hold a connection forever).
"""
from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection as db
from django.db.models import Model
from django.utils import timezone

from integrations.models import Connection, EventStream
from integrations.relay import pg

logger = logging.getLogger(__name__)


@dataclass
class Lease:
    connection_id: int
    owner: str
    # monotonic time after which the keeper stops renewing (the run's budget and one request)
    keep_until: float
    # The key and region the run sends with (`Connection.cleared_token()`): renewals fail once
    # they are no longer the connection's checked ones.
    checked_key: str = ""
    # The connection as the take found it (read by the claiming UPDATE itself).
    connection: Connection | None = None


@dataclass(frozen=True)
class Released:
    """The connection as the release left it: what decides whether another run is due."""

    deliverable: bool
    wake_queued: bool
    next_attempt_at: Any
    delivered_seq: int
    log_end: int


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.RELAY_LEASE_SECONDS)


def lease_take(connection_id: int, *, keep_for: float, reading: str = "", reading_params: Sequence[Any] = ()
               ) -> tuple[Lease, list[tuple[Any, ...]]] | None:
    """Claim a deliverable, due connection whose lease is free or lapsed; clear its wake-up flag.
    The claiming UPDATE also reads the connection (RETURNING): one round trip, not two.

    With `reading` (PostgreSQL), the same statement goes on to read, as
    `WITH taken AS (<the claim>) SELECT taken.*, <reading>`: in the claim's snapshot, so what it
    reads was committed before the check that let the claim through. Its columns come back, one
    list per row, after the lease."""
    sql = _statements()
    now = timezone.now()
    owner = _owner_token()
    params = [_when(now + lease_seconds()), owner, *sql.deliverable_params, connection_id, _when(now), _when(now)]
    if reading:
        with pg.cursor() as cursor:
            cursor.execute(f"WITH taken AS ({sql.take}) SELECT taken.*, {reading}", [*params, *reading_params],
                           binary=True)
            rows = cursor.fetchall()
    else:
        with db.cursor() as cursor:
            cursor.execute(sql.take, params)
            rows = cursor.fetchall()
    if not rows:
        return None
    lease = Lease(connection_id, owner, time.monotonic() + keep_for)
    width = len(sql.fields)
    lease.connection = Connection.from_db(db.alias, sql.fields, _converted(sql, rows[0][:width]))
    lease.checked_key = lease.connection.cleared_token()
    keeper.hold(lease)
    # Without `reading` the claim's row has nothing after the connection: no rows read.
    return lease, [row[width:] for row in rows] if reading else []


def _owner_token() -> str:
    """Unique per run, and naming the process that holds it (host and pid), for operators."""
    return f"{socket.gethostname()[:16]}:{os.getpid()}:{secrets.token_hex(6)}"


def lease_renew(lease: Lease) -> bool:
    """Extend the lease; False when it was lost or the connection may no longer send."""
    if _extend(lease):
        return True
    logger.warning("relay.lease_lost", extra={"connection_id": lease.connection_id})
    return False


def lease_release(lease: Lease) -> Released | None:
    """Give the lease up; in the same statement, read what decides whether another run is due
    (None when the lease was no longer this run's)."""
    keeper.drop(lease)
    sql = _statements()
    with db.cursor() as cursor:
        cursor.execute(sql.release, [lease.connection_id, lease.owner])
        row = cursor.fetchone()
    if row is None:
        return None
    left = Connection(**dict(zip(_RELEASE_FIELDS, _converted(sql, row[:-1], _RELEASE_FIELDS), strict=True)))
    return Released(deliverable=left.enabled and not left.paused_reason and not left.awaiting_check,
                    wake_queued=left.wake_queued_at is not None, next_attempt_at=left.next_attempt_at,
                    delivered_seq=left.delivered_seq, log_end=row[-1] or 0)


def _extend(lease: Lease) -> bool:
    sql = _statements()
    with db.cursor() as cursor:
        cursor.execute(sql.renew, [_when(timezone.now() + lease_seconds()), *sql.deliverable_params,
                                   lease.connection_id, lease.owner, lease.checked_key, lease.checked_key])
        return bool(cursor.rowcount)


# What the release reads back: whether the connection may still send, and whether it is due.
_RELEASE_FIELDS = ("enabled", "paused_reason", "checked_key", "write_key_fingerprint", "region", "wake_queued_at",
                   "next_attempt_at", "delivered_seq")


@dataclass(frozen=True)
class _Statements:
    """The lease's three statements, written once per process. Their condition for sending is
    the ORM's own `Connection.deliverable()`, compiled, so it stays the one definition."""

    take: str
    renew: str
    release: str
    deliverable_params: list[Any]
    fields: list[str]  # the connection's columns, as attnames, in the take's RETURNING order
    converters: dict[str, list[Any]]


_compiled: list[_Statements] = []


def _statements() -> _Statements:
    if _compiled:
        return _compiled[0]
    query = Connection.objects.deliverable().query
    deliverable, params = query.get_compiler(db.alias).compile(query.where)
    table = _quote(Connection._meta.db_table)
    fields = [field.attname for field in Connection._meta.concrete_fields]
    stream = EventStream._meta
    log_end = (f"(SELECT {_column('last_seq', EventStream)} FROM {_quote(stream.db_table)} "  # noqa: S608
               f"WHERE {_column('workspace_id', EventStream)} = {table}.{_column('workspace_id')})")
    lease_until, owner, pk = _column("lease_until"), _column("lease_owner"), _column("id")
    due = _column("next_attempt_at")
    _compiled.append(_Statements(
        take=(f"UPDATE {table} SET {lease_until} = %s, {owner} = %s, {_column('wake_queued_at')} = NULL "  # noqa: S608
              f"WHERE {deliverable} AND {table}.{pk} = %s "
              f"AND ({table}.{lease_until} IS NULL OR {table}.{lease_until} < %s) "
              f"AND ({table}.{due} IS NULL OR {table}.{due} <= %s) "
              f"RETURNING {', '.join(_column(name) for name in fields)}"),
        renew=(f"UPDATE {table} SET {lease_until} = %s WHERE {deliverable} AND {table}.{pk} = %s "  # noqa: S608
               f"AND {table}.{owner} = %s AND (%s = '' OR {table}.{_column('checked_key')} = %s)"),
        release=(f"UPDATE {table} SET {lease_until} = NULL, {owner} = '' "  # noqa: S608
                 f"WHERE {table}.{pk} = %s AND {table}.{owner} = %s "
                 f"RETURNING {', '.join(_column(name) for name in _RELEASE_FIELDS)}, {log_end}"),
        deliverable_params=list(params), fields=fields,
        converters={field.attname: _converters(field) for field in Connection._meta.concrete_fields}))
    return _compiled[0]


def _converters(field: Any) -> list[Any]:
    column = field.get_col(Connection._meta.db_table)
    return [(converter, column) for converter in [*db.ops.get_db_converters(column), *column.get_db_converters(db)]]


def _converted(sql: _Statements, row: Sequence[Any], fields: Sequence[str] = ()) -> list[Any]:
    """The row's values as the ORM would read them (SQLite returns text for datetimes)."""
    values = []
    for name, value in zip(fields or sql.fields, row, strict=True):
        for converter, column in sql.converters[name]:
            value = converter(value, column, db)
        values.append(value)
    return values


def _when(moment: datetime) -> Any:
    return db.ops.adapt_datetimefield_value(moment)


def _quote(name: str) -> str:
    return db.ops.quote_name(name)


def _column(attname: str, model: type[Model] = Connection) -> str:
    return _quote(str(next(f.column for f in model._meta.concrete_fields if f.attname == attname)))


class Keeper:
    """The process's renewal thread, started on first use (after a fork, anew in the child)."""

    def __init__(self) -> None:
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def hold(self, lease: Lease) -> None:
        with self._lock:
            self._held[lease.owner] = lease
            if self._pid != os.getpid():
                self._pid = os.getpid()
                threading.Thread(target=self._run, name="relay-lease-keeper", daemon=True).start()

    def drop(self, lease: Lease) -> None:
        with self._lock:
            self._held.pop(lease.owner, None)

    def _run(self) -> None:
        while True:
            self._wake.wait(settings.RELAY_LEASE_SECONDS / 3)
            with self._lock:
                now = time.monotonic()
                due = [lease for lease in self._held.values() if lease.keep_until > now]
            if not due:
                continue
            try:
                for lease in due:
                    _extend(lease)
            except Exception:  # the database may be away for a moment; the next round retries
                logger.exception("relay.lease_keeper_failed")
            finally:
                # One short-lived connection per round: nothing held open between rounds (a test
                # database can be dropped, a pooled server is not kept busy).
                db.close()


keeper = Keeper()

