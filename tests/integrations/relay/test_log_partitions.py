"""The log partitioned by day on PostgreSQL: no unique index can hold dedupe any more (it would
have to include the time), so the append checks under the workspace's stream row lock. These
tests race real appends on real connections; they run outside the per-test transaction."""
from __future__ import annotations

import random
import threading
import time
from typing import Any

import psycopg
import pytest
from django.db import connection as db_connection
from django.db import connections, transaction
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest.messages import normalise
from integrations.models import Connection, Event, EventStream
from integrations.relay import log, wake
from tests.conftest import new_write_key

pytestmark = pytest.mark.skipif(db_connection.vendor != "postgresql", reason="the partitioned log is PostgreSQL's")


def message(message_id: str, name: str = "Order Completed") -> log.Message:
    return normalise({"type": "track", "event": name, "userId": "u1", "messageId": message_id},
                     received_at=timezone.now())


def other_connection() -> psycopg.Connection[Any]:
    params = connections["default"].get_connection_params()
    return psycopg.connect(**{k: params[k] for k in ("dbname", "user", "password", "host", "port") if params.get(k)})


def test_the_log_is_partitioned_by_day_with_a_default(transactional_db: None) -> None:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_partkeydef('integrations_event'::regclass)")
        assert cursor.fetchone()[0] == "RANGE (received_at)"
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'integrations_event'::regclass")
        partitions = {row[0] for row in cursor.fetchall()}
    assert "integrations_event_default" in partitions
    assert f"integrations_event_p{timezone.now():%Y%m%d}" in partitions


def test_appends_racing_with_the_same_message_ids_store_each_once(transactional_db: None,
                                                                   workspace: Workspace) -> None:
    """Six appenders, half in autocommit (the ingest API) and half inside a transaction (the
    webhooks), send the same 60 messageIds in their own orders and batch sizes, all at once."""
    ids = [f"m-{n}" for n in range(60)]
    keyed = {f"m-{n}": f"order-{n}" for n in range(0, 60, 3)}  # some carry a dedupe key too
    start = threading.Barrier(6)
    outcomes: list[log.Appended] = []
    failures: list[BaseException] = []

    def appender(number: int) -> None:
        mine = ids[:]
        random.Random(number).shuffle(mine)
        size = 1 + number * 4
        try:
            start.wait(10)
            for first in range(0, len(mine), size):
                batch = mine[first:first + size]
                kwargs: dict[str, Any] = {"workspace_id": workspace.pk, "messages": [message(m) for m in batch],
                                          "dedupe_keys": [keyed.get(m) for m in batch]}
                if number % 2:
                    with transaction.atomic():
                        outcomes.append(log.events_append(**kwargs))
                else:
                    outcomes.append(log.events_append(**kwargs))
        except BaseException as error:  # reported below, in the test's thread
            failures.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    rows = list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("seq", "message_id"))
    assert sorted(m for _, m in rows) == sorted(ids)  # each once
    assert [seq for seq, _ in rows] == list(range(1, 61))  # no gap, no seq twice
    assert sum(o.stored for o in outcomes) == 60
    assert sum(len(o.duplicates) for o in outcomes) == 5 * 60
    assert EventStream.objects.get(workspace=workspace).last_seq == 60


def test_an_append_waits_for_a_concurrent_one_and_then_sees_what_it_stored(transactional_db: None,
                                                                              workspace: Workspace) -> None:
    """Another transaction appends m-1 and holds it uncommitted (and with it the workspace's
    lock): this append waits, then finds m-1 in the log and stores only m-2, after it."""
    log.events_append(workspace_id=workspace.pk, messages=[message("m-0")])
    other = other_connection()
    try:
        held = message("m-1")
        other.execute(f"SELECT {log.append_call(1)}", log.append_parameters(workspace.pk, [(held, None)]))
        outcome: dict[str, Any] = {}

        def append() -> None:
            try:
                outcome["appended"] = log.events_append(workspace_id=workspace.pk,
                                                        messages=[message("m-1"), message("m-2")])
            finally:
                connections.close_all()

        thread = threading.Thread(target=append)
        thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the append is waiting on the workspace's lock
            other.execute("SELECT pg_stat_clear_snapshot()")  # else the transaction's first view stays
            waiting = other.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND query LIKE %s", ["%integrations_event_append%"]).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.02)
        else:
            pytest.fail("the append never waited for the concurrent one")
        other.commit()
        thread.join(10)
    finally:
        other.close()
    appended = outcome["appended"]
    assert (appended.stored, appended.duplicates) == (1, ["m-1"])
    assert list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("seq", "message_id")) == [
        (1, "m-0"), (2, "m-1"), (3, "m-2")]
    assert EventStream.objects.get(workspace=workspace).last_seq == 3


def test_inside_a_transaction_the_append_is_one_statement_and_wakes_after_commit(
        transactional_db: None, alice: User, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    queued: list[list[int]] = []
    monkeypatch.setattr(wake, "connections_queue", queued.append)
    with transaction.atomic():
        appended = log.events_append(workspace_id=workspace.pk, messages=[message("a"), message("b")])
        assert appended.stored == 2 and queued == []
    assert queued == [[connection.pk]]
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    with transaction.atomic():
        log.events_append(workspace_id=workspace.pk, messages=[message("c")])
        transaction.set_rollback(True)
    assert queued == [[connection.pk]]
    assert Connection.objects.get(pk=connection.pk).wake_queued_at is None  # the flag rolled back too
    assert list(Event.objects.filter(workspace=workspace).values_list("message_id", flat=True).order_by("seq")) == [
        "a", "b"]
    assert EventStream.objects.get(workspace=workspace).last_seq == 2  # rolled back with the events
