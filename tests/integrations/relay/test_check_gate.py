"""Nothing reaches a write key before its check says Segment knows it: a new connection, a
replaced key and a changed region all wait for their own verdict. Segment's CDN lookup is slowed
in the emulator so that events are emitted while the check is still running; what is checked
is what arrived in the emulator, and when."""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import Connection, Health, Verification
from integrations.relay.delivery import connection_deliver
from tests.conftest import new_write_key

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_CDN_MS = 2500


def wait_for(condition: Callable[[], bool], timeout: float = 30.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.05)


def store(workspace: Workspace, count: int, prefix: str) -> list[str]:
    ids = [f"{prefix}-{uuid.uuid4()}" for _ in range(count)]
    with transaction.atomic():
        for message_id in ids:
            emit.track(workspace, "Experiment Viewed", user_id="visitor-1", message_id=message_id)
    return ids


def relayed(segment: Any, key: str) -> list[dict[str, Any]]:
    """What the relay delivered with `key` (the connection check's own test event excluded)."""
    return [e for e in segment.events(write_key=key, limit=10_000)
            if "tributary" in e["payload"].get("context", {})]


def batch_times(segment: Any, key: str) -> list[datetime]:
    """When each batch the relay sent with `key` reached the emulator."""
    return [datetime.fromisoformat(r["time"].replace("Z", "+00:00"))
            for r in segment.requests(write_key=key, kind="tracking") if r["path"] == "/v1/batch"]


def emitted_ids(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["payload"]["context"]["tributary"]["messageId"] for e in events)


def verdict(connection: Connection) -> Verification:
    """Wait for the connection's latest check to finish and return it."""
    def finished() -> bool:
        latest = Connection.objects.get(pk=connection.pk).latest_verification
        return latest is not None and not latest.is_running
    wait_for(finished, what="the check's verdict")
    connection.refresh_from_db()
    assert connection.latest_verification is not None
    return connection.latest_verification


@pytest.fixture(autouse=True)
def patient_checks(settings: Any, segment: Any) -> None:
    """The suite's Segment timeout is 1 s; a slowed CDN lookup must be waited for, not timed out."""
    settings.SEGMENT_TIMEOUT_SECONDS = 10.0


@pytest.fixture
def celery_worker(transactional_db: Any) -> Iterator[Any]:
    """Several worker threads, as production has: a delivery task can run while the check waits
    on the CDN (one solo worker would serialise them and hide a missing gate)."""
    from celery.contrib.testing.worker import start_worker

    from config.celery_app import app

    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(app.conf.task_default_queue)  # type: ignore[attr-defined]
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


def slow_cdn(segment: Any, key: str) -> None:
    segment.set_fault(key, scope="cdn", latency_ms=SLOW_CDN_MS)


def test_a_new_connection_sends_nothing_before_its_check_and_everything_after_a_pass(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    slow_cdn(segment, key)
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    assert connection.awaiting_check
    ids = store(workspace, 10, "before-verdict")
    # The events are stored and the connection woken, but its check is still waiting on the CDN.
    running = Connection.objects.get(pk=connection.pk).latest_verification
    assert running is not None and running.is_running
    assert relayed(segment, key) == []

    run = verdict(connection)
    assert connection.health == Health.HEALTHY and not connection.awaiting_check
    wait_for(lambda: len(relayed(segment, key)) == 10, what="delivery after the passing verdict")
    assert emitted_ids(relayed(segment, key)) == sorted(ids)
    assert run.finished_at is not None
    assert min(batch_times(segment, key)) > run.finished_at, "a batch reached the key before its verdict"


def test_a_key_segment_does_not_know_never_receives_the_events_that_waited(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()  # not registered: Segment's CDN answers 404, its tracking API 200
    slow_cdn(segment, key)
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    store(workspace, 10, "unknown-key")
    verdict(connection)
    assert connection.health == Health.FAILING and connection.awaiting_check and connection.paused_reason

    # A delivery run asked for directly (a stale wake-up, the sweeper) still finds nothing to send.
    connection_deliver(connection_id=connection.pk)
    connection.refresh_from_db()
    assert connection.delivered_seq == 0
    assert segment.requests(write_key=key, kind="tracking") == [], "something was sent with an unknown key"


def test_a_replaced_key_waits_for_its_own_check_and_then_gets_the_events_that_waited(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    old_key, new_key = new_write_key(), new_write_key()
    segment.register_key(old_key, "us")
    segment.register_key(new_key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=old_key)
    verdict(connection)
    first = store(workspace, 5, "old-key")
    wait_for(lambda: len(relayed(segment, old_key)) == 5, what="delivery with the first key")

    slow_cdn(segment, new_key)
    services.connection_replace_key(actor=Actor(user=alice), connection=connection, write_key=new_key)
    later = store(workspace, 10, "new-key")
    assert Connection.objects.get(pk=connection.pk).awaiting_check
    assert relayed(segment, new_key) == []

    run = verdict(connection)
    assert connection.health == Health.HEALTHY
    wait_for(lambda: len(relayed(segment, new_key)) == 10, what="delivery with the replaced key")
    assert emitted_ids(relayed(segment, new_key)) == sorted(later)
    assert emitted_ids(relayed(segment, old_key)) == sorted(first), "the old key got events emitted after it"
    assert run.finished_at is not None and min(batch_times(segment, new_key)) > run.finished_at


def test_a_wrong_region_sends_nothing_until_the_region_is_changed_and_checked(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    segment.set_fault(key, scope="cdn", latency_ms=SLOW_CDN_MS, count=1)
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    ids = store(workspace, 10, "wrong-region")
    assert relayed(segment, key) == []
    run = verdict(connection)
    assert connection.health == Health.FAILING and "Wrong region" in run.summary
    assert segment.requests(write_key=key, kind="tracking") == [], "events went to the wrong region"

    slow_cdn(segment, key)
    services.connection_change_region(actor=Actor(user=alice), connection=connection, region="eu")
    assert Connection.objects.get(pk=connection.pk).awaiting_check
    run = verdict(connection)
    assert connection.health == Health.HEALTHY and connection.region == "eu" and not connection.paused_reason
    wait_for(lambda: len(relayed(segment, key)) == 10, what="delivery after the region change")
    assert emitted_ids(relayed(segment, key)) == sorted(ids)
    assert {r["region"] for r in segment.requests(write_key=key, kind="tracking")} == {"eu"}
    assert run.finished_at is not None and min(batch_times(segment, key)) > run.finished_at
    changed = AuditEvent.objects.get(action=AuditAction.CONNECTION_REGION_CHANGED)
    assert changed.details["previous_region"] == "us" and changed.details["region"] == "eu"


def test_a_check_that_cannot_finish_keeps_a_new_connection_waiting_and_is_retried_with_backoff(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    segment.set_fault(key, scope="cdn", status=503)
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    store(workspace, 3, "unfinished-check")
    verdict(connection)
    assert connection.health == Health.DEGRADED and connection.awaiting_check
    connection_deliver(connection_id=connection.pk)
    assert segment.requests(write_key=key, kind="tracking") == []

    # Beat re-checks it by itself, 30 s after the unfinished check, then 60 s, 120 s…
    assert services.verifications_retry_unfinished() == 0, "re-checked before its wait was over"
    finished_ago(connection, seconds=31)
    assert services.verifications_retry_unfinished() == 1
    verdict(connection)
    assert connection.health == Health.DEGRADED and connection.awaiting_check
    finished_ago(connection, seconds=31)
    assert services.verifications_retry_unfinished() == 0, "the second wait should be 60 s"
    finished_ago(connection, seconds=61)
    segment.clear_faults(key)
    assert services.verifications_retry_unfinished() == 1
    run = verdict(connection)
    assert run.trigger == "retry" and connection.health == Health.HEALTHY
    wait_for(lambda: len(relayed(segment, key)) == 3, what="delivery after a check that finished")
    assert services.verifications_retry_unfinished() == 0, "a connection with a verdict is re-checked"


def finished_ago(connection: Connection, *, seconds: int) -> None:
    connection.refresh_from_db()
    Verification.objects.filter(connection=connection, pk=connection.latest_verification_id or 0).update(
        finished_at=timezone.now() - timedelta(seconds=seconds), created_at=timezone.now() - timedelta(seconds=seconds))
