"""The ingest API's append: one autocommitted statement on PostgreSQL, outside any transaction.

Committed when it returns, seqs without gaps in commit order, a messageId or dedupe key stored
once however requests race (tests/integrations/relay/test_log_partitions.py races them). These
tests run without the per-test transaction (transactional_db), as the ingest API does.
"""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import connections
from django.utils import timezone

from accounts.models import Workspace
from integrations.ingest.messages import normalise
from integrations.models import Event, EventStream
from integrations.relay import log

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


def test_connections_are_woken_after_the_commit(transactional_db: None, workspace: Workspace,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("a")])
    seen: list[int] = []

    def connections_wake(*, workspace_id: int) -> int:
        # A fresh database connection already sees the events: they were committed first.
        with connections.create_connection("default").cursor() as cursor:
            cursor.execute("SELECT count(*) FROM integrations_event WHERE workspace_id = %s", [workspace_id])
            seen.append(cursor.fetchone()[0])
        return 0

    monkeypatch.setattr(log, "connections_wake", connections_wake)
    log.events_append(workspace_id=workspace.pk, messages=[message("b"), message("c")])
    log.events_append(workspace_id=workspace.pk, messages=[message("c")])  # nothing stored: nobody woken
    assert seen == [3]
