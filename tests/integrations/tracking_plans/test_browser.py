"""Editing a tracking plan and reading the violations page in headless Chromium (strict CSP:
the `page` fixture fails on any violation). Screenshots (1280 and 390 px) land in artifacts/."""
from __future__ import annotations

from typing import Any

import orjson
import pytest
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest import emit
from integrations.models import Event, TrackingPlan
from integrations.tracking_plans import enforcement, services
from tests.conftest import screenshot, sign_in
from tests.integrations.tracking_plans.test_enforcement import ORDER_COMPLETED

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def both_sizes(page: Any, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)
    page.set_viewport_size(PHONE)
    screenshot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def test_an_owner_edits_the_plan_as_json_and_with_the_form(page: Any, alice: User, workspace: Workspace) -> None:
    enforcement._plans.clear()
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/")
    page.get_by_role("link", name="Tracking plan").click()
    expect(page.get_by_text("No plan yet")).to_be_visible()

    editor = page.get_by_test_id("plan-json")
    bad = [{"type": "TRACK", "key": "Order Completed", "jsonSchema": {"properties": {"properties": {"properties": {
        "email": {"type": "string", "pattern": "^(\\w+\\s?)*$"}}}}}}]
    editor.fill(orjson.dumps({"rules": bad}).decode())
    editor.press("End")
    expect(page.get_by_test_id("plan-check")).to_contain_text("exponential time")
    page.get_by_test_id("plan-save").click()
    expect(page.get_by_test_id("plan-error")).to_contain_text("exponential time")
    assert not TrackingPlan.objects.exists()

    editor = page.get_by_test_id("plan-json")
    editor.fill(orjson.dumps({"rules": [ORDER_COMPLETED]}, option=orjson.OPT_INDENT_2).decode())
    editor.press("End")
    expect(page.get_by_test_id("plan-check")).to_contain_text("Valid: 1 rule")
    page.get_by_test_id("plan-save").click()
    expect(page.get_by_text("Tracking plan saved: 1 rule")).to_be_visible()

    page.get_by_label("Rule for").select_option("IDENTIFY")
    page.get_by_label("Required properties (or traits)").fill("email")
    page.get_by_label("Property types").fill("email: string")
    page.get_by_test_id("rule-save").click()
    expect(page.get_by_test_id("plan-rules")).to_contain_text("every identify")
    page.get_by_label("Events that violate their rule").select_option("block")
    page.get_by_test_id("enforcement-save").click()
    expect(page.get_by_text("Enforcement saved")).to_be_visible()
    both_sizes(page, "tracking-plan")
    plan = TrackingPlan.objects.get(workspace=workspace)
    assert (len(plan.rules), plan.on_violation) == (2, "block")


def test_the_violations_page_shows_counts_and_releases_a_blocked_event(page: Any, alice: User,
                                                                       workspace: Workspace) -> None:
    enforcement._plans.clear()
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED])
    services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, enabled=True,
                                   unplanned_events="allow", unplanned_properties="allow", on_violation="block",
                                   forward_violations_to=None)
    enforcement._plans.clear()
    emit.track(workspace, "Order Completed", user_id="u1", properties={"order_id": "ord_1"}, message_id="late")
    emit.track(workspace, "Order Completed", user_id="u2", properties={"order_id": "x", "total": 1})
    emit.track(workspace, "Order Completed", user_id="u3", properties={"order_id": "ord_3", "total": 3})
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/")
    page.get_by_role("link", name="Debugger").click()
    page.get_by_test_id("debugger-violations").click()
    groups = page.get_by_test_id("violation-group")
    expect(groups).to_have_count(2)
    expect(page.get_by_test_id("violation-kind")).to_contain_text(["Failed pattern", "Missing required"])
    expect(page.get_by_test_id("count-1h").first).to_have_text("1")
    expect(page.get_by_test_id("blocked-event")).to_have_count(2)
    both_sizes(page, "violations")

    page.get_by_role("link", name="track Order Completed").last.click()
    expect(page.get_by_test_id("blocked-violations")).to_contain_text("properties.total")
    page.get_by_test_id("release-one").click()
    expect(page.get_by_text("Released 1 event into the log")).to_be_visible()
    expect(page.get_by_test_id("blocked-event")).to_have_count(1)
    assert Event.objects.filter(workspace=workspace, message_id="late").exists()
