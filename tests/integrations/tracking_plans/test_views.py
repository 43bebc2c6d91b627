"""The tracking plan and violations pages: editing, import and export, release, tenancy."""
from __future__ import annotations

import re
from collections.abc import Iterator

import orjson
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations.ingest import emit
from integrations.models import BlockedEvent, Event, TrackingPlan
from integrations.tracking_plans import enforcement, services
from tests.integrations.tracking_plans.test_enforcement import ORDER_COMPLETED, SEGMENT_EXPORT


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    enforcement._plans.clear()
    yield
    enforcement._plans.clear()


def url(workspace: Workspace, name: str, **kwargs: int) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


def test_the_json_editor_saves_a_plan_and_export_gives_it_back(alice_client: Client, workspace: Workspace) -> None:
    text = orjson.dumps({"rules": [ORDER_COMPLETED]}).decode()
    response = alice_client.post(url(workspace, "tracking_plan_rules"), {"rules": text})
    assert response.status_code == 302
    page = alice_client.get(url(workspace, "tracking_plan"))
    assert "Order Completed" in page.content.decode() and "Version 2" in page.content.decode()
    exported = orjson.loads(alice_client.get(url(workspace, "tracking_plan_export")).content)
    assert exported["rules"] == [ORDER_COMPLETED]


def test_the_editor_check_says_what_is_wrong_without_saving(alice_client: Client, workspace: Workspace) -> None:
    bad = orjson.dumps([{"type": "TRACK", "key": "A", "jsonSchema": {"properties": {"properties": {"properties": {
        "x": {"type": "string", "pattern": "(a+)+$"}}}}}}]).decode()
    fragment = alice_client.post(url(workspace, "tracking_plan_check"), {"rules": bad}).content.decode()
    assert "exponential time" in fragment
    refused = alice_client.post(url(workspace, "tracking_plan_rules"), {"rules": bad})
    assert refused.status_code == 400 and "exponential time" in refused.content.decode()
    assert not TrackingPlan.objects.exists()
    assert "Not JSON" in alice_client.post(url(workspace, "tracking_plan_check"), {"rules": "{"}).content.decode()


def test_a_segment_file_is_imported(alice_client: Client, workspace: Workspace) -> None:
    upload = SimpleUploadedFile("plan.json", orjson.dumps(SEGMENT_EXPORT), content_type="application/json")
    assert alice_client.post(url(workspace, "tracking_plan_import"), {"file": upload}).status_code == 302
    assert len(TrackingPlan.objects.get(workspace=workspace).rules) == 2


def test_the_simple_form_adds_a_required_rule(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url(workspace, "tracking_plan_rule"), {
        "type": "TRACK", "key": "Signed Up", "required": "plan, seats", "typed": "seats: integer"})
    assert response.status_code == 302
    rule = TrackingPlan.objects.get(workspace=workspace).rules[0]
    inner = rule["jsonSchema"]["properties"]["properties"]
    assert (rule["key"], inner["required"], inner["properties"]["seats"]) == ("Signed Up", ["plan", "seats"],
                                                                              {"type": "integer"})
    odd = alice_client.post(url(workspace, "tracking_plan_rule"), {"type": "TRACK", "key": "Signed\u200fUp"})
    assert odd.status_code == 400 and "invisible or control character" in odd.content.decode()


def key_field_errors(html: str) -> str:
    """What the page shows under the simple form's event-name field."""
    shown = re.search(r'<ul class="field-errors" id="id_key_error">(.*?)</ul>', html, re.S)
    return shown.group(1) if shown else ""


def test_a_track_rule_without_an_event_name_is_asked_for_it_next_to_the_field(
        alice: User, alice_client: Client, workspace: Workspace) -> None:
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    response = alice_client.post(url(workspace, "tracking_plan_rule"), {"type": "TRACK", "key": "  ",
                                                                        "required": "plan"})
    assert response.status_code == 400
    shown = key_field_errors(response.content.decode())
    assert "Give the event&#x27;s name" in shown
    assert not re.search(r"Rule \d|TRACK rule", response.content.decode())
    assert TrackingPlan.objects.get(workspace=workspace).rules == [ORDER_COMPLETED]


def test_an_identify_rule_needs_no_event_name_and_drops_one_given(alice_client: Client,
                                                                  workspace: Workspace) -> None:
    response = alice_client.post(url(workspace, "tracking_plan_rule"), {"type": "IDENTIFY", "key": "Ignored",
                                                                        "required": "email"})
    assert response.status_code == 302
    assert TrackingPlan.objects.get(workspace=workspace).rules[0]["key"] == ""


def test_members_see_the_plan_but_cannot_change_it(bob_client: Client, workspace: Workspace) -> None:
    assert bob_client.get(url(workspace, "tracking_plan")).status_code == 200
    assert bob_client.post(url(workspace, "tracking_plan_rules"), {"rules": "[]"}).status_code == 403
    assert bob_client.post(url(workspace, "blocked_release"), {"ids": ["1"]}).status_code == 403


def test_the_violations_page_counts_by_event_and_kind_and_releases(alice: User, alice_client: Client,
                                                                   workspace: Workspace) -> None:
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, enabled=True,
                                   unplanned_events="allow", unplanned_properties="allow", on_violation="block",
                                   forward_violations_to=None)
    for n in range(3):
        emit.track(workspace, "Order Completed", user_id=f"u{n}", properties={"order_id": "nope", "total": 1},
                   message_id=f"m-{n}")
    page = alice_client.get(url(workspace, "violations")).content.decode()
    assert "Failed pattern" in page and "properties.order_id" in page
    assert page.count('data-testid="blocked-event"') == 3
    blocked = BlockedEvent.objects.filter(workspace=workspace).order_by("pk")
    detail = alice_client.get(url(workspace, "blocked_event", blocked_pk=blocked[0].pk)).content.decode()
    assert "&quot;order_id&quot;: &quot;nope&quot;" in detail or '"order_id": "nope"' in detail
    alice_client.post(url(workspace, "blocked_release"), {"ids": [str(blocked[0].pk)]})
    assert list(Event.objects.filter(workspace=workspace).values_list("message_id", flat=True)) == ["m-0"]
    assert AuditEvent.objects.filter(workspace=workspace, action=AuditAction.BLOCKED_EVENTS_RELEASED).exists()
    assert alice_client.get(url(workspace, "violations")).content.decode().count('data-testid="blocked-event"') == 2
    assert 'data-testid="debugger-violations"' in alice_client.get(url(workspace, "debugger")).content.decode()


def test_an_outsider_cannot_see_or_release_a_blocked_event(charlie_client: Client, workspace: Workspace) -> None:
    blocked = BlockedEvent.objects.create(workspace=workspace, message_id="m-1", type="track", body=b"{}")
    assert charlie_client.get(url(workspace, "blocked_event", blocked_pk=blocked.pk)).status_code == 404
    assert charlie_client.post(url(workspace, "blocked_release"), {"ids": [str(blocked.pk)]}).status_code == 404
    assert BlockedEvent.objects.get(pk=blocked.pk).released_at is None
