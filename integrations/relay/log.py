"""Appending to a workspace's event log (the connections that deliver from it are woken by `wake`)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from django.db import IntegrityError, connection, transaction

from integrations.models import Event, EventStream
from integrations.relay import pg
from integrations.relay.wake import connections_wake

logger = logging.getLogger(__name__)


class Message(NamedTuple):
    """A valid, normalised event ready for the log (`body`: the sent form, less messageId)."""

    type: str
    message_id: str
    body: bytes
    name: str
    user_id: str
    received_at: datetime


@dataclass
class Appended:
    stored: int = 0
    duplicates: list[str] = field(default_factory=list)


def events_append(*, workspace_id: int, messages: Sequence[Message],
                  dedupe_keys: Sequence[str | None] | None = None) -> Appended:
    """Store events in the caller's transaction (or a new one); skip messageIds and dedupe
    keys the workspace already has. Connections are woken once the transaction commits.

    Outside a transaction on PostgreSQL (the ingest API's case) the whole append is one
    statement, committed when it returns: see `_append_in_one_statement`. Otherwise:
    1. drop messages whose messageId (or dedupe key) is already in the log or earlier in this batch;
    2. reserve seqs by moving the stream's end, which takes the workspace's stream row lock
       until commit, so seqs are handed out in commit order;
    3. write the rows (COPY on PostgreSQL) and commit.
    Only steps 2 and 3 hold the lock, so concurrent requests for one workspace overlap in all
    the rest. A concurrent request may store one of the same messageIds between steps 1 and 3;
    the unique constraint then refuses the write, and the append runs again with the lock
    taken before the check.
    """
    keys = list(dedupe_keys) if dedupe_keys is not None else [None] * len(messages)
    pairs = list(zip(messages, keys, strict=True))
    if connection.vendor == "postgresql" and not connection.in_atomic_block and pairs:
        try:
            appended = _append_in_one_statement(workspace_id, pairs)
        except IntegrityError:  # a concurrent request stored one of them after this one's snapshot
            appended = None
        if appended is not None:
            if appended.stored:
                connections_wake(workspace_id=workspace_id)
            return appended
    try:
        with transaction.atomic():
            return _append(workspace_id, pairs, lock_first=False)
    except IntegrityError:
        with transaction.atomic():
            return _append(workspace_id, pairs, lock_first=True)


def _append(workspace_id: int, pairs: list[tuple[Message, str | None]], *, lock_first: bool) -> Appended:
    result = Appended()
    if lock_first:
        _reserve(workspace_id, 0)
    fresh = _without_duplicates(workspace_id, pairs, result)
    if fresh:
        first = _reserve(workspace_id, len(fresh)) - len(fresh) + 1
        _insert(workspace_id, first, fresh)
        transaction.on_commit(lambda: connections_wake(workspace_id=workspace_id))
    result.stored = len(fresh)
    return result


def _reserve(workspace_id: int, count: int) -> int:
    """Move the workspace's log end by `count` and return the new end, holding its row lock."""
    sql = f"UPDATE {EventStream._meta.db_table} SET last_seq = last_seq + %s WHERE workspace_id = %s RETURNING last_seq"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(sql, [count, workspace_id])
        row = cursor.fetchone()
        if row is None:  # the workspace's first event
            try:
                with transaction.atomic():
                    EventStream.objects.create(workspace_id=workspace_id)
            except IntegrityError:
                pass  # created by a concurrent first event
            cursor.execute(sql, [count, workspace_id])
            row = cursor.fetchone()
    return int(row[0])


# Binary COPY sends each value in the column's own wire format: these must match the table.
COPY_COLUMNS = ("workspace_id", "seq", "message_id", "type", "name", "user_id", "body", "size", "received_at",
                "dedupe_key")
COPY_TYPES = ("int8", "int8", "text", "text", "text", "text", "bytea", "int4", "timestamptz", "text")


def _insert(workspace_id: int, first_seq: int, fresh: list[tuple[Message, str | None]]) -> None:
    """One COPY on PostgreSQL (several times faster than the multi-row INSERT the ORM builds);
    bulk_create elsewhere."""
    if connection.vendor != "postgresql":
        Event.objects.bulk_create([
            Event(workspace_id=workspace_id, seq=seq, message_id=m.message_id, type=m.type, name=m.name,
                  user_id=m.user_id, body=m.body, size=len(m.body), received_at=m.received_at, dedupe_key=key)
            for seq, (m, key) in enumerate(fresh, start=first_seq)])
        return
    statement = f"COPY {Event._meta.db_table} ({', '.join(COPY_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with pg.cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types(COPY_TYPES)
        for seq, (m, key) in enumerate(fresh, start=first_seq):
            copy.write_row((workspace_id, seq, m.message_id, m.type, m.name, m.user_id, m.body, len(m.body),
                            m.received_at, key))


def _append_in_one_statement(workspace_id: int, pairs: list[tuple[Message, str | None]]) -> Appended | None:
    """The append as one autocommitted statement: one round trip instead of six (BEGIN, the
    duplicate check, reserving seqs, COPY, COMMIT), with the same guarantees.

    Repeats within the batch are dropped here; the statement drops what the log already has
    (one index probe per value, as `already_logged_sql`), moves the stream's end by what is
    left, which takes the workspace's stream row lock until the statement commits (so seqs are
    handed out in commit order, as in `_append`), and inserts the rows under those seqs. The
    duplicate check reads the statement's snapshot: a messageId a concurrent request commits
    after it makes the insert fail on the unique constraint (IntegrityError, nothing stored),
    and the caller appends again the locked way. None when the workspace has no stream row yet
    (its first event), for the same.
    """
    result = Appended()
    fresh = _without_repeats(pairs, result)
    with pg.cursor() as cursor:
        cursor.execute(APPEND_SQL, {
            "workspace": workspace_id,
            "message_ids": [m.message_id for m, _ in fresh],
            "types": [m.type for m, _ in fresh],
            "names": [m.name for m, _ in fresh],
            "user_ids": [m.user_id for m, _ in fresh],
            "bodies": [m.body for m, _ in fresh],
            "received": [m.received_at for m, _ in fresh],
            "keys": [key for _, key in fresh],
        })
        row = cursor.fetchone()
    assert row is not None
    stored, reserved, kept = row
    if stored == 0 and kept and not reserved:
        return None
    kept_numbers = set(kept)
    result.duplicates.extend(m.message_id for n, (m, _) in enumerate(fresh, start=1) if n not in kept_numbers)
    result.stored = stored
    return result


def _without_repeats(pairs: list[tuple[Message, str | None]], result: Appended) -> list[tuple[Message, str | None]]:
    """The batch less messageIds and dedupe keys seen earlier in it (each counted a duplicate)."""
    seen_ids: set[str] = set()
    seen_keys: set[str] = set()
    fresh = []
    for message, key in pairs:
        if message.message_id in seen_ids or (key and key in seen_keys):
            result.duplicates.append(message.message_id)
            continue
        seen_ids.add(message.message_id)
        if key:
            seen_keys.add(key)
        fresh.append((message, key))
    return fresh


_EVENT, _STREAM = Event._meta.db_table, EventStream._meta.db_table
# The workspace as an InitPlan parameter and LATERAL … LIMIT 1 per value: index probes whatever
# the planner's statistics say (see `_already_logged`). Parameters go in binary (`%(…)b`): psycopg
# writes a hundred-element array as text in Python, at about 3 ms a request. The last column
# lists the input positions stored.
APPEND_SQL = f"""
WITH input AS (
    SELECT * FROM unnest(%(message_ids)b::text[], %(types)b::text[], %(names)b::text[], %(user_ids)b::text[],
                         %(bodies)b::bytea[], %(received)b::timestamptz[], %(keys)b::text[])
        WITH ORDINALITY AS t(message_id, type, name, user_id, body, received_at, dedupe_key, n)
), fresh AS MATERIALIZED (
    SELECT i.*, row_number() OVER (ORDER BY i.n) AS k
    FROM input i
    LEFT JOIN LATERAL (SELECT 1 AS hit FROM {_EVENT} e WHERE e.workspace_id = (SELECT %(workspace)b::bigint)
                       AND e.message_id = i.message_id LIMIT 1) AS by_id ON true
    LEFT JOIN LATERAL (SELECT 1 AS hit FROM {_EVENT} e WHERE i.dedupe_key IS NOT NULL
                       AND e.workspace_id = (SELECT %(workspace)b::bigint)
                       AND e.dedupe_key = i.dedupe_key LIMIT 1) AS by_key ON true
    WHERE by_id.hit IS NULL AND by_key.hit IS NULL
), counted AS MATERIALIZED (
    SELECT count(*) AS fresh FROM fresh
), reserved AS (
    UPDATE {_STREAM} s SET last_seq = s.last_seq + c.fresh FROM counted c
    WHERE s.workspace_id = %(workspace)b AND c.fresh > 0
    RETURNING s.last_seq - c.fresh AS before
), stored AS (
    INSERT INTO {_EVENT} (workspace_id, seq, message_id, type, name, user_id, body, size, received_at, dedupe_key)
    SELECT %(workspace)b, r.before + f.k, f.message_id, f.type, f.name, f.user_id, f.body, length(f.body),
           f.received_at, f.dedupe_key
    FROM fresh f CROSS JOIN reserved r
    RETURNING 1
)
SELECT (SELECT count(*) FROM stored), (SELECT count(*) FROM reserved), array(SELECT n FROM fresh)
"""  # noqa: S608 (table names from the models)


def _without_duplicates(workspace_id: int, pairs: list[tuple[Message, str | None]],
                        result: Appended) -> list[tuple[Message, str | None]]:
    known = _already_logged(workspace_id, "message_id", {m.message_id for m, _ in pairs})
    known_keys = _already_logged(workspace_id, "dedupe_key", {k for _, k in pairs if k})
    fresh = []
    for message, key in pairs:
        if message.message_id in known or (key and key in known_keys):
            result.duplicates.append(message.message_id)
            continue
        known.add(message.message_id)
        if key:
            known_keys.add(key)
        fresh.append((message, key))
    return fresh


def _already_logged(workspace_id: int, column: str, values: set[str]) -> set[str]:
    """Which of `values` the workspace's log already has in `column` (both are indexed)."""
    if not values:
        return set()
    if connection.vendor != "postgresql":
        return set(Event.objects.filter(workspace_id=workspace_id, **{f"{column}__in": values})
                   .values_list(column, flat=True))
    # One probe of the unique index per value, whatever the planner's statistics say. With
    # the workspace as a literal, statistics that predate its events (a new workspace's first
    # burst, before autovacuum's next ANALYZE) estimate it at one row, and the planner may
    # scan all of the workspace's events per value through the (workspace, seq) index:
    # seconds per request once the log is large. As an InitPlan parameter the workspace is
    # estimated at the average workspace's size, so the (workspace, value) index always wins;
    # LATERAL … LIMIT 1 keeps each value a separate probe.
    with pg.cursor() as cursor:
        cursor.execute(already_logged_sql(column), [list(values), workspace_id])
        return {row[0] for row in cursor.fetchall()}


def already_logged_sql(column: str) -> str:
    return (f"SELECT t.value FROM unnest(%s::text[]) AS t(value) CROSS JOIN LATERAL "  # noqa: S608 (names from the model)
            f"(SELECT FROM {Event._meta.db_table} e WHERE e.workspace_id = (SELECT %s::bigint) "
            f"AND e.{column} = t.value LIMIT 1) AS hit")
