"""Filters at delivery, end to end: events emitted in Python, delivered by a real Celery
worker to the emulator over HTTP, which receives exactly what the filters let through; held
events count as filtered (connection page, /metrics) and the debugger names the filter."""
from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Sum
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.filters.services import filter_save
from integrations.ingest import emit
from integrations.ingest.messages import normalise
from integrations.models import Connection, DeliveryCount, FilteredBatch
from integrations.relay.log import events_append
from tests.conftest import new_write_key
from tests.conftest import wait_for as poll_until

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "metrics-token-for-filter-tests"


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    """The shared poll, with the longer wait these filtered runs may need."""
    poll_until(condition, timeout)


def connect(segment: Any, alice: User, workspace: Workspace, name: str) -> tuple[Connection, str]:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name=name, region="us",
                                            write_key=key)
    return connection, key


def arrived(segment: Any, key: str) -> list[dict[str, Any]]:
    return [e["payload"] for e in segment.events(write_key=key, limit=10_000)
            if e["payload"].get("event") != "Segment Connection Tested"]


def position(connection: Connection) -> int:
    connection.refresh_from_db()
    return connection.delivered_seq


def filtered(connection: Connection) -> int:
    return DeliveryCount.objects.filter(connection=connection).aggregate(n=Sum("filtered"))["n"] or 0


def emit_mix(workspace: Workspace) -> None:
    """12 events: 4 from test users, 4 viewed experiments, 4 orders with an email each."""
    with transaction.atomic():
        for n in range(4):
            emit.track(workspace, "Order Completed", user_id=f"user-{n}", message_id=f"order-{n}",
                       properties={"revenue": 10 * n, "email": f"u{n}@real.example", "plan": "pro"})
            emit.track(workspace, "Signed Up", user_id=f"qa-{n}", message_id=f"qa-{n}",
                       properties={"email": f"qa{n}@test.example"})
            emit.track(workspace, f"Experiment {n}", user_id=f"user-{n}", message_id=f"exp-{n}")


def test_the_emulator_receives_exactly_what_the_filters_let_through(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, settings: Any) -> None:
    filtered_source, key = connect(segment, alice, workspace, "Production")
    plain, plain_key = connect(segment, alice, workspace, "Archive")
    actor = Actor(user=alice)
    filter_save(actor=actor, connection=filtered_source, title="No test users", action="drop",
                condition='contains(properties.email, "@test.example")')
    filter_save(actor=actor, connection=filtered_source, title="No experiments", action="drop",
                condition="match(event, 'Experiment *')")
    filter_save(actor=actor, connection=filtered_source, title="No emails", action="drop_properties",
                condition="true", fields={"properties": ["email"]})
    emit_mix(workspace)
    wait_for(lambda: position(filtered_source) == 12 and position(plain) == 12)

    sent = arrived(segment, key)
    assert [e["context"]["tributary"]["messageId"] for e in sent] == [f"order-{n}" for n in range(4)]
    assert all("email" not in e["properties"] and e["properties"]["plan"] == "pro" for e in sent)
    assert len(arrived(segment, plain_key)) == 12  # another source's filters change nothing here
    assert arrived(segment, plain_key)[0]["properties"]["email"] == "u0@real.example"
    assert filtered(filtered_source) == 8 and filtered(plain) == 0
    delivered = DeliveryCount.objects.filter(connection=filtered_source).aggregate(n=Sum("delivered"))["n"]
    failed = DeliveryCount.objects.filter(connection=filtered_source).aggregate(n=Sum("failed"))["n"]
    assert (delivered, failed) == (4, 0)  # filtered is neither delivered nor failed

    client = Client()
    client.force_login(alice)
    # The debugger names the filter that held an event back.
    event_url = reverse("integrations:debugger_event", kwargs={"slug": workspace.slug})
    page = html.unescape(client.get(f"{event_url}?seq=2").content.decode())  # qa-0, the second event
    assert "Filtered by 'No test users'" in page
    listing = client.get(reverse("integrations:debugger", kwargs={"slug": workspace.slug}))
    labels = [chip.label for _e, status in listing.context["rows"] if status for chip in status.chips
              if chip.connection == filtered_source]
    assert labels.count("Filtered by 'No experiments'") == 4 and labels.count("Delivered") == 4
    # The connection page counts them.
    deliveries = client.get(reverse("integrations:connection_deliveries",
                                    kwargs={"slug": workspace.slug, "pk": filtered_source.pk})).content.decode()
    assert 'data-figure="filtered-day">8<' in deliveries
    # And /metrics.
    settings.METRICS_TOKEN = TOKEN
    metrics = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    line = next(line for line in metrics.splitlines()
                if line.startswith("tributary_events_filtered_total") and f'connection_id="{filtered_source.pk}"' in line)
    assert line.endswith(" 8")


def test_a_filter_saved_while_events_wait_applies_to_them(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    services.connection_set_enabled(actor=Actor(user=alice), connection=connection, enabled=False)
    emit_mix(workspace)
    filter_save(actor=Actor(user=alice), connection=connection, title="Orders only", action="only_send",
                condition="event = 'Order Completed'")
    services.connection_set_enabled(actor=Actor(user=alice), connection=Connection.objects.get(pk=connection.pk),
                                    enabled=True)
    wait_for(lambda: position(connection) == 12)
    assert [e["event"] for e in arrived(segment, key)] == ["Order Completed"] * 4
    assert filtered(connection) == 8


def test_a_condition_that_fails_holds_the_event_back_and_counts_it(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    filter_save(actor=Actor(user=alice), connection=connection, title="Numeric plans", action="drop",
                condition="number(properties.plan) > 3")
    with transaction.atomic():
        emit.track(workspace, "Order Completed", user_id="u1", message_id="plan-word", properties={"plan": "pro"})
        emit.track(workspace, "Order Completed", user_id="u2", message_id="plan-number", properties={"plan": "2"})
    wait_for(lambda: position(connection) == 2)
    assert [e["context"]["tributary"]["messageId"] for e in arrived(segment, key)] == ["plan-number"]
    assert filtered(connection) == 1


def test_sampling_by_user_sends_the_same_users_to_every_run(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    filter_save(actor=Actor(user=alice), connection=connection, title="Half the users", action="sample",
                condition="true", percent=0.5, sample_path="userId")
    with transaction.atomic():
        for n in range(200):
            emit.track(workspace, "Viewed", user_id=f"user-{n % 20}", message_id=f"view-{n}")
    wait_for(lambda: position(connection) == 200)
    users = {e["userId"] for e in arrived(segment, key)}
    per_user = [sum(1 for e in arrived(segment, key) if e["userId"] == u) for u in users]
    assert 3 <= len(users) <= 17 and set(per_user) == {10}  # whole users, in or out
    assert filtered(connection) == 200 - 10 * len(users)


def test_held_events_around_a_refused_one_are_counted_once_when_the_batch_is_split(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(segment, alice, workspace, "Production")
    filter_save(actor=Actor(user=alice), connection=connection, title="No tests", action="drop",
                condition="event = 'Test'")
    # A 40 KB event planted in the log (ingest refuses it now), which Segment answers with 400.
    huge = normalise({"type": "track", "event": "Huge", "userId": "u1"}, received_at=timezone.now())
    poison = huge._replace(body=huge.body[:-1] + b',"properties":{"blob":"' + b"x" * 40_000 + b'"}}')
    with transaction.atomic():
        emit.track(workspace, "Test", user_id="u1", message_id="t1")
        emit.track(workspace, "Before", user_id="u1", message_id="b1")
        emit.track(workspace, "Test", user_id="u1", message_id="t2")
        events_append(workspace_id=workspace.pk, messages=[poison])
        emit.track(workspace, "Test", user_id="u1", message_id="t3")
        emit.track(workspace, "After", user_id="u1", message_id="a1")
        emit.track(workspace, "Test", user_id="u1", message_id="t4")
    wait_for(lambda: position(connection) == 7)
    assert [e["event"] for e in arrived(segment, key)] == ["Before", "After"]
    counts = DeliveryCount.objects.filter(connection=connection).aggregate(
        delivered=Sum("delivered"), failed=Sum("failed"), filtered=Sum("filtered"))
    assert counts == {"delivered": 2, "failed": 1, "filtered": 4}
    held = sorted(seq for batch in FilteredBatch.objects.filter(connection=connection) for seq, _, _ in batch.events)
    assert held == [1, 3, 5, 7]
