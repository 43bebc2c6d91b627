"""A connection's page in headless Chromium, after a real worker delivered to the emulator
(faults included): the health, the figures updating in place as events go out, the 30-day
chart, and the attempt log filtered by outcome. Screenshots land in artifacts/."""
from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from accounts.models import User, Workspace
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, DeliveryAttempt
from integrations.relay.accounting import Sent, attempt_record
from integrations.selectors.usage import ATTEMPTS_PAGE_SIZE
from tests.conftest import ARTIFACTS, DESKTOP, PHONE, screenshot, sign_in, wait_for
from tests.integrations.support import deliver_with_faults

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def history(connection: Connection) -> None:
    """Three weeks of earlier deliveries, so the chart has something to show. The batches
    hang from noon so that a run just after midnight keeps each day's three on one day."""
    now = noon()
    for days, events in ((2, 1800), (3, 2400), (5, 900), (8, 3100), (9, 2800), (12, 400), (16, 2200), (20, 1500)):
        for batch in range(3):
            attempt_record(connection_id=connection.pk, sent=Sent(1, events, events // 3, events * 110),
                           started_at=now - timedelta(days=days, minutes=batch * 20), duration_ms=60, status=200,
                           outcome=AttemptOutcome.DELIVERED, reply='{"success":true}', latencies=[0.08] * (events // 3))


def noon() -> datetime:
    return timezone.localtime().replace(hour=12, minute=0, second=0, microsecond=0)


def shot(page: Any, name: str, part: Any = None) -> None:
    """A full-page screenshot (or one part of the page) taken from the top, so the sticky
    header sits where it belongs instead of over the content."""
    page.evaluate("window.scrollTo(0, 0)")
    if part is None:
        screenshot(page, name)
    else:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, clip=part.bounding_box())


def test_an_owner_watches_deliveries_go_out_reads_the_chart_and_filters_the_attempt_log(
        page: Any, segment: Any, celery_worker: Any, alice: User, workspace: Workspace, settings: Any) -> None:
    connection, key = deliver_with_faults(segment, alice, workspace, settings)
    history(connection)

    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="Integrations").click()
    page.get_by_role("link", name="Production").first.click()
    expect(page.get_by_role("heading", name="Production", level=1)).to_be_visible()
    top = page.get_by_test_id("connection-state")
    expect(top.get_by_test_id("health-word")).to_have_text("Degraded")
    expect(top).to_contain_text("1 event that became a dead letter in the last 24 hours is not delivered")
    expect(top.get_by_role("link", name="Open dead letters")).to_be_visible()
    shot(page, "connection-page-overview")
    page.get_by_test_id("connection-tabs").get_by_role("link", name="Deliveries").click()

    panel = page.locator("#deliveries-panel")
    expect(panel.locator('[data-figure="delivered-hour"]')).to_have_text("9")
    expect(panel.locator('[data-figure="failed-hour"]')).to_have_text("1")
    expect(panel.locator('[data-figure="undelivered-hour"]')).to_have_text("1")
    expect(panel.locator('[data-figure="retried-hour"]')).to_have_text("6")
    expect(panel.get_by_test_id("latency-p95")).to_have_text(re.compile(r"^\d+ ms$|^\d+\.\d s$"))
    expect(panel.get_by_test_id("dead-letters-link")).to_have_text(re.compile(r"Open dead letters \(1\)"))
    expect(panel.get_by_test_id("attempt-row")).to_have_count(5)
    assert key not in page.content()

    chart = page.get_by_test_id("usage-chart")
    expect(chart.locator("svg.bar-chart")).to_have_count(2)
    expect(chart.locator("g.bar")).to_have_count(60)
    day = (noon() - timedelta(days=3)).date()
    bar = chart.locator(f'svg.chart-delivered g.bar[data-day="{day:%Y-%m-%d}"]')
    expect(bar).to_have_attribute("data-value", "2400")
    expect(bar.locator("title")).to_have_text(re.compile(r": 2,400 events$"))
    expect(chart.get_by_role("img", name=re.compile("Events delivered per day"))).to_be_visible()
    chart.get_by_text("Show these figures as a table").click()
    expect(chart.locator("details table")).to_contain_text("2,400")
    chart.get_by_text("Show these figures as a table").click()
    shot(page, "connection-page-desktop")
    shot(page, "connection-page-panel", panel)
    shot(page, "connection-page-chart", chart)

    # Events go out while the person watches: the panel refreshes itself, the page does not reload.
    page.evaluate("window.tributaryNoReload = true")
    with transaction.atomic():
        for n in range(4):
            emit.track(workspace, "Plan Upgraded", user_id=f"u{n}")
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 14)
    expect(panel.locator('[data-figure="delivered-hour"]')).to_have_text("13", timeout=12_000)
    expect(panel.get_by_test_id("backlog-waiting")).to_have_text("0")
    assert page.evaluate("window.tributaryNoReload") is True

    page.set_viewport_size(PHONE)
    shot(page, "connection-page-phone")
    page.set_viewport_size(DESKTOP)

    page.get_by_role("link", name="All attempts").click()
    expect(page.get_by_role("heading", name="Delivery attempts", level=1)).to_be_visible()
    rows = page.get_by_test_id("attempt-row")
    total = rows.count()
    assert total == min(ATTEMPTS_PAGE_SIZE, DeliveryAttempt.objects.filter(connection=connection).count())
    page.get_by_label("Outcome").select_option(label="Will retry")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(re.compile(r"outcome=retrying"))
    for index in range(2):
        expect(rows.nth(index)).to_contain_text("HTTP 503")
    expect(page.locator("#attempts .table-meta")).to_contain_text("Outcome “Will retry”")
    shot(page, "connection-page-attempts")
    page.set_viewport_size(PHONE)
    shot(page, "connection-page-attempts-phone")
    page.set_viewport_size(DESKTOP)

    page.get_by_label("Outcome").select_option(label="All outcomes")
    expect(rows).to_have_count(total)


def test_a_member_sees_a_paused_connection_in_the_banner_and_who_can_fix_it(
        page: Any, alice: User, bob: User, workspace: Workspace, segment: Any) -> None:
    from accounts.audit import Actor
    from integrations import services
    from tests.conftest import new_write_key

    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    emit.track(workspace, "Waiting", user_id="u1")

    sign_in(page, bob.email)
    banner = page.get_by_test_id("attention-banner")
    expect(banner).to_contain_text("Production: delivery is paused")
    banner.get_by_role("link", name="Production").click()
    top = page.get_by_test_id("connection-state")
    expect(top.get_by_test_id("health-word")).to_have_text("Paused")
    expect(top).to_contain_text("Segment does not recognise this write key.")
    expect(top).to_contain_text("Owners and admins can correct the write key or region: ask alice@example.com.")
    expect(top.get_by_test_id("fix-link")).to_have_count(0)  # a control the member cannot use
    expect(page.get_by_test_id("backlog-waiting")).to_have_text("1")
    expect(page.locator("#content form")).to_have_count(0)
    shot(page, "connection-page-paused-member")
    page.set_viewport_size(PHONE)
    shot(page, "connection-page-paused-member-phone")
