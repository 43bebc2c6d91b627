"""On PostgreSQL retention drops a day of the log whole, under the rule the rows follow
elsewhere (tests/integrations/relay/test_retention.py): every connection passed it and the
dedupe window is over. And there is always a partition to write to."""
from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest
from django.db import connection as db_connection
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import Connection, Event
from integrations.relay import retention
from tests.conftest import new_write_key

pytestmark = pytest.mark.skipif(db_connection.vendor != "postgresql", reason="the partitioned log is PostgreSQL's")


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                      region="us", write_key=new_write_key())


def partitions() -> set[str]:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'integrations_event'::regclass")
        return {row[0] for row in cursor.fetchall()}


def tables_named(name: str) -> bool:
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
        return bool(cursor.fetchone()[0])


def where(seq: int) -> str:
    """The partition holding the workspace's event `seq`."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM integrations_event WHERE seq = %s", [seq])
        return str(cursor.fetchone()[0])


def move_to(day: date, seqs: list[int]) -> None:
    """As if the events had been received at noon that day (PostgreSQL moves the rows)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    Event.objects.filter(seq__in=seqs).update(received_at=noon)


def test_a_past_day_every_connection_passed_is_dropped_whole(connection: Connection, workspace: Workspace) -> None:
    day = timezone.now().date() - timedelta(days=3)
    retention.partition_create(day)
    for n in range(5):
        emit.track(workspace, f"Event {n}", user_id="u1", message_id=f"m-{n}")
    move_to(day, [1, 2, 3])
    assert where(1) == retention.partition_name(day)
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=5)
    assert retention.events_trim() == 3
    assert retention.partition_name(day) not in partitions()
    assert not tables_named(retention.partition_name(day))  # detached, then dropped
    assert sorted(Event.objects.values_list("seq", flat=True)) == [4, 5]
    # Past the window and dropped: a resent messageId is new again.
    assert emit.track(workspace, "Event 1", user_id="u1", message_id="m-1") is True


def test_a_day_one_connection_has_not_passed_is_kept_whole(
        alice: User, workspace: Workspace, connection: Connection) -> None:
    behind = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging", region="us",
                                        write_key=new_write_key())
    day = timezone.now().date() - timedelta(days=3)
    retention.partition_create(day)
    for n in range(3):
        emit.track(workspace, f"Event {n}", user_id="u1")
    move_to(day, [1, 2, 3])
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=3)
    Connection.objects.filter(pk=behind.pk).update(delivered_seq=2)
    assert retention.events_trim() == 0
    assert retention.partition_name(day) in partitions()
    assert sorted(Event.objects.values_list("seq", flat=True)) == [1, 2, 3]  # none deleted row by row either


def test_a_day_still_inside_the_dedupe_window_is_kept(connection: Connection, workspace: Workspace) -> None:
    emit.track(workspace, "Today", user_id="u1", message_id="m-1")
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=1)
    assert retention.events_trim() == 0
    assert emit.track(workspace, "Today", user_id="u1", message_id="m-1") is False


def test_partitions_are_made_ahead_and_a_default_takes_any_other_day(workspace: Workspace) -> None:
    today = timezone.now().date()
    retention.events_trim()  # the hourly run makes today's and the next days' partitions
    assert {retention.partition_name(today + timedelta(days=n)) for n in range(4)} <= partitions()
    # An event of a day without a partition is still stored (in DEFAULT), and read like any other.
    emit.track(workspace, "Far ahead", user_id="u1")
    far = today + timedelta(days=40)
    move_to(far, [1])
    assert where(1) == "integrations_event_default"
    assert list(Event.objects.filter(workspace=workspace).values_list("name", flat=True)) == ["Far ahead"]
    # Its day's partition, once made, takes it over.
    assert retention.partitions_prepare(today=far, ahead=0) == [retention.partition_name(far)]
    assert where(1) == retention.partition_name(far)


def test_rows_in_default_are_trimmed_row_by_row(connection: Connection, workspace: Workspace) -> None:
    for n in range(3):
        emit.track(workspace, f"Event {n}", user_id="u1")
    move_to(timezone.now().date() - timedelta(days=30), [1, 2])  # no partition that far back
    assert where(1) == "integrations_event_default"
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=3)
    assert retention.events_trim() == 2
    assert list(Event.objects.values_list("seq", flat=True)) == [3]


def test_a_day_detached_by_a_run_that_stopped_before_dropping_it_is_dropped_by_the_next(
        workspace: Workspace) -> None:
    day = timezone.now().date() - timedelta(days=5)
    retention.partition_create(day)
    retention._detach(retention.partition_name(day))  # as if the run had stopped here
    assert tables_named(retention.partition_name(day))
    retention.events_trim()
    assert not tables_named(retention.partition_name(day))


def test_a_detached_day_someone_still_reads_is_left_for_the_next_run(
        transactional_db: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The DROP waits at most the DDL lock timeout: a session reading the old table (a query
    run by hand) postpones it, and the next run drops it once the reader is done."""
    monkeypatch.setattr(retention, "DDL_ATTEMPTS", 1)
    day = timezone.now().date() - timedelta(days=5)
    name = retention.partition_name(day)
    retention.partition_create(day)
    retention._detach(name)
    params = db_connection.get_connection_params()
    with psycopg.connect(**{k: params[k] for k in ("dbname", "user", "password", "host", "port")
                            if params.get(k)}) as reader:
        reader.execute(f"SELECT count(*) FROM {name}")
        retention.events_trim()  # the reader's transaction is open: its lock is held
        assert tables_named(name)
    retention.events_trim()
    assert not tables_named(name)
