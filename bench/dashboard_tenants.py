"""The shape of the seeded world, shared by the seeding steps: each tenant (a workspace with
its people, its traffic and its connections) and each connection's delivery story over the
seeded days. Plus the one COPY helper every bulk step uses."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from dashboard_seed_events import Traffic
from django.db import models


class Story(StrEnum):
    """How a connection's last 30 days went."""

    LIVE = "live"  # caught up, with the odd recovered outage and refused event
    BEHIND = "behind"  # Segment has been answering 429/5xx for a while: retrying, with a backlog
    PAUSED = "paused"  # the key was refused (401): paused, events accumulate
    DISABLED = "disabled"  # switched off by a person: nothing sent since
    EXPIRED = "expired"  # paused long ago for over the maximum age: the oldest events expired


@dataclass
class Line:
    """One connection and its delivery story, in bucket numbers of the workspace's Traffic."""

    name: str
    region: str
    story: Story
    created_bucket: int = 0  # 0: connected before the seeded days
    stop_bucket: int | None = None  # BEHIND, PAUSED, DISABLED: nothing delivered from here on
    incidents: list[tuple[int, int]] = field(default_factory=list)  # (first bucket, length) recovered outages
    rejects: float = 0.0003  # chance that a request carries an event Segment refuses (400)
    spell: tuple[int, int] | None = None  # buckets (from, to) of a bad release: many events refused
    spell_rejects: float = 0.3
    pause: tuple[int, int] | None = None  # EXPIRED: paused from, resumed at
    id: int = 0
    last4: str = ""  # of its write key, for audit details
    delivered_seq: int = 0
    failures: int = 0


@dataclass
class Person:
    user_id: int
    email: str
    role: str


@dataclass
class Tenant:
    rank: int  # 1 has the most events
    name: str
    domain: str
    logged: int  # events in the log
    traffic: Traffic
    lines: list[Line]
    people: list[Person] = field(default_factory=list)  # the owner first
    workspace_id: int = 0
    slug: str = ""


def table(model: type[models.Model]) -> str:
    return model._meta.db_table


def copy_rows(connection: psycopg.Connection[Any], model: type[models.Model], columns: Sequence[str],
              rows: Iterable[Sequence[Any]], types: Sequence[str] | None = None) -> int:
    """COPY rows into the model's table: binary with `types`, else text (psycopg adapts each
    value); returns how many."""
    binary = " (FORMAT BINARY)" if types else ""
    count = 0
    with connection.cursor() as cursor, cursor.copy(
            f"COPY {table(model)} ({', '.join(columns)}) FROM STDIN{binary}") as copy:
        if types:
            copy.set_types(types)
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


@contextmanager
def indexes_built_after(connection: psycopg.Connection[Any], models_: Sequence[type[models.Model]]) -> Iterator[None]:
    """Load the tables without their indexes and unique constraints, then build each once:
    one sort of 2.5 million rows costs a fraction of keeping four B-trees up to date row by
    row. The definitions come from the catalogue, so whatever the migrations made is rebuilt
    exactly (nothing references these tables' keys)."""
    saved: list[tuple[str, str, str]] = []  # (table, constraint name or "", definition)
    for model in models_:
        name = table(model)
        constraints = connection.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = %s::regclass "
            "AND contype IN ('p', 'u')", [name]).fetchall()
        indexes = connection.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
            "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)", [name, name]).fetchall()
        for index, definition in indexes:
            connection.execute(f'DROP INDEX "{index}"')
            # A partitioned table's index is listed "ON ONLY" the parent: rebuilt so, it would be
            # an invalid index on the parent and none on the partitions (the event log's).
            saved.append((name, "", definition.replace(" ON ONLY ", " ON ", 1)))
        for constraint, definition in constraints:
            connection.execute(f'ALTER TABLE {name} DROP CONSTRAINT "{constraint}"')
            saved.append((name, constraint, definition))
    yield
    connection.execute("SET maintenance_work_mem = '256MB'")
    for name, constraint, definition in reversed(saved):  # primary keys first
        if constraint:
            connection.execute(f'ALTER TABLE {name} ADD CONSTRAINT "{constraint}" {definition}')
        else:
            connection.execute(definition)
