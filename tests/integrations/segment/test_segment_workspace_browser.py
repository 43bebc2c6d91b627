"""The Segment workspace pages in headless Chromium, against the emulator: adding the token,
connecting by picking a source (with and without Source Admin), and the "In Segment" tab with
its parts loading in place, stacked on a phone. Screenshots land in artifacts/ (1280 and 390 px
wide)."""
from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User, Workspace
from integrations.models import Connection, SegmentSource
from tests.conftest import DESKTOP, PHONE, screenshot, sign_in
from tests.integrations.segment.conftest import PublicSegment

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def add_token(page: Any, workspace: Workspace, token: str) -> None:
    page.goto(f"/w/{workspace.slug}/settings/integrations/")
    page.get_by_test_id("segment-workspace-link").click()
    page.get_by_role("textbox", name="Public API token").fill(token)
    page.get_by_role("radio", name="US", exact=True).check()
    page.get_by_role("button", name="Check with Segment and save").click()


def connect_by_picking(page: Any, name: str) -> None:
    """From the Segment workspace page, after adding the token: find the source and connect it."""
    page.get_by_role("link", name="Connect a source").click()
    page.get_by_label("Search sources").fill(name.lower())
    page.locator(f"tr[data-source='{name}']").get_by_role("button", name=f"Connect {name}").click()


def test_adding_the_token_then_connecting_by_picking_a_source(page: Any, public_segment: PublicSegment,
                                                              alice: User, workspace: Workspace) -> None:
    public_segment.new_source("Browser checkout")
    sign_in(page, alice.email)
    add_token(page, workspace, "sgp_not_a_real_token_0000")
    expect(page.locator(".field-error")).to_contain_text("invalid or revoked")
    add_token(page, workspace, public_segment.token)
    expect(page.locator(".alert-success")).to_contain_text("Accepted by Segment")
    expect(page.get_by_test_id("masked-token")).to_have_text(f"•••• {public_segment.token[-4:]}")
    screenshot(page, "segment-workspace-token")

    page.get_by_role("link", name="Connect a source").click()
    expect(page.get_by_test_id("source-count")).to_be_visible()
    page.get_by_label("Search sources").fill("browser checkout")
    row = page.locator("tr[data-source='Browser checkout']")
    expect(row).to_be_visible()
    expect(page.get_by_test_id("source-count")).to_contain_text("1 of")
    screenshot(page, "segment-workspace-pick")
    page.set_viewport_size(PHONE)
    screenshot(page, "segment-workspace-pick-phone")
    page.set_viewport_size(DESKTOP)
    row.get_by_role("button", name="Connect Browser checkout").click()
    expect(page.locator("h1")).to_have_text("Browser checkout")
    connection = Connection.objects.get(name="Browser checkout")
    assert SegmentSource.objects.filter(connection=connection).exists()


def test_without_source_admin_the_picker_offers_pasting(page: Any, public_segment: PublicSegment, alice: User,
                                                        workspace: Workspace) -> None:
    public_segment.new_source("Locked source")
    sign_in(page, alice.email)
    add_token(page, workspace, public_segment.new_token(role="read_only"))
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/new/")
    page.get_by_label("Search sources").fill("locked source")
    page.locator("tr[data-source='Locked source']").get_by_role("button", name="Connect Locked source").click()
    expect(page.get_by_test_id("no-write-key")).to_contain_text("lacks the Source Admin role")
    expect(page.get_by_label("Name")).to_have_value("Locked source")
    expect(page.get_by_role("textbox", name="Write key")).to_be_visible()
    screenshot(page, "segment-workspace-no-source-admin")
    assert not Connection.objects.exists()


def test_the_in_segment_tab_loads_each_part_in_place(page: Any, public_segment: PublicSegment, alice: User,
                                                     workspace: Workspace) -> None:
    _, write_key = public_segment.new_source("Tabbed source")
    public_segment.emulator.send("track", {"userId": "u", "event": "Seen"}, write_key=write_key)
    sign_in(page, alice.email)
    add_token(page, workspace, public_segment.token)
    connect_by_picking(page, "Tabbed source")
    page.get_by_test_id("connection-tabs").get_by_role("link", name="In Segment", exact=True).click()
    expect(page.get_by_test_id("part-labels")).to_contain_text("No labels.")
    expect(page.get_by_test_id("part-destinations")).to_contain_text("Google Analytics 4")
    four_hours = page.locator("[data-destination='Google Analytics 4'] tbody tr").first
    expect(four_hours.locator("td").first).to_have_text("1")  # the event sent above, delivered
    expect(page.get_by_test_id("part-warehouses")).to_contain_text("Postgres")
    expect(page.get_by_test_id("part-schema")).to_contain_text("Events not in the tracking plan are allowed.")
    expect(page.get_by_test_id("part-usage")).to_contain_text("Segment: 1; Tributary: 0")
    page.get_by_label("Add an existing label").fill("environment:staging")
    page.get_by_role("button", name="Add label").click()
    expect(page.get_by_test_id("source-labels")).to_contain_text("environment:staging")
    expect(page.get_by_test_id("danger-zone")).to_be_visible()
    screenshot(page, "segment-workspace-in-segment")
    page.set_viewport_size(PHONE)
    screenshot(page, "segment-workspace-in-segment-phone")


# Which of the tab's boxes scroll sideways (their content wider than they are), and how tall the
# shown usage chart draws its axis labels, in CSS pixels.
SIDEWAYS = """() => [...document.querySelectorAll("[data-testid=in-segment] *")]
  .filter(e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX) && e.scrollWidth > e.clientWidth)
  .map(e => e.className)"""
LABEL_HEIGHT = """() => [...document.querySelectorAll(".usage-compare")].find(c => c.getBoundingClientRect().width)
  .querySelector(".axis-label").getBoundingClientRect().height"""


def test_on_a_phone_the_in_segment_tab_stacks_instead_of_scrolling_sideways(
        page: Any, public_segment: PublicSegment, alice: User, workspace: Workspace) -> None:
    public_segment.new_source("Phone source")
    sign_in(page, alice.email)
    add_token(page, workspace, public_segment.token)
    connect_by_picking(page, "Phone source")
    page.set_viewport_size(PHONE)
    page.get_by_test_id("connection-tabs").get_by_role("link", name="In Segment", exact=True).click()
    expect(page.get_by_test_id("part-destinations")).to_contain_text("Amplitude")
    expect(page.get_by_test_id("part-usage").locator(".usage-narrow")).to_be_visible()
    expect(page.get_by_test_id("part-usage").locator(".usage-wide")).to_be_hidden()
    # Each window of a destination's metrics is a block naming both figures.
    window = page.locator("[data-destination='Google Analytics 4'] tbody tr").first
    expect(window.locator("td[data-label='Discarded']")).to_be_visible()
    assert page.evaluate("() => document.documentElement.scrollWidth <= document.documentElement.clientWidth")
    assert page.evaluate(SIDEWAYS) == []
    page.get_by_test_id("part-usage").get_by_text("Show these figures as a table").click()
    expect(page.get_by_test_id("usage-table")).to_be_visible()
    assert page.evaluate(SIDEWAYS) == []
    assert page.evaluate(LABEL_HEIGHT) >= 9  # the wide frame, shrunk to half, drew them 6 px tall
    screenshot(page, "segment-workspace-in-segment-phone-stacked")


def test_a_slow_segment_shows_a_spinner_then_says_it_timed_out(page: Any, public_segment: PublicSegment,
                                                               alice: User, workspace: Workspace,
                                                               settings: Any) -> None:
    public_segment.new_source("Slow source")
    sign_in(page, alice.email)
    add_token(page, workspace, public_segment.token)
    connect_by_picking(page, "Slow source")
    settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS = 1.0
    public_segment.emulator.set_fault(public_segment.token, scope="public", latency_ms=2500)
    page.get_by_test_id("connection-tabs").get_by_role("link", name="In Segment", exact=True).click()
    expect(page.locator("#part-labels .part-loading")).to_contain_text("Asking Segment for labels")
    expect(page.get_by_test_id("part-error-labels")).to_contain_text("did not answer within 1 s")
    screenshot(page, "segment-workspace-timeout")
    public_segment.emulator.clear_faults(public_segment.token)


def test_an_owner_deletes_the_source_in_segment_by_typing_its_name(page: Any, public_segment: PublicSegment,
                                                                    alice: User, workspace: Workspace) -> None:
    _, write_key = public_segment.new_source("Retired source")
    sign_in(page, alice.email)
    add_token(page, workspace, public_segment.token)
    connect_by_picking(page, "Retired source")
    page.get_by_test_id("connection-tabs").get_by_role("link", name="In Segment", exact=True).click()
    page.get_by_test_id("danger-zone").get_by_role("link", name="Delete in Segment…").click()
    page.get_by_label("Type the source's name to confirm").fill("retired source")
    page.get_by_role("button", name="Delete source in Segment").click()
    expect(page.locator(".field-error")).to_contain_text("“Retired source”")
    screenshot(page, "segment-workspace-delete")
    page.get_by_label("Type the source's name to confirm").fill("Retired source")
    page.get_by_role("button", name="Delete source in Segment").click()
    expect(page.locator(".alert-success")).to_contain_text("deleted in Segment (Segment answered SUCCESS)")
    connection = Connection.objects.get(name="Retired source")
    registered = public_segment.emulator.keys()
    assert not connection.enabled and write_key not in registered
