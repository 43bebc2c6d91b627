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
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.db import connection as db
from django.db.models import Model, Q, QuerySet
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from integrations.models import Connection, EventStream

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


def lease_take(connection_id: int, *, keep_for: float) -> Lease | None:
    """Claim a deliverable, due connection whose lease is free or lapsed; clear its wake-up flag."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    owner = _owner_token()
    fields = [field.attname for field in Connection._meta.concrete_fields]
    rows = _update_returning(Connection.objects.deliverable().filter(free, due, pk=connection_id),
                             {"lease_until": now + lease_seconds(), "lease_owner": owner, "wake_queued_at": None},
                             [_column(name) for name in fields])
    if not rows:
        return None
    lease = Lease(connection_id, owner, time.monotonic() + keep_for)
    lease.connection = Connection.from_db(db.alias, fields, _converted(fields, rows[0]))
    lease.checked_key = lease.connection.cleared_token()
    keeper.hold(lease)
    return lease


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
    fields = ["enabled", "paused_reason", "checked_key", "write_key_fingerprint", "region", "wake_queued_at",
              "next_attempt_at", "delivered_seq"]
    log_end = (f"(SELECT {_column('last_seq', EventStream)} FROM {_quote(EventStream._meta.db_table)} "  # noqa: S608
               f"WHERE {_column('workspace_id', EventStream)} = "
               f"{_quote(Connection._meta.db_table)}.{_column('workspace_id')})")
    rows = _update_returning(Connection.objects.filter(pk=lease.connection_id, lease_owner=lease.owner),
                             {"lease_until": None, "lease_owner": ""}, [*map(_column, fields), log_end])
    if not rows:
        return None
    left = Connection(**dict(zip(fields, _converted(fields, rows[0][:-1]), strict=True)))
    return Released(deliverable=left.enabled and not left.paused_reason and not left.awaiting_check,
                    wake_queued=left.wake_queued_at is not None, next_attempt_at=left.next_attempt_at,
                    delivered_seq=left.delivered_seq, log_end=rows[0][-1] or 0)


def _update_returning(queryset: QuerySet[Connection], values: dict[str, Any], returning: Sequence[str]
                      ) -> list[tuple[Any, ...]]:
    """`queryset.update(**values)`, returning `returning` of the rows it changed: one round trip
    where update() and a read would take two. The WHERE clause is the ORM's own, so
    `Connection.deliverable()` stays the one definition of who may send."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    sql, params = query.get_compiler(queryset.db).as_sql()
    with db.cursor() as cursor:
        cursor.execute(f"{sql} RETURNING {', '.join(returning)}", params)
        return list(cursor.fetchall())


def _converted(fields: Sequence[str], row: Sequence[Any]) -> list[Any]:
    """The row's values as the ORM would read them (SQLite returns text for datetimes)."""
    by_attname = {field.attname: field for field in Connection._meta.concrete_fields}
    values = []
    for name, value in zip(fields, row, strict=True):
        column = by_attname[name].get_col(Connection._meta.db_table)
        for converter in [*db.ops.get_db_converters(column), *column.get_db_converters(db)]:
            value = converter(value, column, db)
        values.append(value)
    return values


def _quote(name: str) -> str:
    return db.ops.quote_name(name)


def _column(attname: str, model: type[Model] = Connection) -> str:
    return _quote(str(next(f.column for f in model._meta.concrete_fields if f.attname == attname)))


def _extend(lease: Lease) -> bool:
    held = Connection.objects.deliverable().filter(pk=lease.connection_id, lease_owner=lease.owner)
    if lease.checked_key:
        held = held.filter(checked_key=lease.checked_key)
    return bool(held.update(lease_until=timezone.now() + lease_seconds()))


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

