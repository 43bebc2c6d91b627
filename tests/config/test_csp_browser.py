"""Under the Content-Security-Policy, in headless Chromium: Django's admin still runs its
scripts, and what used to be htmx expressions and hx-on handlers (now app.js listeners keyed
on data- attributes) still works. The `page` fixture fails each test on any violation."""
from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import Connection, DeadLetter
from tests.conftest import CSP_VIOLATION_MARKS, PASSWORD, new_write_key, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_admin_runs_its_scripts_under_the_policy(page: Any, alice: User, workspace: Workspace) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save(update_fields=["is_staff", "is_superuser"])
    services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production", region="us",
                               write_key=new_write_key())
    page.goto("/admin/login/")
    page.locator("#id_username").fill(alice.email)
    page.locator("#id_password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#site-name")).to_be_visible()

    # The list's action bar is driven by admin/js/actions.js: ticking every row updates its counter.
    page.goto("/admin/integrations/connection/")
    expect(page.get_by_role("heading", name="Encryption keys (FIELD_ENCRYPTION_KEYS)")).to_be_visible()
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")

    # The sidebar filter (nav_sidebar.js) narrows the models as one types.
    page.goto(f"/admin/accounts/user/{alice.pk}/change/")
    page.locator("#nav-filter").fill("connect")
    expect(page.locator("#nav-sidebar tr.model-connection")).to_be_visible()
    expect(page.locator("#nav-sidebar tr.model-user")).to_be_hidden()

    for path in ("/admin/", "/admin/accounts/workspace/", "/admin/accounts/membership/",
                 "/admin/integrations/ingestkey/", "/admin/integrations/deadletter/"):
        page.goto(path)
        expect(page.locator("#content")).to_be_visible()


def test_pausing_the_debugger_and_asking_only_for_newer_events_need_no_eval(
        page: Any, alice: User, workspace: Workspace) -> None:
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="csp-1")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    expect(page.locator("details.event-row[data-seq='1']")).to_be_visible()

    # Each poll names the newest row it has (data-after-param), so nothing comes twice.
    with page.expect_request(lambda request: "/debugger/events/" in request.url) as poll:
        pass
    assert "after=1" in poll.value.url
    emit.track(workspace, "Signed Up", user_id="user-43", message_id="csp-2")
    expect(page.locator("details.event-row[data-seq='2']")).to_be_visible(timeout=10_000)
    with page.expect_request(lambda request: "/debugger/events/" in request.url) as poll:
        pass
    assert "after=2" in poll.value.url
    expect(page.locator("details.event-row")).to_have_count(2)

    # Paused (data-live-toggle), the list stops asking (data-poll skips its turns).
    toggle = page.get_by_test_id("live-toggle")
    toggle.click()
    expect(toggle).to_have_text("Resume")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/debugger/events/" in request.url else None)
    page.evaluate("""window.turns = 0;
        document.getElementById("debugger-events").addEventListener("htmx:beforeRequest", () => window.turns++);""")
    emit.track(workspace, "Paused Event", user_id="user-44", message_id="csp-3")
    page.wait_for_function("() => window.turns >= 2")  # two turns of the poll came and went
    assert requests == []
    expect(page.locator("details.event-row[data-seq='3']")).to_have_count(0)
    toggle.click()
    expect(toggle).to_have_text("Pause")
    expect(page.locator("details.event-row[data-seq='3']")).to_be_visible(timeout=10_000)


def test_ticking_every_dead_letter_and_cancelling_the_confirmation_need_no_eval(
        page: Any, alice: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    for n in range(1, 4):
        DeadLetter.objects.create(connection=connection, seq=n, message_id=f"emit-{n}", type="track",
                                  name="Order Completed", body=b'{"type":"track","event":"Order Completed"}',
                                  reason="rejected", status=400, response='{"error":"rejected"}')
    sign_in(page, alice.email)
    url = f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/dead-letters/"
    page.goto(url)
    boxes = page.locator("#dead-letter-table tbody input[name=ids]")
    expect(boxes).to_have_count(3)

    every = page.get_by_role("checkbox", name="Select every dead letter on this page")
    every.check()
    for n in range(3):
        expect(boxes.nth(n)).to_be_checked()
    every.uncheck()
    for n in range(3):
        expect(boxes.nth(n)).not_to_be_checked()

    # Cancel inside the panel empties the panel in place instead of following its link.
    every.check()
    page.get_by_role("button", name="Discard selected").click()
    confirm = page.get_by_test_id("dead-letter-confirm")
    expect(confirm).to_contain_text("Discard 3 dead letters?")
    page.evaluate("window.stillHere = true")
    confirm.get_by_role("link", name="Cancel").click()
    expect(confirm).to_have_count(0)
    assert page.evaluate("window.stillHere") is True
    assert DeadLetter.objects.filter(connection=connection).count() == 3
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_a_violation_or_a_skipped_htmx_expression_is_caught(page: Any, alice: User) -> None:
    sign_in(page, alice.email)
    page.evaluate("""() => {
        const box = document.createElement("div");
        box.innerHTML = '<p style="color: red">styled</p><div hx-get="/" hx-trigger="load[true]"></div>';
        document.getElementById("content").append(box);
        htmx.process(box);
    }""")
    reports = page.console_reports

    def caught(word: str) -> bool:
        return any(word in report for report in reports if any(mark in report for mark in CSP_VIOLATION_MARKS))

    deadline = time.monotonic() + 10
    # Chromium's own message, our reporter's (naming the element), and htmx's.
    while not (caught("Applying inline style") and caught("element=<p style") and caught("evalDisallowedError")):
        assert time.monotonic() < deadline, reports
        page.wait_for_timeout(50)  # lets Playwright deliver the console messages
    reports.clear()  # caught on purpose: the fixture has nothing left to fail this test for
