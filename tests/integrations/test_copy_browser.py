"""Copy buttons next to messageIds, driven through headless Chromium: what lands on the
clipboard is the id shown, the button says so and the page announces it."""
from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from tests.conftest import new_write_key, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def allow_clipboard(page: Any, live_server: Any) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)


def test_an_events_messageid_copies_from_the_debugger(page: Any, alice: User, workspace: Workspace,
                                                     live_server: Any) -> None:
    allow_clipboard(page, live_server)
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="emit-copy-7f3a")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    row = page.locator("details.event-row[data-seq='1']")
    row.locator("summary").click()
    detail = row.get_by_test_id("event-detail")
    expect(detail.get_by_test_id("event-message-id")).to_have_text("emit-copy-7f3a")

    button = detail.get_by_role("button", name="Copy the messageId")
    button.click()
    expect(button).to_contain_text("Copied")
    expect(page.locator("#live-status")).to_have_text("Copied to the clipboard")
    assert page.evaluate("navigator.clipboard.readText()") == "emit-copy-7f3a"
    screenshot(page, "copy-01-debugger-message-id")
    # The confirmation goes after a moment, ready for the next copy.
    expect(button).to_have_text("Copy")


def test_the_connection_checks_test_messageid_copies(page: Any, alice: User, workspace: Workspace, segment: Any,
                                                     celery_worker: Any, live_server: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    allow_clipboard(page, live_server)
    sign_in(page, alice.email)
    page.goto(reverse("integrations:connection_checks", kwargs={"slug": workspace.slug, "pk": connection.pk}))
    shown = page.locator("#status-panel").get_by_test_id("test-message-id")
    expect(shown).to_be_visible(timeout=15_000)
    message_id = shown.inner_text().strip()
    assert segment.events(write_key=key, message_id=message_id), "the test event never reached Segment"

    button = page.get_by_role("button", name="Copy the test messageId")
    button.click()
    expect(button).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == message_id
    screenshot(page, "copy-02-check-message-id")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "copy-02-check-message-id-phone")
