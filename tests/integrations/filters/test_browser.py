"""Building a filter in headless Chromium: the sentence form, the preview over the latest
events with its before/after examples, saving, and the FQL it shows. Screenshots (1280 and
390 px) land in artifacts/."""
from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import AuditEvent, User, Workspace
from integrations import services
from integrations.filters.services import filter_save
from integrations.ingest import emit
from integrations.models import DestinationFilter
from tests.conftest import new_write_key, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def both_sizes(page: Any, name: str) -> None:
    page.evaluate("window.scrollTo(0, 0)")
    screenshot(page, name)
    page.set_viewport_size(PHONE)
    screenshot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


def test_an_owner_builds_a_filter_previews_it_and_saves_it(page: Any, alice: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    for n in range(6):
        emit.track(workspace, "Order Completed", user_id=f"user-{n}",
                   properties={"email": f"u{n}@{'test' if n % 3 == 0 else 'real'}.example", "revenue": n})
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/")
    page.get_by_test_id("connection-tabs").get_by_role("link", name="Filters").click()
    expect(page.get_by_text("No filters: every event is sent as it arrived.")).to_be_visible()

    page.get_by_label("Name").fill("No test users")
    page.get_by_label("Action").select_option("drop")
    page.get_by_label("Field 1").fill("properties.email")
    page.get_by_label("Operator 1").select_option("contains")
    page.get_by_label("Value 1").fill("@test.example")
    # Sampling's own fields show only for a sample.
    expect(page.get_by_label("Keep this share of matching events (%)")).to_be_hidden()
    page.get_by_test_id("preview-button").click()
    result = page.get_by_test_id("preview-result")
    expect(result).to_contain_text("Of the latest 6 events")
    expect(page.get_by_test_id("preview-dropped")).to_have_text("2")
    page.get_by_text("Dropped: 2 examples").click()
    expect(result).to_contain_text("u3@test.example")
    both_sizes(page, "filters-preview")
    assert not DestinationFilter.objects.exists()  # previewing saves nothing

    page.get_by_role("button", name="Save filter").click()
    expect(page.get_by_text("Filter 'No test users' saved")).to_be_visible()
    expect(page.get_by_test_id("filter-fql")).to_have_text('contains(properties.email, "@test.example")')
    expect(page.get_by_test_id("filter-sentence")).to_have_text("Drop events where")
    both_sizes(page, "filters-saved")
    assert AuditEvent.objects.filter(action="filter.created").count() == 1


def test_a_bad_condition_is_refused_with_what_to_fix(page: Any, alice: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/filters/")
    page.get_by_label("Name").fill("Experiments")
    page.get_by_label("Action").select_option("sample")
    expect(page.get_by_label("Keep this share of matching events (%)")).to_be_visible()
    page.get_by_label("Or the condition in FQL").fill("match(event, '*a*a*a*a*a*a*a*a*a*b')")
    page.get_by_test_id("preview-button").click()
    expect(page.get_by_test_id("preview-result")).to_contain_text("more than 8 '*'")
    page.get_by_role("button", name="Save filter").click()
    expect(page.get_by_text("more than 8 '*'")).to_be_visible()
    assert not DestinationFilter.objects.exists()


def test_the_debugger_names_the_filter_that_held_an_event_back(
        page: Any, alice: User, workspace: Workspace, segment: Any, celery_worker: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    filter_save(actor=Actor(user=alice), connection=connection, title="No test users", action="drop",
                condition='contains(properties.email, "@test.example")')
    emit.track(workspace, "Signed Up", user_id="qa-1", properties={"email": "qa@test.example"})
    emit.track(workspace, "Signed Up", user_id="ana", properties={"email": "ana@real.example"})
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    chips = page.get_by_test_id("event-status")
    expect(chips.filter(has_text="Filtered by 'No test users'")).to_have_count(1, timeout=20_000)
    expect(chips.filter(has_text="Delivered")).to_have_count(1, timeout=20_000)
    both_sizes(page, "filters-debugger-list")
    page.locator('[data-testid="event-row"][data-seq="1"] summary').click()
    expect(page.get_by_test_id("trail-filtered")).to_contain_text("Not sent: Filtered by 'No test users'")
    both_sizes(page, "filters-debugger-event")
