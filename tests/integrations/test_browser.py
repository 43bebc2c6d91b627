"""Settings → Integrations → Segment driven through headless Chromium, against the Segment
emulator and a real Celery worker: connecting a source, watching the top of its page say
"Checking" and then the verdict in place, the tabs, re-running the check, replacing the key,
changing the region without pasting the key, disabling, deleting, the banner following the
state, and what a plain member sees.

Screenshots land in artifacts/ for people to look at."""
from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import Connection, Outcome, SegmentToken, Verification
from tests.conftest import DESKTOP, PASSWORD, PHONE, both_sizes, new_write_key, screenshot, sign_in, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# A check crosses the broker to the worker and makes two calls to the emulator.
CHECK_TIMEOUT_MS = 10_000
HEALTHY_EU = "Key recognised by Segment · region EU confirmed · test event accepted"


def field(page: Any, name: str) -> Any:
    """The .field wrapper of an input: its label, control, help and errors."""
    return page.locator(".field", has=page.locator(f"input[name='{name}']"))


def fill_connect_form(page: Any, *, name: str, write_key: str, region: str) -> None:
    page.get_by_label("Name").fill(name)
    page.get_by_label("Write key").fill(write_key)
    page.get_by_role("radio", name=region, exact=True).check()
    page.get_by_role("button", name="Connect and check").click()


def tab(page: Any, name: str) -> None:
    """Open a tab of the connection page from its tab bar."""
    page.get_by_test_id("connection-tabs").get_by_role("link", name=name, exact=True).click()
    expect(page.get_by_test_id("connection-tabs").locator("[aria-current='page']")).to_have_text(name)


def health_word(page: Any) -> Any:
    return page.get_by_test_id("connection-state").get_by_test_id("health-word")


def finished_message_id(page: Any) -> str:
    """Wait for the running check to finish in place; return its test message id."""
    panel = page.locator("#status-panel")
    expect(panel).not_to_contain_text("Checking with Segment", timeout=CHECK_TIMEOUT_MS)
    expect(panel.get_by_test_id("check-summary")).to_contain_text(HEALTHY_EU)
    return str(panel.get_by_test_id("test-message-id").inner_text()).strip()


def wait_for_checks(workspace: Workspace) -> None:
    """Let the worker finish before the browser signs in: on SQLite (no browser tests in CI)
    two threads writing at once fail with "database table is locked"."""
    deadline = time.monotonic() + CHECK_TIMEOUT_MS / 1000
    while Verification.objects.filter(connection__workspace=workspace, outcome=Outcome.RUNNING).exists():
        assert time.monotonic() < deadline, "the checks did not finish"
        time.sleep(0.1)


def test_an_owner_connects_an_eu_source_checks_it_replaces_its_key_disables_and_deletes_it(
    page: Any, alice: User, segment: Any, celery_worker: Any, settings: Any
) -> None:
    settings.SEGMENT_TIMEOUT_SECONDS = 10.0
    key = new_write_key()
    segment.register_key(key, "eu")
    # Slow Segment's key lookup down for the first check so its running state can be seen: long
    # enough that the steps below (a form post, a page, three assertions) finish inside it on a
    # loaded machine too (3 s was not always), within the check's 10 s timeout.
    segment.set_fault(key, scope="cdn", latency_ms=8000, count=1)

    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="Integrations").click()
    expect(page.get_by_role("heading", name="No Segment sources connected")).to_be_visible()
    expect(page.locator("#segment-connections")).to_contain_text("Connections → Sources")
    screenshot(page, "integrations-01-empty")

    page.get_by_role("link", name="Connect Segment").click()
    expect(page.get_by_role("heading", name="Connect Segment", level=1)).to_be_visible()
    expect(page.get_by_role("radio", name="US", exact=True)).to_be_checked()

    # A key with spaces comes back with the error under the Write key field, which is empty
    # again (the key is never sent back), while the name and region are kept.
    fill_connect_form(page, name="Production", write_key="abc def ghi jkl mno pqr", region="EU")
    expect(field(page, "write_key").locator(".field-error")).to_contain_text("no spaces")
    expect(page.get_by_label("Write key")).to_have_value("")
    expect(page.get_by_label("Name")).to_have_value("Production")
    expect(page.get_by_role("radio", name="EU", exact=True)).to_be_checked()
    screenshot(page, "integrations-02-form-error")
    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-02-form-error-phone")
    page.set_viewport_size(DESKTOP)

    fill_connect_form(page, name="Production", write_key=key, region="EU")
    expect(page).to_have_url(re.compile(r"/settings/integrations/segment/\d+/$"))
    expect(page.get_by_role("heading", name="Production", level=1)).to_be_visible()
    expect(page.locator(".messages")).to_have_text(re.compile(r"^\s*“Production” connected\.\s*$"))
    # The top tells the truth while the check runs: checking, asked for every second, and
    # nothing on the page says Healthy before the check has passed.
    top = page.get_by_test_id("connection-state")
    expect(health_word(page)).to_have_text("Checking")
    expect(top).to_contain_text("Checking the key with Segment…")
    expect(top).to_have_attribute("hx-trigger", "every 1s")
    expect(page.locator("#content")).not_to_contain_text("Healthy")
    screenshot(page, "integrations-03-check-running")

    expect(health_word(page)).to_have_text("Healthy", timeout=2 * CHECK_TIMEOUT_MS)
    expect(top).to_have_attribute("hx-trigger", "every 5s")
    expect(page.get_by_test_id("last-verdict")).to_contain_text(HEALTHY_EU)
    expect(page.get_by_test_id("connection-tabs").get_by_role("link")).to_have_count(7)
    tab(page, "Checks")
    panel = page.locator("#status-panel")
    message_id = finished_message_id(page)
    expect(panel.get_by_test_id("check-outcome")).to_have_text("Check passed")
    for label in ("Key format", "Known to Segment", "Region", "Test event"):
        expect(panel.locator(".check-item.is-passed", has_text=label)).to_be_visible()
    assert message_id.startswith("tributary-check-")
    assert segment.events(write_key=key, message_id=message_id), "the test event never reached Segment"
    masked = f"•••• {key[-4:]}"
    expect(page.locator(".connection-meta")).to_contain_text(masked)
    expect(page.get_by_test_id("enabled-badge")).to_have_text("Enabled")
    assert key not in page.content()
    history = page.locator("#check-history tbody tr")
    expect(history).to_have_count(1)
    expect(history.first).to_contain_text("Passed")
    screenshot(page, "integrations-04-check-result")

    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-05-detail-owner-phone")
    page.set_viewport_size(DESKTOP)

    # Running the check again swaps the panel in place: no reload, a new test event.
    page.evaluate("window.tributaryNoReload = true")
    panel.get_by_role("button", name="Run check again").click()
    expect(panel.get_by_test_id("test-message-id")).not_to_have_text(message_id, timeout=CHECK_TIMEOUT_MS)
    second_id = finished_message_id(page)
    assert second_id != message_id
    assert segment.events(write_key=key, message_id=second_id)
    expect(history).to_have_count(2)
    expect(history.first).to_contain_text("Run from the page")
    assert page.evaluate("window.tributaryNoReload") is True

    # The list shows the connection with its health word and last check.
    page.get_by_role("link", name="Integrations").first.click()
    row = page.locator("tr[data-connection='Production']")
    expect(row).to_contain_text("EU")
    expect(row).to_contain_text(masked)
    expect(row).to_contain_text("Healthy")
    expect(row).to_contain_text("Key recognised by Segment")
    screenshot(page, "integrations-06-list")
    row.get_by_role("link", name="Production").click()
    tab(page, "Settings")

    # Replacing the key: a bad one is refused next to the field, a good one is checked at once.
    replacement = new_write_key()
    segment.register_key(replacement, "eu")
    key_box = page.get_by_role("textbox", name="Write key")
    key_box.fill("short")
    page.get_by_role("button", name="Replace and check").click()
    expect(field(page, "write_key").locator(".field-error")).to_contain_text("at least 16 characters; this one has 5")
    key_box.fill(replacement)
    expect(page.locator("#replace-key").get_by_role("radio", name="EU", exact=True)).to_be_checked()
    page.get_by_role("button", name="Replace and check").click()
    new_masked = f"•••• {replacement[-4:]}"
    expect(page.locator(".messages")).to_contain_text(f"Write key replaced; now {new_masked}")
    expect(page.locator(".connection-meta")).to_contain_text(new_masked)
    expect(page.locator(".connection-meta")).not_to_contain_text(masked)
    expect(health_word(page)).to_have_text("Healthy", timeout=CHECK_TIMEOUT_MS)
    tab(page, "Checks")
    third_id = finished_message_id(page)
    assert segment.events(write_key=replacement, message_id=third_id)
    expect(history.first).to_contain_text("Write key replaced")
    assert replacement not in page.content() and key not in page.content()

    # Disable, then enable again.
    tab(page, "Settings")
    page.get_by_role("button", name="Disable connection").click()
    expect(page.get_by_test_id("enabled-badge")).to_have_text("Disabled")
    expect(health_word(page)).to_have_text("Disabled")
    screenshot(page, "integrations-07-disabled")
    page.get_by_role("button", name="Enable connection").click()
    expect(page.get_by_test_id("enabled-badge")).to_have_text("Enabled")
    expect(health_word(page)).to_have_text("Healthy")

    # Deleting asks first, naming the connection, its region and key.
    page.get_by_role("link", name="Delete connection…").click()
    expect(page.get_by_role("heading", name="Delete “Production”?")).to_be_visible()
    confirm = page.locator(".confirm-card")
    expect(confirm).to_contain_text("EU")
    expect(confirm).to_contain_text(new_masked)
    expect(confirm).to_contain_text("Segment keeps the events it already received")
    screenshot(page, "integrations-08-delete-confirm")
    page.get_by_role("button", name="Delete connection").click()
    expect(page).to_have_url(re.compile(r"/settings/integrations/$"))
    expect(page.locator(".messages")).to_contain_text("“Production” deleted")
    expect(page.get_by_role("heading", name="No Segment sources connected")).to_be_visible()


def test_an_unknown_key_is_reported_as_not_recognised_with_the_later_checks_skipped(
    page: Any, alice: User, segment: Any, celery_worker: Any
) -> None:
    sign_in(page, alice.email)
    page.get_by_role("link", name="Integrations").first.click()
    page.get_by_role("link", name="Connect Segment").click()
    fill_connect_form(page, name="Staging", write_key=new_write_key(), region="US")

    # The verdict replaces "Checking" at the top: why, what to do, and that events are kept.
    top = page.get_by_test_id("connection-state")
    expect(health_word(page)).to_have_text("Paused", timeout=CHECK_TIMEOUT_MS)
    expect(top).to_contain_text("Segment does not recognise this write key")
    expect(top).to_contain_text("Events are kept and will be sent once a check passes.")
    screenshot(page, "integrations-09-unknown-key-top")
    top.get_by_role("link", name="Replace the write key").click()
    expect(page).to_have_url(re.compile(r"/settings/#replace-key$"))
    expect(page.locator("#replace-key").get_by_role("textbox", name="Write key")).to_be_visible()

    tab(page, "Checks")
    panel = page.locator("#status-panel")
    expect(panel.get_by_test_id("check-summary")).to_contain_text("Segment does not recognise this write key")
    expect(panel.get_by_test_id("check-outcome")).to_have_text("Check failed")
    expect(panel.locator(".check-item.is-passed", has_text="Key format")).to_be_visible()
    expect(panel.locator(".check-item.is-failed", has_text="Known to Segment")).to_be_visible()
    expect(panel.locator(".check-item.is-skipped")).to_have_count(2)
    expect(panel.get_by_test_id("test-message-id")).to_have_count(0)
    screenshot(page, "integrations-09-unknown-key")

    page.get_by_role("link", name="Integrations").first.click()
    expect(page.locator("tr[data-connection='Staging']")).to_contain_text("Paused")
    expect(page.get_by_test_id("attention-banner")).to_contain_text("Staging: delivery is paused")


def test_a_member_sees_the_status_of_connections_but_nothing_to_change(
    page: Any, alice: User, bob: User, workspace: Workspace, segment: Any, celery_worker: Any
) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    owner = Actor(user=alice)
    services.connection_create(actor=owner, workspace=workspace, name="Production", region="eu", write_key=key)
    staging = services.connection_create(actor=owner, workspace=workspace, name="Staging", region="us",
                                         write_key=new_write_key())
    services.connection_set_enabled(actor=owner, connection=staging, enabled=False)
    wait_for_checks(workspace)

    sign_in(page, bob.email)
    page.get_by_role("link", name="Integrations").first.click()
    listing = page.locator("#segment-connections")
    expect(listing.locator("tr[data-connection='Production']")).to_contain_text("Healthy", timeout=CHECK_TIMEOUT_MS)
    staging_row = listing.locator("tr[data-connection='Staging']")
    expect(staging_row.get_by_test_id("health-word")).to_have_text("Disabled", timeout=CHECK_TIMEOUT_MS)
    expect(staging_row).to_contain_text("does not recognise this write key")
    # Nothing is running, so the list refreshes itself only every 10 s.
    expect(listing).to_have_attribute("hx-trigger", "every 10s")
    expect(page.get_by_role("link", name="Connect Segment")).to_have_count(0)
    screenshot(page, "integrations-10-list-member")
    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-10-list-member-phone")
    page.set_viewport_size(DESKTOP)

    listing.get_by_role("link", name="Production").click()
    expect(health_word(page)).to_have_text("Healthy")
    tab(page, "Checks")
    expect(page.locator("#status-panel").get_by_test_id("check-summary")).to_contain_text(HEALTHY_EU)
    expect(page.locator("#status-panel").get_by_test_id("test-message-id")).to_be_visible()
    content = page.locator("#content")
    expect(content.locator("form")).to_have_count(0)
    tab(page, "Settings")
    expect(content.locator("form")).to_have_count(0)
    expect(content).to_contain_text("Owners and admins of Alice Analytics change these.")
    expect(content.get_by_role("link", name=re.compile("Delete"))).to_have_count(0)
    assert key not in page.content()
    screenshot(page, "integrations-11-detail-member")

    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-12-detail-member-phone")


def test_a_member_sees_who_connects_sources_when_there_are_none(page: Any, bob: User) -> None:
    sign_in(page, bob.email)
    page.get_by_role("link", name="Integrations").first.click()
    empty = page.locator("#segment-connections")
    expect(empty).to_contain_text("No Segment sources connected")
    expect(empty).to_contain_text("An owner or admin of Alice Analytics connects sources")
    expect(page.get_by_role("link", name="Connect Segment")).to_have_count(0)
    screenshot(page, "integrations-13-empty-member")
    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-14-empty-member-phone")


def test_an_over_long_pasted_key_is_kept_whole_and_refused_by_its_length_on_both_forms(
    page: Any, alice: User, workspace: Workspace
) -> None:
    """The browser used to keep the first 128 characters of the paste (maxlength) and the cut key
    was connected; now the whole paste reaches the form, which names the length."""
    too_long = new_write_key() * 5  # 160 letters and digits
    sign_in(page, alice.email)
    page.goto(reverse("integrations:connection_create", kwargs={"slug": workspace.slug}))
    page.get_by_label("Write key").fill(too_long)
    expect(page.get_by_label("Write key")).to_have_value(too_long)
    fill_connect_form(page, name="Production", write_key=too_long, region="US")
    error = field(page, "write_key").locator(".field-error")
    expect(error).to_have_count(1)
    expect(error).to_have_text("A Segment write key is at most 128 characters; this one has 160. "
                               "Copy it again from Segment.")
    assert not Connection.objects.exists()
    both_sizes(page, "integrations-connect-key-too-long")
    page.set_viewport_size(PHONE)
    box, text = field(page, "write_key").bounding_box(), error.bounding_box()
    assert box and text and text["x"] + text["width"] <= box["x"] + box["width"] + 1  # the sentence wraps inside

    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging",
                                            region="us", write_key=new_write_key())
    page.set_viewport_size(DESKTOP)
    page.goto(reverse("integrations:connection_settings", kwargs={"slug": workspace.slug, "pk": connection.pk}))
    page.get_by_role("textbox", name="Write key").fill(too_long)
    expect(page.get_by_role("textbox", name="Write key")).to_have_value(too_long)
    page.get_by_role("button", name="Replace and check").click()
    expect(field(page, "write_key").locator(".field-error")).to_have_text(
        "A Segment write key is at most 128 characters; this one has 160. Copy it again from Segment.")
    both_sizes(page, "integrations-replace-key-too-long")
    connection.refresh_from_db()
    assert connection.write_key() != too_long[:128]


def inside(inner: dict[str, float], outer: dict[str, float]) -> bool:
    return (inner["x"] >= outer["x"] - 0.5 and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + 0.5)


def test_a_long_segment_workspace_name_stays_inside_its_button_at_1280_and_on_a_phone(
    page: Any, alice: User, workspace: Workspace
) -> None:
    name = "Acme Corporation International Customer Analytics Production EU"
    token = SegmentToken(workspace=workspace, region="eu", segment_workspace_name=name)
    token.set_token("sgp_" + new_write_key())
    token.save()
    sign_in(page, alice.email)
    page.goto(reverse("integrations:index", kwargs={"slug": workspace.slug}))
    button = page.get_by_test_id("segment-workspace-link")
    expect(button).to_have_accessible_name(f"Segment workspace: {name}")
    both_sizes(page, "integrations-segment-workspace-long-name")
    for size in (DESKTOP, PHONE):
        page.set_viewport_size(size)
        box = button.bounding_box()
        assert box and inside(box, page.locator(".page-header").bounding_box()), size
        assert inside(button.locator("svg").bounding_box(), box), size
        # Nothing of the text reaches past the button's edge (it used to run on, unwrapped).
        assert button.evaluate("(b) => b.scrollWidth <= b.clientWidth"), size
    # On the phone the name does not fit: it ends in an ellipsis rather than spilling out.
    assert button.locator(".btn-label").evaluate("(label) => label.scrollWidth > label.clientWidth")
    assert button.locator(".btn-label").evaluate("(label) => getComputedStyle(label).textOverflow") == "ellipsis"
    expect(button).to_have_attribute("title", f"Segment workspace: {name}")  # the whole name, on hover


def tracked(segment: Any, key: str) -> list[str]:
    """The names of the track events (not the check's test event) the emulator got for a key."""
    payloads = [e["payload"] for e in segment.events(write_key=key)]
    return [p.get("event", "") for p in payloads if p.get("type") == "track" and p.get("event") != "Segment Connection Tested"]


def test_a_wrong_region_is_fixed_from_its_message_without_pasting_the_key_and_held_events_follow(
    page: Any, alice: User, workspace: Workspace, segment: Any, celery_worker: Any, settings: Any
) -> None:
    settings.SEGMENT_TIMEOUT_SECONDS = 10.0
    key, control = new_write_key(), new_write_key()
    segment.register_key(key, "eu")
    segment.register_key(control, "us")
    # A healthy connection of the same workspace: once it has the events, the other one had
    # every chance to send them too.
    services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Control", region="us",
                               write_key=control)
    wait_for_checks(workspace)

    sign_in(page, alice.email)
    page.get_by_role("link", name="Integrations").first.click()
    page.get_by_role("link", name="Connect Segment").click()
    fill_connect_form(page, name="Production", write_key=key, region="US")
    top = page.get_by_test_id("connection-state")
    expect(health_word(page)).to_have_text("Paused", timeout=CHECK_TIMEOUT_MS)
    expect(top).to_contain_text("Wrong region: this key belongs to an EU source, but the connection is set to US.")
    expect(top).to_contain_text("Events are kept and will be sent once a check passes.")
    expect(page.get_by_test_id("attention-banner")).to_contain_text("Production: delivery is paused")

    # Events emitted meanwhile wait: the control connection gets them, this one does not.
    with transaction.atomic():
        for n in range(3):
            emit.track(workspace, "Order Completed", user_id=f"u{n}")
    wait_for(lambda: len(tracked(segment, control)) == 3)
    assert tracked(segment, key) == []
    expect(top).to_contain_text("3 events wait: nothing is lost.", timeout=8_000)  # its next 5 s refresh
    screenshot(page, "integrations-15-wrong-region")
    page.set_viewport_size(PHONE)
    screenshot(page, "integrations-15-wrong-region-phone")
    page.set_viewport_size(DESKTOP)

    # The message links straight to the region control; the key is not asked for again.
    top.get_by_role("link", name="Change the region").click()
    expect(page).to_have_url(re.compile(r"/settings/#region$"))
    region = page.locator("#region")
    expect(region.get_by_role("textbox")).to_have_count(0)
    segment.set_fault(key, scope="cdn", latency_ms=3000, count=1)  # a slow check, to see it run
    region.get_by_role("radio", name="EU", exact=True).check()
    region.get_by_role("button", name="Change region and check").click()

    expect(page.locator(".messages")).to_contain_text("Region changed from US to EU.")
    expect(health_word(page)).to_have_text("Checking")
    expect(top).to_contain_text("3 events wait for the verdict")
    expect(top).to_have_attribute("hx-trigger", "every 1s")
    screenshot(page, "integrations-16-region-checking")
    assert tracked(segment, key) == []  # still nothing before the verdict
    expect(health_word(page)).to_have_text("Healthy", timeout=CHECK_TIMEOUT_MS)
    connection = Connection.objects.get(name="Production")
    verdict_at = connection.latest_verification.finished_at  # type: ignore[union-attr]
    wait_for(lambda: len(tracked(segment, key)) == 3)
    assert {e["region"] for e in segment.events(write_key=key)} == {"eu"}
    assert verdict_at is not None and connection.region == "eu" and connection.write_key() == key
    expect(page.locator(".connection-meta")).to_contain_text("EU")
    expect(page.get_by_test_id("attention-banner")).to_have_count(0, timeout=8_000)
    screenshot(page, "integrations-17-region-fixed")


def test_the_banner_leaves_after_a_fix_and_comes_for_a_new_failure_without_a_reload(
    page: Any, alice: User, workspace: Workspace, segment: Any
) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    owner = Actor(user=alice)
    connection = services.connection_create(actor=owner, workspace=workspace, name="Marketing site", region="us",
                                            write_key=key)
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]

    sign_in(page, alice.email)
    page.get_by_role("link", name="Members").first.click()
    banner = page.get_by_test_id("attention-banner")
    expect(banner).to_contain_text("Marketing site: delivery is paused")
    screenshot(page, "integrations-18-banner")
    page.evaluate("window.tributaryNoReload = true")

    connection.refresh_from_db()
    services.connection_change_region(actor=owner, connection=connection, region="eu")
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    expect(banner).to_have_count(0, timeout=8_000)

    staging = services.connection_create(actor=owner, workspace=workspace, name="Staging", region="us",
                                         write_key=new_write_key())
    services.verification_run(verification_id=staging.latest_verification.pk)  # type: ignore[union-attr]
    expect(banner).to_contain_text("Staging: delivery is paused", timeout=8_000)
    expect(banner).not_to_contain_text("Marketing site")
    assert page.evaluate("window.tributaryNoReload") is True


TABS = ("Overview", "Deliveries", "Attempts", "Dead letters", "Checks", "Settings")


def shoot_tabs(page: Any, phase: str) -> None:
    """Every tab at 1280 and 390 px wide, each asserting its health word first."""
    for name in TABS:
        tab(page, name)
        page.evaluate("window.scrollTo(0, 0)")
        slug = name.lower().replace(" ", "-")
        screenshot(page, f"connection-tab-{slug}-{phase}")
        page.set_viewport_size(PHONE)
        screenshot(page, f"connection-tab-{slug}-{phase}-phone")
        page.set_viewport_size(DESKTOP)


def test_every_tab_during_and_after_a_check(page: Any, alice: User, workspace: Workspace, segment: Any) -> None:
    """No worker: the check waits in the queue until the test runs it, so "during" lasts."""
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    with transaction.atomic():
        for n in range(12):
            emit.track(workspace, "Order Completed", user_id=f"u{n}")

    sign_in(page, alice.email)
    page.goto(reverse("integrations:connection", kwargs={"slug": workspace.slug, "pk": connection.pk}))
    expect(health_word(page)).to_have_text("Checking")
    expect(page.get_by_test_id("connection-state")).to_contain_text("12 events wait for the verdict")
    shoot_tabs(page, "during")
    expect(page.locator("#content")).not_to_contain_text("Healthy")

    tab(page, "Overview")
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    expect(health_word(page)).to_have_text("Healthy", timeout=3_000)  # polled every second
    expect(page.get_by_test_id("last-verdict")).to_contain_text("Key recognised by Segment")
    shoot_tabs(page, "after")


def test_a_refused_replacement_key_is_scrolled_into_view_and_focused(
    page: Any, alice: User, workspace: Workspace, segment: Any
) -> None:
    owner = Actor(user=alice)
    taken = new_write_key()
    staging = services.connection_create(actor=owner, workspace=workspace, name="Staging", region="us",
                                          write_key=taken)
    production = services.connection_create(actor=owner, workspace=workspace, name="Production", region="us",
                                             write_key=new_write_key())
    for connection in (staging, production):  # no worker here: run the checks in place
        services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    sign_in(page, alice.email)
    page.set_viewport_size(DESKTOP)
    page.goto(reverse("integrations:connection_settings", kwargs={"slug": workspace.slug, "pk": production.pk}))
    page.locator("#replace-key input[name='write_key'], form[action$='/key/'] input[name='write_key']").first.fill(taken)
    page.get_by_role("button", name="Replace and check").click()
    key_field = page.locator("input[name='write_key']")
    expect(key_field).to_have_attribute("aria-invalid", "true")
    expect(key_field).to_be_focused()
    expect(key_field).to_be_in_viewport()
    expect(field(page, "write_key").locator(".field-errors")).to_be_in_viewport()
    screenshot(page, "integrations-replace-key-duplicate")


def test_the_banner_changes_together_with_the_top(page: Any, alice: User, workspace: Workspace, segment: Any) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    sign_in(page, alice.email)
    page.goto(reverse("integrations:connection", kwargs={"slug": workspace.slug, "pk": connection.pk}))
    # The check is queued: the top asks every second, the banner every 5 s, out of step.
    expect(health_word(page)).to_have_text("Checking")
    expect(page.get_by_test_id("attention-banner")).to_have_count(0)
    page.evaluate("""() => {
        window.seen = [];
        document.body.addEventListener('health-changed', () => window.seen.push(['changed', performance.now()]));
        document.body.addEventListener('htmx:beforeRequest', (event) => {
            if (event.detail.elt.id === 'attention-banner-slot') window.seen.push(['banner', performance.now()]);
        });
    }""")
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    expect(health_word(page)).to_have_text("Paused", timeout=3_000)
    expect(page.get_by_test_id("attention-banner")).to_contain_text("Production: delivery is paused", timeout=1_000)
    expect(page.get_by_test_id("enabled-badge")).to_have_text("Enabled · paused")
    seen = page.evaluate("window.seen")
    changed = [at for what, at in seen if what == "changed"]
    assert len(changed) == 1, seen
    # The top's answer asked the banner at once (htmx's listener runs before this one), not at the
    # banner's own next 5-second turn.
    assert any(what == "banner" and abs(at - changed[0]) < 300 for what, at in seen), seen


def test_an_owner_retries_now_once_segment_is_back_and_the_top_turns_healthy_in_place(
        page: Any, alice: User, workspace: Workspace, segment: Any, celery_worker: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).checked_key != "", timeout=CHECK_TIMEOUT_MS / 1000)
    segment.set_fault(key, status=503)  # Segment is down
    emit.track(workspace, "Conversion Triggered", user_id="u1")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).failures >= 1)
    # Some minutes into the outage, the next try is minutes away.
    Connection.objects.filter(pk=connection.pk).update(failures=8, next_attempt_at=timezone.now() + timedelta(minutes=4))
    segment.clear_faults(key)  # and Segment is back

    sign_in(page, alice.email)
    page.goto(reverse("integrations:connection", kwargs={"slug": workspace.slug, "pk": connection.pk}))
    state = page.get_by_test_id("connection-state")
    expect(health_word(page)).to_have_text("Retrying")
    expect(state).to_contain_text("Attempt 9 is due in 3 min")
    page.evaluate("window.tributaryNoReload = true")
    both_sizes(page, "integrations-30-retrying")
    state.get_by_role("button", name="Retry now").click()
    expect(health_word(page)).to_have_text("Healthy", timeout=15_000)  # the top asks every 5 s
    expect(state.get_by_role("button", name="Retry now")).to_have_count(0)
    assert page.evaluate("window.tributaryNoReload") is True
    assert [e["payload"]["event"] for e in segment.events(write_key=key)
            if e["payload"].get("event") != "Segment Connection Tested"] == ["Conversion Triggered"]
    both_sizes(page, "integrations-31-retried")


def test_a_page_whose_session_ends_goes_to_sign_in_once_and_comes_back(page: Any, alice: User, workspace: Workspace,
                                                                      segment: Any) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    sign_in(page, alice.email)
    detail = reverse("integrations:connection_deliveries", kwargs={"slug": workspace.slug, "pk": connection.pk})
    page.goto(detail)
    expect(page.get_by_role("heading", name="Production", level=1)).to_be_visible()
    page.context.clear_cookies()  # signed out elsewhere, or the session expired
    # The polling panels ask, get sent to sign in, and the whole page goes there: one form, not one per panel.
    expect(page).to_have_url(re.compile(r"/account/login/\?next="), timeout=15_000)
    expect(page.locator("form input[name=password]")).to_have_count(1)
    page.get_by_label("E-mail").fill(alice.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(detail) + "$"))
