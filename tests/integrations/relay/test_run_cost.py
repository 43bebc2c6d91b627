"""What one delivery run costs and leaves behind: with a hundred connections each woken about
once a second, the round trips of a small run decide how long the others wait for a pool
process (bench/fairness.py). The run is called here directly, against the emulator over HTTP
and the real database; the broker is replaced by a list of the wake-ups a run queues."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, DeliveryAttempt, DeliveryCount
from integrations.models.deliveries import bucket_of
from integrations.relay import delivery, pg
from integrations.relay.accounting import Sent, attempt_settle, histogram
from integrations.relay.lease import lease_release, lease_take
from integrations.segment import client
from tests.conftest import new_write_key
from tests.integrations.support import checked

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The delivery runs queued (by wake-ups and by runs re-queueing themselves)."""
    woken: list[int] = []

    def queue(connection_id: int, *, countdown: float | None = None) -> bool:
        woken.append(connection_id)
        return True

    monkeypatch.setattr("integrations.relay.wake.queue_delivery", queue)
    monkeypatch.setattr(delivery, "queue_delivery", queue)
    return woken


@pytest.fixture
def source(segment: Any, alice: User, workspace: Workspace, queued: list[int]) -> tuple[Connection, str]:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                                    region="us", write_key=key))
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    queued.clear()
    return connection, key


def track(workspace: Workspace, count: int) -> None:
    for n in range(count):
        emit.track(workspace, "Order Completed", user_id="u1", properties={"n": n})


@pytest.mark.skipif(db.vendor != "postgresql", reason="the claim that reads and the one-statement record are "
                    "PostgreSQL's")
def test_a_small_run_makes_three_round_trips_to_the_database(
        source: tuple[Connection, str], workspace: Workspace, segment: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connection, key = source
    track(workspace, 10)
    binary: list[str] = []  # statements on the binary cursor, which Django does not capture
    opened = pg.cursor

    class Counted:
        def __init__(self, cursor: Any) -> None:
            self.cursor = cursor

        def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
            binary.append(str(query))
            return self.cursor.execute(query, *args, **kwargs)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.cursor, name)

    @contextmanager
    def counted() -> Iterator[Any]:
        with opened() as cursor:
            yield Counted(cursor)

    monkeypatch.setattr(pg, "cursor", counted)
    with CaptureQueriesContext(db) as queries:
        delivery.connection_deliver(connection_id=connection.pk)
    # The claim, which reads the batch; the batch's record, which moves the position; the release.
    assert len(binary) == 1 and binary[0].startswith("WITH taken AS (UPDATE")
    assert len(queries) == 2, [q["sql"][:80] for q in queries]
    assert Connection.objects.get(pk=connection.pk).delivered_seq == 10
    assert segment.stats(key)["accepted"] == 11  # and the check's test event


def test_a_run_that_finds_new_events_at_its_release_queues_one_more_run(
        source: tuple[Connection, str], workspace: Workspace, queued: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    connection, _ = source
    track(workspace, 3)
    post = client.post

    def post_while_events_arrive(*args: Any, **kwargs: Any) -> client.Answer:
        track(workspace, 2)  # while the batch is on its way, as a busy source would
        return post(*args, **kwargs)

    monkeypatch.setattr(client, "post", post_while_events_arrive)
    queued.clear()
    delivery.connection_deliver(connection_id=connection.pk)
    # The trickle's run ended after its batch; the two newer events are the next run's, queued
    # by the release. Their own wake-up came while the lease was taken: it set the flag the
    # release read, and queued no task of its own (one would have found the lease taken).
    assert Connection.objects.get(pk=connection.pk).delivered_seq == 3
    assert queued == [connection.pk]

    monkeypatch.setattr(client, "post", post)
    queued.clear()
    delivery.connection_deliver(connection_id=connection.pk)
    assert Connection.objects.get(pk=connection.pk).delivered_seq == 5
    assert queued == [], "a run that left nothing behind queued another"


def test_wake_ups_and_re_queued_runs_wait_for_a_trickle_to_gather(
        source: tuple[Connection, str], workspace: Workspace, monkeypatch: pytest.MonkeyPatch,
        settings: Any) -> None:
    connection, _ = source
    countdowns: list[float | None] = []

    def queue(connection_id: int, *, countdown: float | None = None) -> bool:
        countdowns.append(countdown)
        return True

    monkeypatch.setattr("integrations.relay.wake.queue_delivery", queue)
    monkeypatch.setattr(delivery, "queue_delivery", queue)
    post = client.post

    def post_while_events_arrive(*args: Any, **kwargs: Any) -> client.Answer:
        track(workspace, 1)
        return post(*args, **kwargs)

    track(workspace, 1)  # a wake-up
    monkeypatch.setattr(client, "post", post_while_events_arrive)
    delivery.connection_deliver(connection_id=connection.pk)  # and the release's re-queue
    assert countdowns == [0.025, 0.025]

    settings.RELAY_GATHER_MS = 0
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    countdowns.clear()
    track(workspace, 1)
    assert countdowns == [None]


def test_a_wake_up_queues_a_run_unless_a_live_run_holds_the_lease(
        source: tuple[Connection, str], workspace: Workspace, queued: list[int]) -> None:
    connection, _ = source
    for lease_until, expected in ((timezone.now() + timedelta(seconds=5), []),  # that run's release will
                                  (timezone.now() - timedelta(seconds=1), [connection.pk]),  # lapsed
                                  (None, [connection.pk])):
        Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None, lease_until=lease_until)
        queued.clear()
        track(workspace, 1)
        assert queued == expected, lease_until
        assert Connection.objects.get(pk=connection.pk).wake_queued_at is not None  # the flag, either way


def test_the_release_reads_whether_the_connection_may_still_send(
        source: tuple[Connection, str], workspace: Workspace) -> None:
    connection, _ = source
    track(workspace, 2)
    taken = lease_take(connection.pk, keep_for=5)
    assert taken is not None
    lease, _ = taken
    assert lease.connection is not None
    assert lease.connection.delivered_seq == 0 and lease.checked_key == connection.cleared_token()
    Connection.objects.filter(pk=connection.pk).update(paused_reason="Segment refused the key.")
    released = lease_release(lease)
    assert released is not None
    assert (released.deliverable, released.log_end, released.delivered_seq) == (False, 2, 0)
    assert lease_release(lease) is None, "a second release found the lease still this run's"
    assert Connection.objects.filter(pk=connection.pk, lease_until__isnull=True, lease_owner="").exists()


def test_settling_batches_adds_to_the_bucket_and_moves_the_position_only_forward(
        source: tuple[Connection, str]) -> None:
    connection, _ = source
    at = timezone.now()
    attempt_settle(connection_id=connection.pk, sent=Sent(1, 4, 4, 1200), started_at=at, duration_ms=20, status=200,
                   outcome=AttemptOutcome.DELIVERED, reply="{}", attempt=1, latencies=[0.01, 0.2, 0.2, 7.0],
                   advance_to=4)
    attempt_settle(connection_id=connection.pk, sent=Sent(5, 6, 2, 600), started_at=at, duration_ms=20, status=429,
                   outcome=AttemptOutcome.RETRYING, reply="", attempt=1, latencies=[])
    attempt_settle(connection_id=connection.pk, sent=Sent(5, 6, 2, 600), started_at=at + timedelta(seconds=1),
                   duration_ms=20, status=200, outcome=AttemptOutcome.DELIVERED, reply="{}", attempt=2,
                   latencies=[0.01, 3.0], advance_to=6)
    # A late settle of an older batch never moves the position back.
    attempt_settle(connection_id=connection.pk, sent=Sent(1, 4, 4, 1200), started_at=at, duration_ms=20, status=200,
                   outcome=AttemptOutcome.DELIVERED, reply="{}", attempt=1, latencies=[0.5] * 4, advance_to=4)
    assert Connection.objects.get(pk=connection.pk).delivered_seq == 6
    assert list(DeliveryAttempt.objects.filter(connection=connection).order_by("id").values_list(
        "status", "outcome", "events", "attempt")) == [
        (200, "delivered", 4, 1), (429, "retrying", 2, 1), (200, "delivered", 2, 2), (200, "delivered", 4, 1)]
    rows = DeliveryCount.objects.filter(connection=connection)
    if rows.count() == 1:  # else the second settle crossed a bucket's boundary
        row = rows.get()
        assert row.bucket == bucket_of(at)
        assert (row.delivered, row.retried, row.api_calls, row.bytes) == (10, 2, 4, 3600)
        assert row.latency == histogram([0.01, 0.2, 0.2, 7.0, 0.01, 3.0, 0.5, 0.5, 0.5, 0.5])
        assert row.latency_max == 7.0
    assert sum(r.delivered for r in rows) == 10 and sum(sum(r.latency) for r in rows) == 10
