"""The debugger and a connection's dead letters driven through headless Chromium, against the
Segment emulator and a real Celery worker: an event appears live and opens to what was sent
and what Segment answered; events Segment refused become dead letters, which are filtered,
dry-run, replayed in place (under their original messageIds) and discarded.

Screenshots land in artifacts/ for people to look at."""
from __future__ import annotations

import base64
import uuid
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.dead_letters.selection import Selection
from integrations.dead_letters.services import dead_letters_replay
from integrations.ingest import emit
from integrations.ingest.keys import ingest_key_create
from integrations.models import Connection, DeadLetter, DeadLetterReplay, Health
from integrations.segment.protocol import RELAY_NAMESPACE
from tests.conftest import ARTIFACTS, DESKTOP, PHONE, both_sizes, new_write_key, sign_in, wait_for
from tests.integrations.relay.processes import emulator_connection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LIVE_MS = 10_000  # a poll every 2 s, a worker, the emulator


def sent_id(connection: Connection, message_id: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(RELAY_NAMESPACE, str(connection.pk)), message_id))


def test_an_owner_watches_an_event_arrive_then_replays_the_events_segment_refused(
        page: Any, alice: User, workspace: Workspace, segment: Any, celery_worker: Any) -> None:
    connection, key = emulator_connection(segment, alice, workspace)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)

    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="Debugger").click()
    expect(page.get_by_role("heading", name="Waiting for the first event")).to_be_visible()
    expect(page.get_by_test_id("debugger-empty")).to_contain_text("/v1/track")
    both_sizes(page, "debugger-01-empty")

    # An event emitted now shows up without a reload.
    emit.track(workspace, "Order Completed", user_id="user-42", properties={"revenue": 42.0},
                message_id="emit-browser-1", context={"library": {"name": "analytics-python", "version": "2.4.0"}})
    row = page.locator("details.event-row[data-seq='1']")
    expect(row).to_be_visible(timeout=LIVE_MS)
    expect(row).to_contain_text("Order Completed")
    expect(row).to_contain_text("user-42")
    expect(page.get_by_test_id("debugger-empty")).to_be_hidden()
    wait_for(lambda: Connection.objects.get(pk=connection.pk).delivered_seq == 1)

    # Opened: as received (the emitter's messageId and library back in place), then what the
    # source was sent and Segment's answer.
    row.locator("summary").click()
    detail = row.get_by_test_id("event-detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_test_id("event-received")).to_contain_text('"messageId": "emit-browser-1"')
    expect(detail.get_by_test_id("event-received")).to_contain_text("analytics-python")
    expect(detail.get_by_test_id("event-received")).not_to_contain_text("tributary")
    trail = detail.locator("[data-testid=trail][data-connection='Production']")
    expect(trail.get_by_test_id("sent-message-id")).to_have_text(sent_id(connection, "emit-browser-1"))
    expect(trail.get_by_test_id("segment-reply")).to_contain_text("HTTP 200")
    trail.get_by_text("What was sent").click()
    expect(trail.get_by_test_id("sent-payload")).to_contain_text('"name": "tributary"')
    both_sizes(page, "debugger-02-event-open")

    # Paused, the list stays as it is; resumed, what arrived meanwhile comes in.
    page.get_by_test_id("live-toggle").click()
    expect(page.get_by_test_id("live-toggle")).to_have_text("Resume")
    emit.track(workspace, "Signed Up", user_id="user-43")
    page.wait_for_timeout(3_000)
    expect(page.locator("details.event-row[data-seq='2']")).to_have_count(0)
    page.get_by_test_id("live-toggle").click()
    expect(page.locator("details.event-row[data-seq='2']")).to_be_visible(timeout=LIVE_MS)

    # Segment refuses everything for a while: the relay splits the batch down to single
    # events and keeps each as a dead letter.
    segment.set_fault(key, status=400)
    emitted = [f"emit-refused-{n}" for n in range(3)]
    for n, message_id in enumerate(emitted):
        emit.track(workspace, "Checkout Started", user_id=f"user-{n}", message_id=message_id)
    emit.track(workspace, "Page Viewed", user_id="user-9", message_id="emit-refused-other")
    wait_for(lambda: DeadLetter.objects.filter(connection=connection).count() == 4)
    segment.clear_faults(key)
    before_replay = {e["payload"]["messageId"] for e in segment.events(write_key=key, limit=10_000)}

    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/dead-letters/")
    expect(page.get_by_role("heading", name="Dead letters", level=1)).to_be_visible()
    expect(page.get_by_test_id("dead-letter-count")).to_contain_text("1\u20134 of 4 dead letters")
    table = page.locator("#dead-letter-table")
    expect(table).to_contain_text("Rejected by Segment")
    expect(table).to_contain_text("HTTP 400")
    table.locator("tr", has_text="Page Viewed").get_by_text("Show the event").click()
    expect(table.get_by_test_id("dead-letter-body")).to_contain_text(sent_id(connection, "emit-refused-other"))
    both_sizes(page, "dead-letters-01-list")

    # Filter to one event name, dry-run a replay of everything that matches, confirm it.
    page.get_by_label("Event name").fill("Checkout Started")
    page.get_by_label("Event name").press("Enter")
    expect(page.get_by_test_id("dead-letter-count")).to_contain_text("of 3 dead letters matching the filters")
    page.get_by_role("link", name="Replay all matching…").click()
    confirm = page.get_by_test_id("dead-letter-confirm")
    expect(confirm.get_by_test_id("confirm-title")).to_contain_text("Replay 3 dead letters to “Production”?")
    expect(confirm).to_contain_text("named “Checkout Started”")
    expect(confirm).to_contain_text("Segment silently drops any event it already accepted in the last 24 hours")
    both_sizes(page, "dead-letters-02-dry-run")

    confirm.get_by_role("button", name="Replay 3 events").click()
    result = page.get_by_test_id("replay-result")
    expect(result).to_have_text("Replay done: 3 accepted, 0 refused.", timeout=LIVE_MS)
    expect(table.locator("tr", has_text="Checkout Started").locator(".badge", has_text="Accepted")).to_have_count(3)
    # The history below the list followed the panel: one replay, done, with who asked.
    history = page.get_by_test_id("replay-history")
    expect(history.get_by_test_id("replay-row")).to_have_count(1)
    expect(history.get_by_test_id("replay-row")).to_have_attribute("data-status", "done")
    expect(history).to_contain_text("3 accepted · 0 refused")
    expect(history).to_contain_text("named “Checkout Started”")
    both_sizes(page, "dead-letters-03-replayed")
    arrived = [e["payload"]["messageId"] for e in segment.events(write_key=key, limit=10_000)
               if e["payload"]["messageId"] not in before_replay]
    assert arrived == [sent_id(connection, m) for m in emitted]

    # Discarding what is ticked asks first, then the list reloads without it.
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/dead-letters/?reason=rejected")
    other = table.locator("tr", has_text="Page Viewed")
    other.get_by_role("checkbox").check()
    page.get_by_role("button", name="Discard selected").click()
    expect(confirm.get_by_test_id("confirm-title")).to_contain_text("Discard 1 dead letter?")
    confirm.get_by_role("button", name="Discard 1 dead letter").click()
    expect(page.get_by_test_id("dead-letter-notice")).to_contain_text("1 dead letter discarded.")
    expect(table.locator("tr", has_text="Page Viewed")).to_have_count(0)
    expect(page.get_by_test_id("dead-letter-count")).to_contain_text("of 3 dead letters")
    both_sizes(page, "dead-letters-04-discarded")


def test_a_member_sees_dead_letters_and_the_debugger_but_nothing_to_change(
        page: Any, alice: User, bob: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    emit.track(workspace, "Order Completed", user_id="user-1", message_id="emit-m")
    DeadLetter.objects.create(connection=connection, seq=1, message_id="emit-m", type="track",
                              name="Order Completed", body=b'{"type":"track","event":"Order Completed"}',
                              reason="expired", response="Not delivered within 168 hours.")
    sign_in(page, bob.email)
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/dead-letters/")
    expect(page.locator("#dead-letter-table")).to_contain_text("Expired")
    expect(page.locator("#dead-letter-table")).to_contain_text("Owners and admins replay and discard.")
    expect(page.locator("#dead-letter-table").get_by_role("checkbox")).to_have_count(0)
    expect(page.get_by_role("link", name="Replay all…")).to_have_count(0)
    # Told who can replay, not how a replay would go.
    expect(page.get_by_test_id("dead-letter-member-note")).to_contain_text("Owners and admins of Alice Analytics replay")
    expect(page.get_by_text("A replay sends each event")).to_have_count(0)
    both_sizes(page, "dead-letters-05-member")
    page.goto(f"/w/{workspace.slug}/debugger/")
    expect(page.locator("details.event-row")).to_have_count(1)


def test_a_replay_whose_worker_stopped_reads_stopped_and_the_owner_can_replay_again(
        page: Any, alice: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    # Its key passed a check (no worker runs one here): replays are not held back for one.
    Connection.objects.filter(pk=connection.pk).update(checked_key=connection.cleared_token())
    letters = [DeadLetter.objects.create(connection=connection, seq=n, message_id=f"emit-{n}", type="track",
                                         name="Order Completed", body=b'{"type":"track","event":"Order Completed"}',
                                         reason="rejected", status=400, response='{"error":"rejected"}')
               for n in range(1, 6)]
    long_ago = timezone.now() - timedelta(hours=3)
    DeadLetterReplay.objects.create(connection=connection, requested_by=alice, requested_at=long_ago, status="done",
                                    total=2, accepted=1, refused=1, selection={"ids": [letters[0].pk, letters[1].pk]})
    stuck = DeadLetterReplay.objects.create(connection=connection, requested_by=alice, status="sending", total=5,
                                            accepted=2, selection={"name": "Order Completed"})
    DeadLetterReplay.objects.filter(pk=stuck.pk).update(updated_at=timezone.now() - timedelta(minutes=20))

    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/settings/integrations/segment/{connection.pk}/dead-letters/")
    expect(page.get_by_test_id("replay-result")).to_have_text("Replay stopped: 2 accepted, 0 refused, 3 not sent.")
    expect(page.get_by_test_id("replay-failure")).to_have_text("The worker stopped; run the replay again.")
    rows = page.get_by_test_id("replay-history").get_by_test_id("replay-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_have_attribute("data-status", "failed")
    expect(rows.nth(1)).to_contain_text("2 picked by hand")
    both_sizes(page, "dead-letters-06-stopped")
    # Close-ups of the panel and the history (the full-page shots are long on a phone).
    for size, suffix in ((DESKTOP, ""), (PHONE, "-phone")):
        page.set_viewport_size(size)
        page.get_by_test_id("replay-status").screenshot(path=str(ARTIFACTS / f"dead-letters-07-panel{suffix}.png"))
        page.get_by_test_id("replay-history").screenshot(path=str(ARTIFACTS / f"dead-letters-07-history{suffix}.png"))
    page.set_viewport_size(DESKTOP)

    # It no longer blocks: the next replay can be confirmed and queued (no worker here).
    page.get_by_role("link", name="Replay all…").click()
    page.get_by_test_id("dead-letter-confirm").get_by_role("button", name="Replay 5 events").click()
    expect(page.get_by_test_id("replay-status")).to_contain_text("Replay queued…")
    expect(rows.first).to_have_attribute("data-status", "queued")
    expect(rows).to_have_count(3)


def chip(page: Any, seq: int, source: str) -> Any:
    return page.locator(f"details.event-row[data-seq='{seq}'] .chip[data-connection='{source}']")


def test_each_row_follows_each_source_live_until_a_paused_one_catches_up(
        page: Any, alice: User, workspace: Workspace, segment: Any, celery_worker: Any) -> None:
    web_key, warehouse_key = new_write_key(), new_write_key()
    segment.register_key(web_key, "us")  # the warehouse's key is not known to Segment yet
    web = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Web", region="us",
                                     write_key=web_key)
    warehouse = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Warehouse",
                                           region="us", write_key=warehouse_key)
    off = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Switched off",
                                     region="us", write_key=new_write_key())
    services.connection_set_enabled(actor=Actor(user=alice), connection=off, enabled=False)
    wait_for(lambda: Connection.objects.get(pk=web.pk).health == Health.HEALTHY)
    wait_for(lambda: Connection.objects.get(pk=warehouse.pk).paused_reason != "")

    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    page.evaluate("window.notReloaded = true")
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="emit-live-1")
    row = page.locator("details.event-row[data-seq='1']")
    expect(row).to_be_visible(timeout=LIVE_MS)
    # One chip per enabled source: Web delivers, the paused Warehouse waits, the disabled one is left out.
    expect(chip(page, 1, "Web")).to_have_attribute("data-state", "delivered", timeout=LIVE_MS)
    expect(chip(page, 1, "Web")).to_contain_text("Delivered")
    expect(chip(page, 1, "Warehouse")).to_have_attribute("data-state", "waiting")
    expect(chip(page, 1, "Warehouse")).to_contain_text("Paused")
    expect(row.locator(".chip[data-connection='Switched off']")).to_have_count(0)
    both_sizes(page, "debugger-03-per-source")

    # The key becomes known and its check passes: the same row turns Delivered in place.
    segment.register_key(warehouse_key, "us")
    services.verification_request(actor=Actor(user=alice), connection=Connection.objects.get(pk=warehouse.pk),
                                  trigger="manual")
    expect(chip(page, 1, "Warehouse")).to_have_attribute("data-state", "delivered", timeout=20_000)
    expect(chip(page, 1, "Warehouse")).to_contain_text("Delivered")
    assert page.evaluate("window.notReloaded === true")
    assert any(e["payload"]["messageId"] == sent_id(warehouse, "emit-live-1")
               for e in segment.events(write_key=warehouse_key, limit=1_000))

    # Segment refuses an event for Web: a dead letter; a replay delivers it, and the row says so.
    segment.set_fault(web_key, status=400)
    emit.track(workspace, "Checkout Started", user_id="user-7", message_id="emit-live-2")
    expect(chip(page, 2, "Web")).to_have_attribute("data-state", "dead", timeout=20_000)
    expect(chip(page, 2, "Web")).to_contain_text("Dead letter")
    segment.clear_faults(web_key)
    dead_letters_replay(actor=Actor(user=alice), connection=Connection.objects.get(pk=web.pk), selection=Selection())
    expect(chip(page, 2, "Web")).to_contain_text("Delivered (replayed)", timeout=20_000)
    page.locator("details.event-row[data-seq='2'] summary").click()
    trail = page.locator("details.event-row[data-seq='2'] [data-testid=trail][data-connection='Web']")
    expect(trail.get_by_test_id("trail-state")).to_have_text("Delivered (replayed)")
    expect(trail.get_by_test_id("trail-history")).to_contain_text("Segment refused it (HTTP 400)")
    expect(trail.get_by_test_id("trail-history")).to_contain_text("Segment accepted it")
    assert page.evaluate("window.notReloaded === true")
    both_sizes(page, "debugger-04-replayed")


def test_a_refused_event_shows_in_the_debugger_as_rejected_and_links_to_its_reason(
        page: Any, alice: User, workspace: Workspace) -> None:
    key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    emit.track(workspace, "Signed Up", user_id="user-1")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    expect(page.locator("details.event-row[data-seq='1']")).to_be_visible()
    answer = Client().post("/v1/batch", data=orjson.dumps({"batch": [
        {"type": "track", "event": "Order Completed", "properties": {"total": 12}}]}),
        content_type="application/json",
        HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{key}:".encode()).decode())
    assert answer.json()["rejected"][0]["reason"] == "missing_user_or_anonymous_id"
    rejected = page.get_by_test_id("rejected-row")
    expect(rejected).to_be_visible(timeout=LIVE_MS)
    expect(rejected).to_contain_text("Order Completed")
    expect(rejected.get_by_test_id("rejected-reason")).to_have_text("Refused: No userId or anonymousId")
    expect(rejected.locator(".chip")).to_have_text("Rejected")
    expect(page.locator("#debugger-events > .event-row").first).to_have_attribute("data-testid", "rejected-row")
    both_sizes(page, "debugger-05-rejected")
    rejected.get_by_role("link").click()
    expect(page.get_by_role("heading", name="Rejected events", level=1)).to_be_visible()
    listed = page.get_by_test_id("rejected-event")
    expect(listed).to_have_count(1)
    expect(listed.get_by_test_id("rejected-reason")).to_have_text("No userId or anonymousId")
    assert page.evaluate("location.hash").startswith("#rejected-")
    both_sizes(page, "rejected-events-01-words")
