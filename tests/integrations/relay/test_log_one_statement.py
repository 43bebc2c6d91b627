"""The ingest API's append: one autocommitted statement on PostgreSQL, outside any transaction.

Committed when it returns, seqs without gaps in commit order, a messageId or dedupe key stored
once however requests race (tests/integrations/relay/test_log_partitions.py races them). These
tests run without the per-test transaction (transactional_db), as the ingest API does.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import connections
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest.messages import normalise
from integrations.models import Connection, Event, EventStream
from integrations.relay import log, wake
from tests.conftest import new_write_key

pytestmark = pytest.mark.skipif(db_connection.vendor != "postgresql", reason="the one-statement append is PostgreSQL's")


def message(message_id: str, name: str = "Order Completed") -> log.Message:
    return normalise({"type": "track", "event": name, "userId": "u1", "messageId": message_id},
                     received_at=timezone.now())


def stored(workspace: Workspace) -> list[tuple[int, str]]:
    return list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("seq", "message_id"))


def test_the_first_append_of_a_workspace_makes_its_stream_and_stores_in_order(
        transactional_db: None, workspace: Workspace) -> None:
    assert not EventStream.objects.filter(workspace=workspace).exists()
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("a"), message("b")])
    assert (appended.stored, appended.duplicates) == (2, [])
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("c"), message("d"), message("e")])
    assert (appended.stored, appended.duplicates) == (3, [])
    assert stored(workspace) == [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, "e")]
    assert EventStream.objects.get(workspace=workspace).last_seq == 5


def test_it_runs_as_one_statement_outside_a_transaction(transactional_db: None, workspace: Workspace,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("first")])  # makes the stream row
    calls: list[int] = []
    real = log._append_in_one_statement

    def counted(workspace_id: int, pairs: Any) -> Any:
        calls.append(workspace_id)
        return real(workspace_id, pairs)

    monkeypatch.setattr(log, "_append_in_one_statement", counted)
    monkeypatch.setattr(log, "_append", lambda *args, **kwargs: pytest.fail("took the locked path"))
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("second")])
    assert appended.stored == 1 and calls == [workspace.pk]
    assert stored(workspace) == [(1, "first"), (2, "second")]


def test_duplicates_in_the_log_and_in_the_batch_are_reported_and_not_stored(
        transactional_db: None, workspace: Workspace) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("a"), message("b")])
    appended = log.events_append(workspace_id=workspace.pk,
                                 messages=[message("b"), message("c"), message("c"), message("a"), message("d")])
    assert appended.stored == 2
    assert sorted(appended.duplicates) == ["a", "b", "c"]
    assert stored(workspace) == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]  # no gap where duplicates were
    assert EventStream.objects.get(workspace=workspace).last_seq == 4


def test_a_batch_of_only_duplicates_stores_nothing_and_moves_no_seq(transactional_db: None,
                                                                     workspace: Workspace) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("a"), message("a")])
    assert (appended.stored, appended.duplicates) == (0, ["a", "a"])
    assert EventStream.objects.get(workspace=workspace).last_seq == 1


def test_dedupe_keys_are_checked_against_the_log(transactional_db: None, workspace: Workspace) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("a")], dedupe_keys=["order-1"])
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("b"), message("c")],
                                 dedupe_keys=["order-1", None])
    assert (appended.stored, appended.duplicates) == (1, ["b"])
    assert list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("message_id", "dedupe_key")) \
        == [("a", "order-1"), ("c", None)]


def test_bodies_and_columns_are_stored_as_given(transactional_db: None, workspace: Workspace) -> None:
    sent = message("m-1", name="Signed Up")
    log.events_append(workspace_id=workspace.pk, messages=[sent])
    event = Event.objects.get(workspace=workspace)
    assert (bytes(event.body), event.size, event.type, event.name, event.user_id, event.received_at) == \
        (sent.body, len(sent.body), "track", "Signed Up", "u1", sent.received_at)


def woken_connection(alice: User, workspace: Workspace) -> Connection:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    return connection


def test_the_append_wakes_the_connections_and_they_are_queued_after_the_commit(
        transactional_db: None, alice: User, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = woken_connection(alice, workspace)
    seen: list[tuple[list[int], int]] = []

    def connections_queue(connection_ids: list[int]) -> int:
        # A fresh database connection already sees the events: they were committed first.
        with connections.create_connection("default").cursor() as cursor:
            cursor.execute("SELECT count(*) FROM integrations_event WHERE workspace_id = %s", [workspace.pk])
            seen.append((connection_ids, cursor.fetchone()[0]))
        return len(connection_ids)

    monkeypatch.setattr(wake, "connections_queue", connections_queue)
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])
    assert seen == [([connection.pk], 1)]
    assert Connection.objects.get(pk=connection.pk).wake_queued_at is not None  # flagged by the same call
    log.events_append(workspace_id=workspace.pk, messages=[message("b")])  # awake already: no second run
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)  # as its run does when it starts
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])  # nothing stored: nobody woken
    log.events_append(workspace_id=workspace.pk, messages=[message("c"), message("d")])
    assert seen == [([connection.pk], 1), ([connection.pk], 4)]


def test_a_connection_whose_run_holds_the_lease_is_flagged_but_not_queued(
        transactional_db: None, alice: User, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = woken_connection(alice, workspace)
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() + timedelta(seconds=30))
    queued: list[list[int]] = []
    monkeypatch.setattr(wake, "connections_queue", queued.append)
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])
    assert queued == []  # the run's release reads the flag and queues the next run
    assert Connection.objects.get(pk=connection.pk).wake_queued_at is not None


def test_the_append_leaves_the_sessions_commits_synchronous(transactional_db: None, workspace: Workspace) -> None:
    """The procedure commits the append without waiting for the disk, for that transaction
    alone: the connection's next commits wait for it again."""
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])
    with db_connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"
        cursor.execute("SELECT count(*) FROM integrations_event WHERE workspace_id = %s", [workspace.pk])
        assert cursor.fetchone()[0] == 1
    assert not db_connection.in_atomic_block and db_connection.get_autocommit()


@pytest.mark.parametrize("count", [1, log.SCALAR_EVENTS, log.SCALAR_EVENTS + 1, 40])
def test_batches_on_either_side_of_the_scalar_limit_store_alike(transactional_db: None, workspace: Workspace,
                                                                 count: int) -> None:
    """Up to SCALAR_EVENTS each value is a parameter of its own, above it one array per column."""
    sent = [message(f"m-{n}", name=f"Event {n}") for n in range(count)]
    keys = [f"key-{n}" if n % 2 else None for n in range(count)]
    appended = log.events_append(workspace_id=workspace.pk, messages=sent, dedupe_keys=keys)
    assert appended.stored == count
    rows = list(Event.objects.filter(workspace=workspace).order_by("seq").values_list(
        "seq", "message_id", "name", "dedupe_key", "body"))
    assert [(seq, m, name, key, bytes(body)) for seq, m, name, key, body in rows] == [
        (n + 1, s.message_id, s.name, keys[n], s.body) for n, s in enumerate(sent)]
