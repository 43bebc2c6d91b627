"""The signed-in settings area driven through headless Chromium: sign up, add members in
place with htmx, switch workspaces, read the audit log, and what a plain member sees.

Screenshots land in artifacts/ for people to look at."""
from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from playwright.sync_api import expect

from accounts.models import User
from tests.conftest import ARTIFACTS, PHONE, make_user, screenshot, sign_in, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]



def open_workspace_switcher(page: Any) -> Any:
    page.locator("header summary[aria-label^='Switch workspace']").click()
    return page.get_by_role("navigation", name="Workspaces")


def add_member(page: Any, email: str, role: str = "member") -> None:
    form = page.locator("form.add-member-form")
    form.get_by_label("E-mail").fill(email)
    form.get_by_label("Role").select_option(role)
    form.get_by_role("button", name="Add member").click()


def test_an_owner_signs_up_adds_members_in_place_switches_workspaces_and_reads_the_audit_log(
    page: Any, celery_worker: Any,
) -> None:
    make_user("frank@example.com")  # already has an account: added, not invited

    page.goto("/account/signup/")
    screenshot(page, "01-signup")
    page.get_by_label("Your name").fill("Dana Owner")
    page.get_by_label("Work e-mail").fill("dana@example.com")
    page.get_by_label("Password").fill("river-delta-9-estuary")
    page.get_by_label("Workspace name").fill("Dana Data")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox", level=1)).to_be_visible()

    # The account is made from the e-mailed link, which the worker sent.
    wait_for(lambda: len(mail.outbox) == 1)
    link = re.search(r"https?://\S+(/account/signup/confirm/\S+/)", str(mail.outbox[0].body))
    assert link and mail.outbox[0].to == ["dana@example.com"]
    mail.outbox.clear()
    page.goto(link.group(1))
    expect(page.get_by_role("heading", name="Finish signing up", level=1)).to_be_visible()
    expect(page.locator("main, body").first).to_contain_text("Dana Data")
    screenshot(page, "01b-signup-confirm")
    page.get_by_role("button", name="Create my account").click()

    header = page.locator("header")
    expect(header.get_by_test_id("current-workspace")).to_have_text("Dana Data")
    expect(page.get_by_role("heading", name="Integrations", level=1)).to_be_visible()
    expect(page.locator(".messages")).to_contain_text("Your workspace is ready")
    screenshot(page, "02-integrations-after-signup")

    page.get_by_role("link", name="Members").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()
    # A marker on the window survives only if the page is never reloaded.
    page.evaluate("window.tributaryNoReload = true")

    add_member(page, "frank@example.com", role="admin")
    panel = page.locator("#members-panel")
    frank = panel.locator("li[data-email='frank@example.com']")
    expect(frank).to_be_visible()
    expect(frank.get_by_label("Role of frank@example.com")).to_have_value("admin")
    expect(panel.locator(".messages")).to_contain_text("frank@example.com added as admin")

    add_member(page, "grace@example.com")
    expect(panel.locator("li[data-email='grace@example.com']")).to_contain_text("Invitation sent")
    assert page.evaluate("window.tributaryNoReload") is True
    expect(panel.locator("li.is-self")).to_contain_text("(you)")
    screenshot(page, "03-members-owner")

    # Errors come back with 422 and sit under the e-mail field, still without a reload.
    add_member(page, "frank@example.com")
    email_field = panel.locator(".field", has=page.locator("input[name='email']"))
    expect(email_field.locator(".field-error")).to_contain_text("already a member of this workspace")
    expect(email_field.locator("input")).to_have_value("frank@example.com")
    add_member(page, "not-an-address")
    expect(email_field.locator(".field-error")).to_contain_text("valid email address")
    assert page.evaluate("window.tributaryNoReload") is True
    screenshot(page, "04-members-add-error")

    # Removing asks first, naming the person.
    dialogs: list[str] = []

    def confirm(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", confirm)
    panel.get_by_role("button", name="Remove grace@example.com").click()
    expect(panel.locator("li[data-email='grace@example.com']")).to_have_count(0)
    assert "grace@example.com" in dialogs[0]
    expect(panel.locator(".messages")).to_contain_text("grace@example.com was removed")

    page.set_viewport_size(PHONE)
    page.reload()
    expect(page.locator("li[data-email='frank@example.com']")).to_be_visible()
    screenshot(page, "05-members-owner-phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    # A second workspace through the switcher, then back.
    open_workspace_switcher(page)
    page.get_by_role("link", name="New workspace").click()
    page.get_by_label("Workspace name").fill("Side Project")
    page.get_by_role("button", name="Create workspace").click()
    expect(header.get_by_test_id("current-workspace")).to_have_text("Side Project")
    expect(page.locator(".messages")).to_contain_text("You are its owner")

    switcher = open_workspace_switcher(page)
    expect(switcher.locator("[aria-current='true']")).to_contain_text("Side Project")
    screenshot(page, "06-workspace-switcher")
    switcher.get_by_role("link", name=re.compile("Dana Data")).click()
    expect(header.get_by_test_id("current-workspace")).to_have_text("Dana Data")

    page.get_by_role("link", name="Audit log").click()
    table = page.locator("#audit-table")
    expect(table.locator("tr", has_text="Member added")).to_contain_text("frank@example.com")
    expect(table.locator("tr", has_text="Member invited")).to_contain_text("grace@example.com")
    expect(table.locator("tr", has_text="Workspace created")).to_contain_text("Dana Data")
    screenshot(page, "07-audit-log")

    # Filtering swaps the table in place and keeps the choice in the address bar.
    page.get_by_label("Action").select_option("member")
    expect(table.locator("tr", has_text="Workspace created")).to_have_count(0)
    expect(table.locator("tr", has_text="Member added")).to_have_count(1)
    expect(table.locator("tr", has_text="Member removed")).to_contain_text("grace@example.com")
    expect(page).to_have_url(re.compile(r"group=member"))
    screenshot(page, "08-audit-log-filtered")


def test_a_plain_member_sees_the_members_but_no_controls_to_manage_them(page: Any, bob: User) -> None:
    sign_in(page, "bob@example.com")
    expect(page.locator("header").get_by_test_id("current-workspace")).to_have_text("Alice Analytics")

    page.get_by_role("link", name="Members").click()
    panel = page.locator("#members-panel")
    expect(panel.locator("li[data-email='alice@example.com']")).to_contain_text("Owner")
    expect(panel.locator("li.is-self")).to_contain_text("(you)")
    expect(panel.locator("form.add-member-form")).to_have_count(0)
    expect(panel.locator("select[name='role']")).to_have_count(0)
    expect(panel.get_by_role("button", name=re.compile("^Remove"))).to_have_count(0)
    # Leaving is the one thing a member may do, and only on their own row.
    expect(panel.get_by_role("button", name="Leave workspace")).to_have_count(1)
    expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    screenshot(page, "09-members-plain-member")

    page.set_viewport_size(PHONE)
    screenshot(page, "10-members-plain-member-phone")


def test_the_only_owner_sees_why_they_cannot_leave_instead_of_a_leave_button(page: Any, alice: User) -> None:
    sign_in(page, "alice@example.com")
    page.get_by_role("link", name="Members").click()
    panel = page.locator("#members-panel")
    expect(panel.locator("li.is-self")).to_contain_text(
        "You are the only owner: make someone else an owner before you leave.")
    expect(panel.get_by_role("button", name="Leave workspace")).to_have_count(0)
    screenshot(page, "members-sole-owner-1280")
    page.set_viewport_size(PHONE)
    screenshot(page, "members-sole-owner-phone")


def test_the_audit_log_reads_in_sentences_with_its_source_in_view_at_1280_and_on_a_phone(
    page: Any, alice: User, workspace: Any,
) -> None:
    from tests.accounts.audit_rows import seed_audit_rows

    seed_audit_rows(workspace, alice)
    sign_in(page, "alice@example.com")
    page.goto(f"/w/{workspace.slug}/settings/audit/")
    table = page.locator("#audit-table")
    expect(table.locator("tr", has_text="Import finished")).to_contain_text("import #3 (orders-2026-11.jsonl)")
    expect(table.locator("tr", has_text="Import finished")).to_contain_text("skipped 7 invalid lines")
    expect(table.locator("tr", has_text="Owners told delivery recovered")).to_contain_text(
        "until 2 Dec 2026 14:03 UTC")
    expect(table.locator("tr", has_text="Connection check run")).to_contain_text("Chrome 131 on Linux")
    # Every Source cell lies inside the window and the table needs no sideways scrolling.
    fits = page.evaluate("""() => {
        const wrap = document.querySelector('#audit-table .table-wrap');
        const cells = [...document.querySelectorAll('#audit-table td.audit-source')];
        return {scrolls: wrap.scrollWidth > wrap.clientWidth,
                outside: cells.filter(c => c.getBoundingClientRect().right > window.innerWidth).length,
                cells: cells.length};
    }""")
    assert fits["cells"] >= 14 and not fits["scrolls"] and fits["outside"] == 0, fits
    screenshot(page, "11-audit-log-sentences-1280")

    page.set_viewport_size(PHONE)
    expect(table.locator("tr", has_text="Import finished")).to_be_visible()
    wide = page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert wide is False, "the phone layout scrolls sideways"
    screenshot(page, "12-audit-log-sentences-phone")
    table.locator("tr", has_text="Import finished").scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "13-audit-log-sentences-phone-screenful.png"))


def test_signing_up_with_an_invited_address_says_check_your_inbox(page: Any, alice: User, workspace: Any) -> None:
    from accounts import services
    from accounts.audit import Actor

    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="dora@example.com", role="member")
    page.goto("/account/signup/")
    page.get_by_label("Your name").fill("Dora")
    page.get_by_label("Work e-mail").fill("Dora@Example.com")
    page.get_by_label("Password").fill("river-delta-9-estuary")
    page.get_by_label("Workspace name").fill("Dora's Shop")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("heading", name="Check your inbox", level=1)).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("already exists")
    screenshot(page, "14-signup-check-inbox")
    page.set_viewport_size(PHONE)
    screenshot(page, "15-signup-check-inbox-phone")


def test_a_used_or_expired_link_says_so_and_offers_the_ways_forward(page: Any, alice: User) -> None:
    page.goto("/account/password/reset/MQ/used-token/")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has already been used or has expired")
    expect(page.get_by_role("link", name="Send me a new link")).to_be_visible()
    expect(page.get_by_role("link", name="Sign in")).to_be_visible()
    screenshot(page, "link-used-or-expired-1280")
    page.set_viewport_size(PHONE)
    screenshot(page, "link-used-or-expired-phone")


def test_opening_a_forms_address_leads_back_to_its_page(page: Any, alice: User) -> None:
    sign_in(page, alice.email)
    page.goto("/w/alice-analytics/settings/members/add/")
    expect(page.get_by_role("heading", level=1)).to_have_text("This address only takes a form")
    screenshot(page, "form-only-address")
    page.get_by_role("link", name="Go back to the page").click()
    expect(page.get_by_role("heading", name="Members", level=1)).to_be_visible()


def test_the_password_page_puts_the_full_stop_right_after_the_reset_link(page: Any, alice: User) -> None:
    """The footer hint was a flex box: the "." after the link was its own item, a gap away."""
    sign_in(page, alice.email)
    page.goto("/account/password/")
    hint = page.locator(".card-footer .hint")
    expect(hint.get_by_role("link", name="Reset it by e-mail")).to_be_visible()
    # The text on each side of the link touches it: the space before is the text's own, inside
    # its box; no gap is added after the link.
    gaps = hint.evaluate("""(hint) => {
        const link = hint.querySelector("a").getBoundingClientRect();
        const box = (node) => { const r = document.createRange(); r.selectNodeContents(node);
                                return r.getBoundingClientRect(); };
        const a = hint.querySelector("a");
        return {beforeLink: link.left - box(a.previousSibling).right,
                afterLink: box(a.nextSibling).left - link.right};
    }""")
    assert abs(gaps["beforeLink"]) < 0.5 and abs(gaps["afterLink"]) < 0.5, gaps
    screenshot(page, "accounts-password")
    page.set_viewport_size(PHONE)
    screenshot(page, "accounts-password-phone")
