"""E-mails to owners and admins about deliveries: dead letters past the threshold (at most once
a day per connection), and a paused or long-failing connection delivering again. Sent by a
real worker; what was told is remembered in audit rows."""
from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace
from integrations import notifications, services
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, Health
from integrations.relay.accounting import Sent, attempt_record, failures_record
from integrations.tasks import check_delivery_notices
from tests.conftest import make_user, new_write_key

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)


def notices(subject_part: str) -> list[Any]:
    return [m for m in mail.outbox if subject_part in m.subject]


def told(action: AuditAction, connection: Connection) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=action, target_id=str(connection.pk)).order_by("id"))


@pytest.fixture
def dana(workspace: Workspace) -> User:
    """An admin of alice's workspace: told like an owner."""
    user = make_user("dana@example.com")
    Membership.objects.create(workspace=workspace, user=user, role=Role.ADMIN)
    return user


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    """A connection a check has cleared for delivery (as a passing check leaves it)."""
    created = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                         region="us", write_key=new_write_key())
    Connection.objects.filter(pk=created.pk).update(checked_key=created.cleared_token())
    return Connection.objects.get(pk=created.pk)


def test_dead_letters_past_the_threshold_are_told_to_owners_and_admins_at_most_once_a_day(
        celery_worker: Any, settings: Any, alice: User, bob: User, dana: User, workspace: Workspace,
        connection: Connection) -> None:
    settings.DEAD_LETTER_ALERT_THRESHOLD = 3
    failures_record(connection_id=connection.pk, at=timezone.now(), events=2)
    assert notifications.delivery_notices_check() == notifications.Notices(0, 0)  # below the threshold

    failures_record(connection_id=connection.pk, at=timezone.now(), events=1)
    check_delivery_notices.delay()  # as beat runs it, through the broker
    wait_for(lambda: len(notices("could not be delivered")) == 1)
    notice = notices("could not be delivered")[0]
    assert notice.subject == "3 events could not be delivered to “Production” (Alice Analytics)"
    assert sorted(notice.to) == ["alice@example.com", "dana@example.com"]  # not bob, a member
    body = str(notice.body)
    assert "In the last 24 hours, 3 events of Alice Analytics could not be delivered" in body
    assert f"/settings/integrations/segment/{connection.pk}/dead-letters/" in body
    assert connection.write_key() not in body and connection.masked_key in body
    [row] = told(AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, connection)
    assert row.details["dead_letters_24h"] == 3 and row.details["recipients"] == 2 and row.actor is None

    # More dead letters the same day: no second e-mail.
    failures_record(connection_id=connection.pk, at=timezone.now(), events=50)
    assert notifications.delivery_notices_check().dead_letters == 0
    later = timezone.now() + timedelta(hours=23)
    assert notifications.delivery_notices_check(now=later).dead_letters == 0
    # A day later, with new dead letters past the threshold: told again.
    next_day = timezone.now() + timedelta(hours=25)
    failures_record(connection_id=connection.pk, at=next_day, events=4)
    assert notifications.delivery_notices_check(now=next_day).dead_letters == 1
    wait_for(lambda: len(notices("could not be delivered")) == 2)
    assert notices("could not be delivered")[1].subject.startswith("4 events")
    assert len(told(AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, connection)) == 2


def test_a_paused_connection_that_delivers_again_is_told_once(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    wait_for(lambda: not Connection.objects.get(pk=connection.pk).awaiting_check)
    segment.unregister_key(key)  # the source was deleted in Segment: the next check pauses delivery
    services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).paused_reason != "")
    wait_for(lambda: len(notices("is paused")) == 1)
    assert notices("is paused")[0].to == [alice.email]
    emit.track(workspace, "Queued While Paused", user_id="u1")
    assert notifications.delivery_notices_check().recovered == 0  # still paused

    segment.register_key(key, "us")
    services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 1)
    assert notifications.delivery_notices_check().recovered == 1
    wait_for(lambda: len(notices("has recovered")) == 1)
    notice = notices("has recovered")[0]
    assert notice.subject == "Delivery to “Production” has recovered (Alice Analytics)" and notice.to == [alice.email]
    body = str(notice.body)
    assert "works again" in body and "It was paused from" in body and "does not recognise this write key" in body
    assert "Nothing is waiting: the source is up to date." in body and key not in body
    [row] = told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection)
    assert row.details["after"] == "paused"

    assert notifications.delivery_notices_check().recovered == 0
    time.sleep(0.3)
    assert len(notices("has recovered")) == 1


def test_a_connection_that_never_passed_a_check_is_neither_told_paused_nor_recovered(
        segment: Any, celery_worker: Any, alice: User, dana: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")  # created with the wrong region: the first check fails
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging",
                                            region="us", write_key=key)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).paused_reason != "")
    emit.track(workspace, "Signed Up", user_id="u1")

    # The region fixed a few seconds later: delivery starts, and no one hears of a "recovery".
    services.connection_replace_key(actor=Actor(user=alice), connection=Connection.objects.get(pk=connection.pk),
                                    write_key=key, region="eu")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 1)
    assert notifications.delivery_notices_check().recovered == 0
    assert told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection) == []
    time.sleep(0.3)  # what a worker would have sent by now
    assert notices("is paused") == [] and notices("has recovered") == []
    [pause] = told(AuditAction.CONNECTION_PAUSED, connection)  # the audit log still says it paused
    assert pause.details["told"] == []


def test_a_recovery_is_told_only_to_those_told_of_the_pause(alice: User, workspace: Workspace,
                                                           connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    notifications.send_paused_email(connection_id=connection.pk)
    assert [m.to for m in notices("is paused")] == [[alice.email]]
    dana = make_user("dana@example.com")  # made an admin after the pause e-mail went out
    Membership.objects.create(workspace=workspace, user=dana, role=Role.ADMIN)
    Connection.objects.filter(pk=connection.pk).update(paused_reason="")  # as a passing check resumes it
    assert notifications.delivery_notices_check().recovered == 1
    [row] = told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection)
    assert notifications.send_delivery_notice(audit_event_id=row.pk) is True
    assert [m.to for m in notices("has recovered")] == [[alice.email]]
    assert row.details["told"] == [alice.pk] and row.details["recipients"] == 1


def test_a_resumed_connection_with_nothing_waiting_counts_as_recovered(alice: User, workspace: Workspace,
                                                                       connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    with transaction.atomic():
        Connection.objects.filter(pk=connection.pk).update(paused_reason="")  # as a passing check resumes it
    assert notifications.delivery_notices_check().recovered == 1
    assert told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection)[0].details["reason"] == "Unknown key."


def test_a_resumed_connection_is_told_only_once_it_delivered_what_waited(workspace: Workspace,
                                                                        connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    emit.track(workspace, "Waiting", user_id="u1")
    Connection.objects.filter(pk=connection.pk).update(paused_reason="")  # resumed; no worker has run yet
    assert notifications.delivery_notices_check().recovered == 0
    attempt_record(connection_id=connection.pk, sent=Sent(1, 1, 1, 300), started_at=timezone.now(), duration_ms=9,
                   status=200, outcome=AttemptOutcome.DELIVERED, reply="", latencies=[1.0])
    assert notifications.delivery_notices_check().recovered == 1


def test_a_long_failure_that_ends_is_told_and_a_short_blip_is_not(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, monkeypatch: Any) -> None:
    # Production waits 5 minutes; the test's Segment fails for a few seconds.
    monkeypatch.setattr(notifications, "LONG_FAILING", timedelta(seconds=1.5))
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)

    segment.set_fault(key, status=503, count=1)  # one 503, retried after 0.25 to 0.75 s
    emit.track(workspace, "Blip", user_id="u1")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 1)
    assert notifications.delivery_notices_check().recovered == 0

    # Backs off 0.5 + 1 + 2 s, each times 0.5 to 1.5 (jitter): 1.75 to 5.25 s in all, every wait
    # short enough for the relay's own countdown (no beat runs here to sweep longer ones).
    segment.set_fault(key, status=503, count=3)
    emit.track(workspace, "Outage", user_id="u1")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 2, timeout=30)
    assert notifications.delivery_notices_check().recovered == 1
    wait_for(lambda: len(notices("has recovered")) == 1)
    body = str(notices("has recovered")[0].body)
    assert "Segment failed 3 requests in a row" in body and "(its last answer: HTTP 503)" in body
    assert "Nothing was lost" in body
    [row] = told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection)
    assert (row.details["after"], row.details["failed_requests"], row.details["last_status"]) == ("retrying", 3, 503)
    assert notifications.delivery_notices_check().recovered == 0


def test_only_the_relays_own_delivery_after_a_long_streak_counts_as_recovering(connection: Connection) -> None:
    def attempt(minutes_ago: float, outcome: AttemptOutcome, number: int, *, replay: bool = False) -> None:
        attempt_record(connection_id=connection.pk, sent=Sent(1, 1, 1, 300), replay=replay,
                       started_at=timezone.now() - timedelta(minutes=minutes_ago), duration_ms=9, attempt=number,
                       status=200 if outcome == AttemptOutcome.DELIVERED else 502, outcome=outcome, reply="")

    attempt(20, AttemptOutcome.RETRYING, 1)
    attempt(12, AttemptOutcome.RETRYING, 2)
    attempt(11, AttemptOutcome.DELIVERED, 3, replay=True)  # dead letters replayed meanwhile
    attempt(10, AttemptOutcome.DELIVERED, 1)  # after a resume reset the count: not this streak's end
    assert notifications.delivery_notices_check().recovered == 0
    attempt(9, AttemptOutcome.RETRYING, 1)
    attempt(3, AttemptOutcome.RETRYING, 2)
    attempt(2, AttemptOutcome.DELIVERED, 3)  # 7 minutes of failing, then Segment took the batch
    assert notifications.delivery_notices_check().recovered == 1
    [row] = told(AuditAction.CONNECTION_RECOVERED_NOTIFIED, connection)
    assert (row.details["failed_requests"], row.details["last_status"]) == (2, 502)


def test_no_one_to_tell_sends_nothing_but_remembers_the_decision(alice: User, workspace: Workspace,
                                                                 connection: Connection, settings: Any) -> None:
    settings.DEAD_LETTER_ALERT_THRESHOLD = 1
    Membership.objects.filter(workspace=workspace).update(role=Role.MEMBER)
    failures_record(connection_id=connection.pk, at=timezone.now(), events=1)
    assert notifications.delivery_notices_check().dead_letters == 1
    row = told(AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, connection)[0]
    assert row.details["recipients"] == 0
    assert notifications.send_delivery_notice(audit_event_id=row.pk) is False and mail.outbox == []
