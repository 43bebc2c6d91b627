"""The tracking plan end to end: events posted to the ingest API over HTTP, delivered by a real
Celery worker to the emulator, which receives exactly what the plan lets through (blocked
events never, omitted properties gone and listed in context.violations), and a released
event afterwards."""
from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest.keys import ingest_key_create
from integrations.models import BlockedEvent, Connection
from integrations.tracking_plans import enforcement, services
from tests.integrations.relay.processes import arrived, emulator_connection, wait_for
from tests.integrations.tracking_plans.test_enforcement import ORDER_COMPLETED

pytestmark = pytest.mark.django_db(transaction=True)


def position(connection: Connection) -> int:
    connection.refresh_from_db()
    return connection.delivered_seq


def batch(ingest_key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    auth = "Basic " + base64.b64encode(f"{ingest_key}:".encode()).decode()
    answer = Client().post("/v1/batch", data=orjson.dumps({"batch": events}), content_type="application/json",
                           HTTP_AUTHORIZATION=auth)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def order(message_id: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u1", "messageId": message_id,
            "properties": {"order_id": "ord_1", "total": 5, **properties}}


@pytest.mark.parametrize(("on_violation", "unplanned_events", "unplanned_properties", "expected"), [
    # allow: everything arrives as sent
    ("allow", "allow", "allow", {"good": {"order_id", "total", "coupon"}, "bad-type": {"order_id", "total", "coupon"},
                                 "unplanned": {"x"}}),
    # block: the violating and the unplanned event never arrive
    ("block", "block", "allow", {"good": {"order_id", "total", "coupon"}}),
    # omit: the offending and unplanned properties are removed and listed
    ("omit", "allow", "omit", {"good": {"order_id", "total"}, "bad-type": {"order_id"}, "unplanned": {"x"}}),
])
def test_the_emulator_receives_exactly_what_the_plan_lets_through(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, on_violation: str,
        unplanned_events: str, unplanned_properties: str, expected: dict[str, set[str]]) -> None:
    enforcement._plans.clear()
    connection, key = emulator_connection(segment, alice, workspace)
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, enabled=True,
                                   unplanned_events=unplanned_events, unplanned_properties=unplanned_properties,
                                   on_violation=on_violation, forward_violations_to=None)
    ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    answer = batch(ingest_key, [
        order("good", coupon="SPRING"),
        order("bad-type", total="five", coupon="SPRING"),
        {"type": "track", "event": "Unplanned", "userId": "u1", "messageId": "unplanned", "properties": {"x": 1}},
    ])
    assert answer["accepted"] == len(expected)
    wait_for(lambda: position(connection) == len(expected), 30, "the allowed events delivered")

    sent = {e["context"]["tributary"]["messageId"]: e for e in arrived(segment, key)}
    assert {m: set(e["properties"]) for m, e in sent.items()} == expected
    if on_violation == "omit":
        assert [v["field"] for v in sent["good"]["context"]["violations"]] == ["properties.coupon"]
        assert sorted(v["field"] for v in sent["bad-type"]["context"]["violations"]) == [
            "properties.coupon", "properties.total"]
    else:
        assert all("violations" not in e["context"] for e in sent.values())
    blocked = set(BlockedEvent.objects.filter(workspace=workspace).values_list("message_id", flat=True))
    assert blocked == {"good", "bad-type", "unplanned"} - set(expected)


def test_a_released_event_reaches_segment(segment: Any, celery_worker: Any, alice: User,
                                          workspace: Workspace) -> None:
    enforcement._plans.clear()
    connection, key = emulator_connection(segment, alice, workspace)
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, enabled=True,
                                   unplanned_events="allow", unplanned_properties="allow", on_violation="block",
                                   forward_violations_to=None)
    ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    assert batch(ingest_key, [order("first"), order("late", total="x")])["blocked"][0]["messageId"] == "late"
    wait_for(lambda: position(connection) == 1, 30, "the allowed event delivered")
    blocked = BlockedEvent.objects.get(workspace=workspace)
    assert services.blocked_release(actor=Actor(user=alice), workspace=workspace, ids=[blocked.pk]) == 1
    wait_for(lambda: position(connection) == 2, 30, "the released event delivered")
    late = [e for e in arrived(segment, key) if e["context"]["tributary"]["messageId"] == "late"]
    assert late[0]["properties"]["total"] == "x"


def test_violations_are_forwarded_to_the_chosen_connection_only(segment: Any, celery_worker: Any, alice: User,
                                                                workspace: Workspace) -> None:
    enforcement._plans.clear()
    keys = {}
    connections = {}
    for name in ("Production", "Violations"):
        connections[name], keys[name] = emulator_connection(segment, alice, workspace, name=name)
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    plan = services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, enabled=True,
                                          unplanned_events="allow", unplanned_properties="allow",
                                          on_violation="block", forward_violations_to=connections["Violations"])
    ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    batch(ingest_key, [order("ok"), order("bad", total="five")])

    def generated(name: str) -> list[dict[str, Any]]:
        return [e for e in arrived(segment, keys[name]) if e.get("event") == "Violation Generated"]

    wait_for(lambda: len(generated("Violations")) == 1 and position(connections["Production"]) == 1, 30,
             "the violation forwarded and the allowed event delivered")
    assert generated("Violations")[0]["properties"] == {
        "eventName": "Order Completed", "eventType": "track", "violationType": "type",
        "violationField": "properties.total", "violationDescription": "'five' is not of type 'number'",
        "trackingPlanID": str(plan.pk)}
    assert generated("Violations")[0]["userId"] == "u1"
    assert generated("Production") == []
