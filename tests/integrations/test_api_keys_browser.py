"""Settings → API keys driven through headless Chromium: an owner creates an ingest key, sees
it once, reloads (it is gone), revokes it; a member sees the list and nothing to change. The
key and the ready-made calls copy to the clipboard, and the calls work pasted as they are.

Screenshots land in artifacts/ for people to look at."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from typing import Any

import orjson
import pytest
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest.keys import ingest_key_authenticate, ingest_key_create, ingest_key_revoke
from integrations.models import Event
from tests.conftest import both_sizes, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_an_owner_creates_a_key_sees_it_once_and_revokes_it(page: Any, alice: User) -> None:
    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="API keys").click()
    expect(page.get_by_role("heading", name="No ingest keys yet")).to_be_visible()
    expect(page.locator("#usage-title")).to_be_visible()
    expect(page.locator(".endpoint-list")).to_contain_text("POST /v1/batch")
    both_sizes(page, "api-keys-01-empty")

    # A missing name is reported next to the field.
    page.get_by_role("button", name="Create key").click()
    expect(page.locator(".field.has-error")).to_contain_text("Give the key a name")
    screenshot(page, "api-keys-02-name-missing")

    page.get_by_label("Name").fill("Production")
    page.get_by_role("button", name="Create key").click()
    reveal = page.get_by_test_id("new-key")
    expect(reveal).to_contain_text("“Production” created")
    expect(reveal).to_contain_text("This is the only time the key is shown")
    key = page.get_by_test_id("new-key-value").inner_text().strip()
    assert key.startswith("trb_")
    assert ingest_key_authenticate(key) is not None
    expect(page).to_have_url(re.compile(r"/settings/api-keys/$"))  # swapped in place: a reload is a GET
    row = page.locator("tr[data-ingest-key='Production']")
    expect(row).to_contain_text(f"trb_…{key[-4:]}")
    expect(row).to_contain_text("Active")
    expect(row).to_contain_text("Never")
    expect(page.get_by_label("Name")).to_have_value("")

    # One click selects the whole key, ready to copy.
    page.get_by_test_id("new-key-value").click()
    assert page.evaluate("window.getSelection().toString()").strip() == key
    both_sizes(page, "api-keys-03-created")

    page.reload()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    expect(row).to_contain_text(f"trb_…{key[-4:]}")
    assert key not in page.content()
    both_sizes(page, "api-keys-04-after-reload")

    # Revoking asks first, naming the key.
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    row.get_by_role("button", name="Revoke Production").click()
    expect(row).to_contain_text("Revoked")
    assert dialogs and "“Production”" in dialogs[0] and f"trb_…{key[-4:]}" in dialogs[0]
    expect(page.locator(".messages")).to_contain_text("“Production” (trb_…")
    expect(row.get_by_role("button")).to_have_count(0)
    assert ingest_key_authenticate(key) is None
    both_sizes(page, "api-keys-05-revoked")


def test_dismissing_the_confirmation_keeps_the_key(page: Any, alice: User, workspace: Workspace) -> None:
    _, key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Staging")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/api-keys/")
    page.once("dialog", lambda dialog: dialog.dismiss())
    row = page.locator("tr[data-ingest-key='Staging']")
    row.get_by_role("button", name="Revoke Staging").click()
    expect(row).to_contain_text("Active")
    assert ingest_key_authenticate(key) is not None


def test_a_member_sees_the_keys_and_nothing_to_change(page: Any, alice: User, bob: User,
                                                       workspace: Workspace) -> None:
    owner = Actor(user=alice)
    ingest_key_create(actor=owner, workspace=workspace, name="Production")
    old, _ = ingest_key_create(actor=owner, workspace=workspace, name="Old importer")
    ingest_key_revoke(actor=owner, ingest_key=old)
    ingest_key_create(actor=Actor.system(), workspace=workspace, name="Deploy script")

    sign_in(page, bob.email)
    page.goto(f"/w/{workspace.slug}/settings/api-keys/")
    rows = page.locator(".key-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.last).to_contain_text("Old importer")
    expect(rows.last).to_contain_text("Revoked")
    expect(page.locator("tr[data-ingest-key='Deploy script']")).to_contain_text("by the system")
    content = page.locator("#content")
    expect(content.locator("form")).to_have_count(0)
    # Nothing to change; only copy buttons (the host and four ready-made calls).
    expect(content.locator("button:not([data-copy-from]):not([data-copy])")).to_have_count(0)
    expect(content.get_by_role("button", name=re.compile(r"^Copy "))).to_have_count(5)
    both_sizes(page, "api-keys-06-member")


def test_a_member_learns_who_creates_keys_when_there_are_none(page: Any, bob: User) -> None:
    sign_in(page, bob.email)
    page.get_by_role("link", name="API keys").first.click()
    expect(page.get_by_role("heading", name="No ingest keys yet")).to_be_visible()
    expect(page.locator(".empty-note")).to_contain_text("An owner or admin of Alice Analytics creates ingest keys")
    both_sizes(page, "api-keys-07-empty-member")


# --- copy and try ------------------------------------------------------------------------


def clipboard(page: Any) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def copy(page: Any, name: str) -> str:
    """Click the copy button called `name`; wait for it to say so; return the clipboard."""
    button = page.get_by_role("button", name=name)
    button.click()
    expect(button).to_contain_text("Copied")
    expect(page.locator("#live-status")).to_have_text("Copied to the clipboard")
    return clipboard(page)


def run(command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={"PATH": os.environ["PATH"], "HOME": "/tmp", **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def wait_for_events(workspace: Workspace, count: int) -> list[Event]:
    deadline = time.monotonic() + 10
    while Event.objects.filter(workspace=workspace).count() < count:
        assert time.monotonic() < deadline, "the events never arrived"
        time.sleep(0.1)
    return list(Event.objects.filter(workspace=workspace).order_by("seq"))


def test_the_new_key_and_the_ready_calls_copy_and_work_as_pasted(page: Any, alice: User, workspace: Workspace,
                                                                 settings: Any, live_server: Any) -> None:
    settings.SITE_URL = live_server.url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/api-keys/")
    page.get_by_label("Name").fill("Try it")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key-value").inner_text().strip()

    assert copy(page, "Copy the key") == key
    expect(page.get_by_test_id("usage")).to_contain_text("These use the key you just created, “Try it”")
    both_sizes(page, "api-keys-08-copied")

    # Pasted into a shell as they are, the calls reach this server with the new key.
    track = copy(page, "Copy the curl call to /v1/track")
    assert track.startswith(f"curl {live_server.url}/v1/track \\\n") and f"-u '{key}:'" in track
    assert "accepted" in run(["bash", "-c", track]).stdout
    batch = copy(page, "Copy the curl call to /v1/batch")
    assert batch.startswith(f"curl {live_server.url}/v1/batch")
    run(["bash", "-c", batch])
    assert [(e.type, e.name) for e in wait_for_events(workspace, 3)] == [
        ("track", "Order Completed"), ("identify", ""), ("track", "Order Completed")]

    # So does the Python snippet, through Segment's own library.
    python = copy(page, "Copy the Python settings")
    assert f'analytics.host = "{live_server.url}"' in python and f'analytics.write_key = "{key}"' in python
    run([sys.executable, "-c", python])
    sent = orjson.loads(bytes(wait_for_events(workspace, 4)[-1].body))
    assert sent["event"] == "Order Completed" and sent["properties"] == {"total": 42.5}

    node = copy(page, "Copy the Node.js settings")
    assert f'writeKey: "{key}",\n  host: "{live_server.url}",' in node
    assert copy(page, "Copy the host") == live_server.url

    # After a reload the key is gone from the page; the calls read it from $TRIBUTARY_KEY.
    page.reload()
    assert key not in page.content()
    track = copy(page, "Copy the curl call to /v1/track")
    assert '-u "$TRIBUTARY_KEY:"' in track
    run(["bash", "-c", track], TRIBUTARY_KEY=key)
    python = copy(page, "Copy the Python settings")
    assert 'analytics.write_key = os.environ["TRIBUTARY_KEY"]' in python
    run([sys.executable, "-c", python], TRIBUTARY_KEY=key)
    assert len(wait_for_events(workspace, 6)) == 6
    assert 'writeKey: process.env.TRIBUTARY_KEY' in copy(page, "Copy the Node.js settings")
    both_sizes(page, "api-keys-09-calls")


def test_copying_falls_back_when_the_clipboard_api_is_missing(page: Any, alice: User, workspace: Workspace,
                                                              live_server: Any) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    # An older browser, or a page served over plain HTTP from another host: no navigator.clipboard.
    page.add_init_script("""window.realClipboard = navigator.clipboard;
        Object.defineProperty(Navigator.prototype, "clipboard", {get: () => undefined});""")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/api-keys/")
    page.get_by_role("button", name="Copy the host").click()
    expect(page.get_by_role("button", name="Copy the host")).to_contain_text("Copied")
    assert page.evaluate("window.realClipboard.readText()") == page.get_by_test_id("api-host").inner_text()


def test_when_nothing_can_copy_the_call_is_selected_for_the_keyboard(page: Any, alice: User,
                                                                      workspace: Workspace) -> None:
    page.add_init_script("""Object.defineProperty(Navigator.prototype, "clipboard", {get: () => undefined});
        Document.prototype.execCommand = () => false;""")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/api-keys/")
    button = page.get_by_role("button", name="Copy the curl call to /v1/track")
    button.click()
    expect(button).to_contain_text("Press Ctrl+C")
    expect(page.locator("#live-status")).to_contain_text("the text is selected")
    selected = page.evaluate("window.getSelection().toString()").strip()
    assert selected == page.get_by_test_id("snippet-track").inner_text().strip()
    assert selected.startswith("curl ") and selected.endswith("42.5}}'")
    expect(button).to_be_focused()
