"""Everything a connection's Overview tab and Deliveries panel show: its health and its
figures, read once for both."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from integrations.models import Connection, DeliveryAttempt
from integrations.selectors.health import ConnectionHealth, Facts, connection_health
from integrations.selectors.usage import (
    DEAD_LETTER_COUNT_CAP,
    Backlog,
    Totals,
    attempts_for_connection,
    connection_backlog,
    connection_totals,
    dead_letters_count,
    undelivered_dead_letters,
)

LATEST_ATTEMPTS = 5


@dataclass(frozen=True)
class Overview:
    health: ConnectionHealth
    backlog: Backlog
    backlog_age: timedelta | None
    totals: list[Totals]
    latest: list[DeliveryAttempt]
    dead_letters: int  # not delivered by a replay, all time (capped)
    dead_letters_capped: bool
    undelivered: dict[str, int]  # dead letters not delivered by a replay, per window
    now: datetime


def connection_overview(*, connection: Connection, can_manage: bool, now: datetime | None = None) -> Overview:
    """The connection's Overview tab and Deliveries panel, in six bounded reads."""
    now = now or timezone.now()
    backlog = connection_backlog(connection=connection)
    totals = connection_totals(connection=connection, now=now)
    latest = list(attempts_for_connection(connection=connection).order_by("-started_at", "-id")[:LATEST_ATTEMPTS])
    dead = dead_letters_count(connection=connection)
    undelivered = undelivered_dead_letters(connection=connection, now=now)
    for total in totals:
        total.undelivered = undelivered[total.key]
    facts = Facts(connection, connection.latest_verification, backlog, undelivered["day"],
                  latest[0] if latest else None)
    health = connection_health(facts, can_manage=can_manage, now=now)
    return Overview(health, backlog, backlog.age(now), totals, latest, min(dead, DEAD_LETTER_COUNT_CAP),
                    dead > DEAD_LETTER_COUNT_CAP, undelivered, now)
