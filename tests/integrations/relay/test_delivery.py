"""The relay end to end: emitted in Python, stored, delivered by a real Celery worker to the
emulator over HTTP."""
from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.ingest.messages import normalise
from integrations.models import (
    AttemptOutcome,
    Connection,
    DeadLetter,
    DeliveryAttempt,
    DeliveryCount,
    Event,
    EventStream,
    Health,
)
from integrations.relay import delivery
from integrations.relay.log import events_append
from integrations.segment.protocol import RELAY_NAMESPACE
from tests.conftest import new_write_key, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def connect(segment: Any, alice: User, workspace: Workspace, name: str, region: str = "us") -> tuple[Connection, str]:
    key = new_write_key()
    segment.register_key(key, region)
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name=name,
                                            region=region, write_key=key)
    return connection, key


def delivered(connection: Connection) -> int:
    connection.refresh_from_db()
    return connection.delivered_seq


def arrived(segment: Any, key: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in segment.events(write_key=key, limit=10_000)
            if e["payload"].get("event") != "Segment Connection Tested"]


def test_every_source_gets_every_event_in_order_under_its_own_message_id(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    us, us_key = connect(segment, alice, workspace, "Production")
    eu, eu_key = connect(segment, alice, workspace, "Staging EU", region="eu")
    with transaction.atomic():
        emit.identify(workspace, user_id="visitor-1", traits={"email": "v1@example.com"}, message_id="emit-0")
        for n in range(1, 5):
            emit.track(workspace, "Experiment Viewed", user_id="visitor-1", properties={"n": n},
                        message_id=f"emit-{n}")
    wait_for(lambda: delivered(us) == 5 and delivered(eu) == 5)
    for connection, key in ((us, us_key), (eu, eu_key)):
        events = arrived(segment, key)
        assert [e["context"]["tributary"]["messageId"] for e in events] == [f"emit-{n}" for n in range(5)]
        assert events[0]["type"] == "identify" and events[1]["properties"] == {"n": 1}
        namespace = uuid.uuid5(RELAY_NAMESPACE, str(connection.pk))
        assert [e["messageId"] for e in events] == [str(uuid.uuid5(namespace, f"emit-{n}")) for n in range(5)]
        assert events[0]["context"]["library"]["name"] == "tributary"
    assert not {e["messageId"] for e in arrived(segment, us_key)} & {e["messageId"] for e in arrived(segment, eu_key)}
    for connection in (us, eu):
        attempts = DeliveryAttempt.objects.filter(connection=connection, outcome=AttemptOutcome.DELIVERED)
        assert sum(a.events for a in attempts) == 5 and all(a.status == 200 and a.bytes > 0 for a in attempts)
        counts = DeliveryCount.objects.filter(connection=connection)  # one bucket, or two across a boundary
        assert sum(c.delivered for c in counts) == 5 and sum(sum(c.latency) for c in counts) == 5


def test_a_rolled_back_transaction_emits_nothing(segment: Any, celery_worker: Any, alice: User,
                                                 workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    with pytest.raises(RuntimeError), transaction.atomic():
        emit.track(workspace, "Signed Up", user_id="u1")
        raise RuntimeError("the caller's work failed")
    emit.track(workspace, "Signed Up", user_id="u2")
    wait_for(lambda: delivered(connection) == 1)
    assert [e["userId"] for e in arrived(segment, key)] == ["u2"]
    assert Event.objects.count() == 1


def test_a_resent_message_id_is_stored_once(segment: Any, celery_worker: Any, alice: User,
                                            workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    assert emit.track(workspace, "Order Completed", user_id="u1", message_id="client-42") is True
    assert emit.track(workspace, "Order Completed", user_id="u1", message_id="client-42") is False
    wait_for(lambda: delivered(connection) == 1)
    assert len(arrived(segment, key)) == 1


def test_first_time_events_happen_once_per_visitor(db: None, alice: User, workspace: Workspace) -> None:
    assigned = {"experiment_id": "exp-1", "experiment_name": "Checkout", "variation_id": "b",
                "variation_name": "Blue button"}
    assert emit.experiment_viewed(workspace, anonymous_id="anon-1", **assigned) is True
    assert emit.experiment_viewed(workspace, anonymous_id="anon-1", **assigned) is False
    assert emit.experiment_viewed(workspace, anonymous_id="anon-2", **assigned) is True
    conversion: dict[str, Any] = {"conversion_id": "c1", "conversion_type": "purchase",
                                  "origin_url": "https://shop.example/cart"}
    assert emit.conversion_triggered(workspace, anonymous_id="anon-1", once_per_visitor=True, **conversion)
    assert not emit.conversion_triggered(workspace, anonymous_id="anon-1", once_per_visitor=True, **conversion)
    assert emit.conversion_triggered(workspace, anonymous_id="anon-1", **conversion)  # not once-only: again
    assert emit.identify(workspace, anonymous_id="anon-1", dedupe_key="identify:anon-1")
    assert not emit.identify(workspace, anonymous_id="anon-1", dedupe_key="identify:anon-1")
    assert Event.objects.count() == 5


def test_retry_after_is_honoured_while_another_source_keeps_flowing(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    limited, limited_key = connect(segment, alice, workspace, "Rate limited")
    healthy, _ = connect(segment, alice, workspace, "Healthy")
    segment.set_fault(limited_key, status=429, retry_after=3, seconds=3)
    started = time.monotonic()
    emit.track(workspace, "Conversion Triggered", user_id="u1")
    wait_for(lambda: delivered(healthy) == 1, timeout=5)
    assert time.monotonic() - started < 3, "the healthy source waited for the limited one"
    wait_for(lambda: delivered(limited) == 1, timeout=20)
    batches = [r for r in segment.requests(write_key=limited_key, kind="tracking") if r["path"].endswith("/batch")]
    statuses = [r["status"] for r in batches]
    assert statuses[0] == 429 and statuses[-1] == 200
    refused_at, accepted_at = (datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in (batches[0], batches[-1]))
    assert (accepted_at - refused_at).total_seconds() >= 2.9, "a request went out before Retry-After elapsed"


def test_retry_now_sends_the_waiting_events_at_once_when_segment_is_back(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)
    segment.set_fault(key, status=503)  # an outage: every request refused until cleared
    emit.track(workspace, "Order Completed", user_id="u1")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).failures >= 1)
    # Minutes into the outage the next try is minutes away; a run queued for an earlier try
    # finds it not due and ends.
    Connection.objects.filter(pk=connection.pk).update(next_attempt_at=timezone.now() + timedelta(minutes=5))
    segment.clear_faults(key)  # Segment is back
    connection.refresh_from_db()
    assert services.connection_retry_now(actor=Actor(user=alice), connection=connection) is True
    wait_for(lambda: delivered(connection) == 1, timeout=15)  # well before the five minutes
    assert [e["event"] for e in arrived(segment, key)] == ["Order Completed"]
    connection.refresh_from_db()
    assert (connection.failures, connection.next_attempt_at) == (0, None)


@pytest.mark.parametrize(("status", "retried"), [(503, True), (501, False), (505, False)])
def test_a_server_error_is_retried_but_a_501_or_505_pauses_delivery(
        status: int, retried: bool, segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)
    segment.set_fault(key, status=status, count=1)
    emit.track(workspace, "Order Completed", user_id="u1")
    if retried:
        wait_for(lambda: delivered(connection) == 1)
        assert [e["event"] for e in arrived(segment, key)] == ["Order Completed"]
    else:
        # The same request would get the same answer: delivery stops until a check passes.
        wait_for(lambda: Connection.objects.get(pk=connection.pk).paused_reason != "")
        assert f"HTTP {status}" in Connection.objects.get(pk=connection.pk).paused_reason
        assert delivered(connection) == 0 and arrived(segment, key) == []
    attempts = DeliveryAttempt.objects.filter(connection=connection).order_by("started_at", "id")
    assert [(a.status, a.outcome) for a in attempts] == (
        [(status, AttemptOutcome.RETRYING), (200, AttemptOutcome.DELIVERED)] if retried
        else [(status, AttemptOutcome.REFUSED)])


def test_a_poison_event_is_bisected_out_and_dead_lettered(segment: Any, celery_worker: Any, alice: User,
                                                          workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    emit.track(workspace, "Before", user_id="u1")
    # Ingest refuses what Segment would, so a poison event has to be planted in the log, as an
    # event accepted under older rules would sit there: 40 KB, which Segment answers with 400.
    huge = normalise({"type": "track", "event": "Huge", "userId": "u1"}, received_at=timezone.now())
    poison = huge._replace(body=huge.body[:-1] + b',"properties":{"blob":"' + b"x" * 40_000 + b'"}}')
    with transaction.atomic():
        events_append(workspace_id=workspace.pk, messages=[poison])
    emit.track(workspace, "After", user_id="u1")
    wait_for(lambda: delivered(connection) == 3)
    assert [e["event"] for e in arrived(segment, key)] == ["Before", "After"]
    dead = DeadLetter.objects.get(connection=connection)
    assert dead.name == "Huge" and dead.status == 400 and dead.seq == 2
    assert bytes(dead.body) == poison.body and dead.received_at is not None
    # Every request is in the attempt log, and the counts agree with what happened.
    attempts = list(DeliveryAttempt.objects.filter(connection=connection).order_by("started_at", "id"))
    assert AttemptOutcome.REJECTED in {a.outcome for a in attempts}
    assert sum(a.events for a in attempts if a.outcome == AttemptOutcome.DELIVERED) == 2
    counts = DeliveryCount.objects.filter(connection=connection).aggregate(
        delivered=Sum("delivered"), failed=Sum("failed"), calls=Sum("api_calls"))
    assert counts == {"delivered": 2, "failed": 1, "calls": len(attempts)}


def test_an_event_too_large_for_segment_once_relayed_is_refused_when_emitted(db: None, workspace: Workspace) -> None:
    # Just under 32 KB as emitted; over it with the context Tributary adds for Segment.
    blob = "x" * (32 * 1024 - 200)
    with pytest.raises(emit.Invalid) as refused:
        emit.track(workspace, "Huge", user_id="u1", properties={"blob": blob})
    assert refused.value.reason == "event_too_large" and "as sent to Segment" in refused.value.detail
    assert Event.objects.count() == 0


def test_an_unreadable_key_pauses_and_events_wait(segment: Any, celery_worker: Any, alice: User,
                                                  workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)
    Connection.objects.filter(pk=connection.pk).update(write_key_encrypted=connection.write_key_encrypted[:-8] + "AAAAAAA=")
    emit.track(workspace, "Waiting", user_id="u1")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).paused_reason != "")
    assert delivered(connection) == 0 and arrived(segment, key) == []
    # Pasting the key again resumes delivery from where it stopped.
    services.connection_replace_key(actor=Actor(user=alice), connection=Connection.objects.get(pk=connection.pk),
                                    write_key=key)
    wait_for(lambda: delivered(connection) == 1)
    assert [e["event"] for e in arrived(segment, key)] == ["Waiting"]


def test_an_unknown_key_pauses_delivery_tells_the_owners_and_resumes_when_the_check_passes(
        segment: Any, celery_worker: Any, alice: User, bob: User, workspace: Workspace) -> None:
    from django.core import mail

    from accounts.models import AuditAction, AuditEvent

    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    wait_for(lambda: not Connection.objects.get(pk=connection.pk).awaiting_check)
    # The source is deleted in Segment: the next check pauses (a connection no check ever
    # cleared pauses without an e-mail: tests/integrations/test_notifications.py).
    segment.unregister_key(key)
    services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).paused_reason != "")
    emit.track(workspace, "Queued While Paused", user_id="u1")
    wait_for(lambda: any("paused" in m.subject for m in mail.outbox))
    notice = next(m for m in mail.outbox if "paused" in m.subject)
    assert notice.to == [alice.email]  # owners and admins, not the member bob
    assert "does not recognise this write key" in str(notice.body) and key not in str(notice.body)
    time.sleep(0.5)
    assert delivered(connection) == 0 and arrived(segment, key) == []

    segment.register_key(key, "us")  # the source now exists in Segment
    services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    wait_for(lambda: delivered(connection) == 1)
    assert [e["event"] for e in arrived(segment, key)] == ["Queued While Paused"]
    codes = list(AuditEvent.objects.filter(target_id=str(connection.pk)).values_list("action", flat=True))
    assert AuditAction.CONNECTION_PAUSED in codes and AuditAction.CONNECTION_RESUMED in codes


@pytest.mark.parametrize("after", [30_400, 32_760])
def test_a_batch_is_read_past_a_position_near_the_smallint_limit(alice: User, workspace: Workspace,
                                                                 after: int) -> None:
    """A position sent as a small integer plus the batch size must not overflow on the way."""
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    events_append(workspace_id=workspace.pk, messages=[normalise({"type": "track", "event": "Seed", "userId": "u"},
                                                                 received_at=timezone.now())])
    EventStream.objects.filter(workspace=workspace).update(last_seq=after)
    sent = [normalise({"type": "track", "event": f"E{n}", "userId": "u"}, received_at=timezone.now()) for n in range(5)]
    events_append(workspace_id=workspace.pk, messages=sent)
    rows, _ = delivery._read(connection.pk, workspace.pk, after)
    assert [(seq, message_id) for seq, message_id, _, _ in rows] == [
        (after + n + 1, m.message_id) for n, m in enumerate(sent)]
