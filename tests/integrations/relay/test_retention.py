"""The log stays bounded, and nothing leaves it without a trace."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import Connection, DeadLetter, Event
from integrations.relay.retention import events_expire, events_trim
from tests.conftest import new_write_key


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                      region="us", write_key=new_write_key())


def age(hours: float, seqs: list[int]) -> None:
    Event.objects.filter(seq__in=seqs).update(received_at=timezone.now() - timedelta(hours=hours))


def test_events_undelivered_past_the_maximum_age_become_dead_letters(connection: Connection,
                                                                    workspace: Workspace) -> None:
    for n in range(4):
        emit.track(workspace, f"Event {n}", user_id="u1")
    age(8 * 24, [1, 2])  # older than the 7-day maximum
    age(1, [3])          # waiting, but young: kept for delivery
    assert events_expire() == 2
    connection.refresh_from_db()
    assert connection.delivered_seq == 2
    assert list(DeadLetter.objects.filter(connection=connection).order_by("seq").values_list("name", "reason")) == [
        ("Event 0", "expired"), ("Event 1", "expired")]
    row = AuditEvent.objects.get(action=AuditAction.CONNECTION_EVENTS_EXPIRED)
    assert row.details["events"] == 2 and row.workspace == workspace
    assert events_expire() == 0  # running again changes nothing


def test_expiry_never_skips_a_younger_event_waiting_behind(connection: Connection, workspace: Workspace) -> None:
    for n in range(3):
        emit.track(workspace, f"Event {n}", user_id="u1")
    age(8 * 24, [1, 3])  # seq 2 is young: expiry must stop before it, not jump over it
    assert events_expire() == 1
    connection.refresh_from_db()
    assert connection.delivered_seq == 1


def test_a_connection_busy_delivering_is_left_alone(connection: Connection, workspace: Workspace) -> None:
    emit.track(workspace, "Old", user_id="u1")
    age(8 * 24, [1])
    Connection.objects.filter(pk=connection.pk).update(lease_until=timezone.now() + timedelta(seconds=60))
    assert events_expire() == 0 and not DeadLetter.objects.exists()


def test_trimming_deletes_only_what_every_connection_passed_after_the_dedupe_window(
        alice: User, workspace: Workspace, connection: Connection) -> None:
    behind = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging", region="us",
                                        write_key=new_write_key())
    for n in range(4):
        emit.track(workspace, f"Event {n}", user_id="u1", message_id=f"m-{n}")
    age(30, [1, 2, 3])
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=4)
    Connection.objects.filter(pk=behind.pk).update(delivered_seq=2)
    assert events_trim() == 2  # seq 1 and 2: passed by both and older than 24 h
    assert sorted(Event.objects.values_list("seq", flat=True)) == [3, 4]
    # While retained, a resent messageId is still recognised; once trimmed it is new again.
    assert emit.track(workspace, "Event 3", user_id="u1", message_id="m-3") is False


def test_a_workspace_without_connections_keeps_only_the_dedupe_window(workspace: Workspace) -> None:
    emit.track(workspace, "Nobody listens", user_id="u1")
    emit.track(workspace, "Recent", user_id="u1")
    age(30, [1])
    assert events_trim() == 1
    assert list(Event.objects.values_list("name", flat=True)) == ["Recent"]


def test_the_connection_page_says_when_events_became_dead_letters(connection: Connection, workspace: Workspace,
                                                                  alice_client: object) -> None:
    from django.urls import reverse

    emit.track(workspace, "Old", user_id="u1")
    age(8 * 24, [1])
    events_expire()
    page = alice_client.get(reverse("integrations:connection_deliveries", args=[workspace.slug, connection.pk]))  # type: ignore[attr-defined]
    assert "1 event could not be delivered to this source" in page.content.decode()
