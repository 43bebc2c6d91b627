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
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection as db
from django.db.models import Q
from django.utils import timezone

from integrations.models import Connection

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


def lease_seconds() -> timedelta:
    return timedelta(seconds=settings.RELAY_LEASE_SECONDS)


def lease_take(connection_id: int, *, keep_for: float) -> Lease | None:
    """Claim a deliverable, due connection whose lease is free or lapsed; clear its wake-up flag."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    owner = _owner_token()
    claimed = Connection.objects.deliverable().filter(free, due, pk=connection_id).update(
        lease_until=now + lease_seconds(), lease_owner=owner, wake_queued_at=None)
    if not claimed:
        return None
    lease = Lease(connection_id, owner, time.monotonic() + keep_for)
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


def lease_release(lease: Lease) -> None:
    keeper.drop(lease)
    Connection.objects.filter(pk=lease.connection_id, lease_owner=lease.owner).update(
        lease_until=None, lease_owner="")


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

