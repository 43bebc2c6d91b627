"""Appending to a workspace's event log (the connections that deliver from it are woken by `wake`)."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from integrations.models import Event, EventStream
from integrations.relay import pg
from integrations.relay.wake import connections_queue_after_commit, connections_wake

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

    On PostgreSQL the append is one statement, in autocommit or in the caller's transaction:
    see `_append_in_one_statement`. Elsewhere (SQLite):
    1. drop messages whose messageId (or dedupe key) is already in the log or earlier in this batch;
    2. reserve seqs by moving the stream's end, which takes the workspace's stream row lock
       until commit, so seqs are handed out in commit order;
    3. write the rows and commit.
    Only steps 2 and 3 hold the lock. A concurrent request may store one of the same messageIds
    between steps 1 and 3; the unique constraint then refuses the write, and the append runs
    again with the lock taken before the check.
    """
    keys = list(dedupe_keys) if dedupe_keys is not None else [None] * len(messages)
    pairs = list(zip(messages, keys, strict=True))
    if connection.vendor == "postgresql":
        appended, woken = _append_in_one_statement(workspace_id, pairs)
        connections_queue_after_commit(woken)
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
    fresh = _without_known(pairs, result,
                           _already_logged(workspace_id, "message_id", {m.message_id for m, _ in pairs}),
                           _already_logged(workspace_id, "dedupe_key", {k for _, k in pairs if k}))
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


# The log's columns in the wire format of each, for a binary COPY into it (the dashboard
# bench seeds the log so); these must match the table.
COPY_COLUMNS = ("workspace_id", "seq", "message_id", "type", "name", "user_id", "body", "size", "received_at",
                "dedupe_key")
COPY_TYPES = ("int8", "int8", "text", "text", "text", "text", "bytea", "int4", "timestamptz", "text")


def _insert(workspace_id: int, first_seq: int, fresh: list[tuple[Message, str | None]]) -> None:
    Event.objects.bulk_create([
        Event(workspace_id=workspace_id, seq=seq, message_id=m.message_id, type=m.type, name=m.name,
              user_id=m.user_id, body=m.body, size=len(m.body), received_at=m.received_at, dedupe_key=key)
        for seq, (m, key) in enumerate(fresh, start=first_seq)])


def _append_in_one_statement(workspace_id: int,
                             pairs: list[tuple[Message, str | None]]) -> tuple[Appended, list[int]]:
    """The append as one call of `integrations_event_append` (migration 0018): one round trip
    instead of seven (BEGIN, the duplicate check, reserving seqs, COPY, COMMIT, the wake-up
    and its commit). Returns what was stored, and the connections to queue a run for once it
    is committed: when anything was stored, the same statement wakes the workspace's
    connections (`integrations_connections_wake`, migration 0020), in the append's transaction.

    Repeats within the batch are dropped here. The function locks the workspace's stream row
    first (making it on the workspace's first event), then inserts what the log does not have
    yet, numbered from the stream's end, and moves the end. The lock comes before the check,
    and each statement of the function reads a new snapshot, so the check sees every append
    committed before the lock was granted: that, not a unique index (which on a table
    partitioned by time would have to include the time), is what keeps a messageId or dedupe
    key stored once however requests race. The lock is held until commit, so seqs are
    committed in order.

    Inside a caller's transaction that is its commit. In autocommit (the ingest API) the call
    is the procedure `integrations_event_append_durably` (migration 0020): it commits without
    waiting for the disk, which frees the lock for the workspace's next append, then waits
    for the disk in a second commit that later appends share; it returns once the events are
    durable, as a synchronous commit does.
    """
    result = Appended()
    fresh = _without_known(pairs, result, set(), set())
    if not fresh:
        return result, []
    shape = min(len(fresh), SCALAR_EVENTS + 1)
    with pg.cursor() as cursor:
        if connection.in_atomic_block or len(fresh) > SCALAR_EVENTS:
            cursor.execute(_append_and_wake(shape), [*append_parameters(workspace_id, fresh), workspace_id,
                                                     timezone.now()])
        else:
            cursor.execute(_append_durably(shape), [*append_parameters(workspace_id, fresh), timezone.now()])
        row = cursor.fetchone()
    assert row is not None
    stored = set(row[0])
    result.duplicates.extend(m.message_id for m, _ in fresh if m.message_id not in stored)
    result.stored = len(stored)
    return result, row[1]


def _without_known(pairs: list[tuple[Message, str | None]], result: Appended, known_ids: set[str],
                   known_keys: set[str]) -> list[tuple[Message, str | None]]:
    """The batch less messageIds and dedupe keys known (already logged) or seen earlier in it;
    each one left out is counted a duplicate. Extends the known sets."""
    fresh = []
    for message, key in pairs:
        if message.message_id in known_ids or (key and key in known_keys):
            result.duplicates.append(message.message_id)
            continue
        known_ids.add(message.message_id)
        if key:
            known_keys.add(key)
        fresh.append((message, key))
    return fresh


# Up to this many events, each value is a parameter of its own, gathered into the function's
# arrays by the server (`ARRAY[$2, $3]`): psycopg dumps a scalar in a fraction of the time it
# takes to inspect and dump a list. Above it, one array per column, in binary: psycopg writes
# a hundred-element array as text in Python, at about 3 ms a request.
SCALAR_EVENTS = 8
# The function's arrays after the workspace: placeholder and type of each.
_ARRAYS = (("%s", "text"), ("%s", "text"), ("%s", "text"), ("%s", "text"), ("%b", "bytea"), ("%s", "timestamptz"),
           ("%s", "text"))


def append_call(count: int) -> str:
    """The call of `integrations_event_append` for `count` events, for `append_parameters`."""
    return f"integrations_event_append({append_arguments(count)})"


def append_arguments(count: int) -> str:
    """The argument list of that call (the workspace, then one array per column), for the
    procedures that take the same arguments first."""
    return _append_arguments(min(count, SCALAR_EVENTS + 1))


@cache
def _append_arguments(count: int) -> str:
    def array(placeholder: str, kind: str) -> str:
        if count > SCALAR_EVENTS:
            return f"{placeholder[0]}b::{kind}[]"
        return f"ARRAY[{', '.join([placeholder] * count)}]::{kind}[]"

    return f"%b::bigint, {', '.join(array(p, kind) for p, kind in _ARRAYS)}"


def append_parameters(workspace_id: int, fresh: Sequence[tuple[Message, str | None]]) -> list[object]:
    """The parameters of `append_call(len(fresh))`: the workspace, then each column's values
    (messageIds, types, names, user ids, bodies, receive times, dedupe keys)."""
    columns: list[list[object]] = [[m.message_id for m, _ in fresh], [m.type for m, _ in fresh],
                                   [m.name for m, _ in fresh], [m.user_id for m, _ in fresh],
                                   [m.body for m, _ in fresh], [m.received_at for m, _ in fresh],
                                   [key for _, key in fresh]]
    if len(fresh) > SCALAR_EVENTS:
        return [workspace_id, *columns]
    return [workspace_id, *(value for column in columns for value in column)]


# When anything was stored, the connections are woken in the same statement; after the call's
# parameters come the workspace and the time, for integrations_connections_wake.
WAKE_IF_STORED = ("CASE WHEN cardinality(stored) > 0 THEN integrations_connections_wake(%b::bigint, %b::timestamptz) "
                  "ELSE '{}' END")


@cache
def _append_and_wake(count: int) -> str:
    """Inside a transaction: the messageIds stored and the connections woken."""
    return (f"WITH appended AS MATERIALIZED (SELECT {append_call(count)} AS stored) "  # noqa: S608 (placeholders only)
            f"SELECT stored, {WAKE_IF_STORED} FROM appended")


@cache
def _append_durably(count: int) -> str:
    """In autocommit: the same, committed, through the procedure of migration 0020, which holds
    the workspace's lock for the append but not for the disk flush."""
    return f"CALL integrations_event_append_durably({append_arguments(count)}, %b::timestamptz)"


def _already_logged(workspace_id: int, column: str, values: set[str]) -> set[str]:
    """Which of `values` the workspace's log already has in `column` (both are indexed)."""
    if not values:
        return set()
    return set(Event.objects.filter(workspace_id=workspace_id, **{f"{column}__in": values})
               .values_list(column, flat=True))
