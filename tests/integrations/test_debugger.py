"""The event debugger: the latest events, the poll that brings new ones, an opened event as
received and per connection (sent form, Segment's answer, or why nothing was sent), search by
each field, and who may look."""
from __future__ import annotations

import base64
import html
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.ingest.keys import ingest_key_create
from integrations.models import AttemptOutcome, Connection, DeadLetter, DeliveryAttempt, Event, RejectedEvent
from integrations.models.events import rejection_reason_text
from integrations.segment.protocol import RELAY_NAMESPACE
from integrations.selectors import debugger
from tests.conftest import new_write_key, wait_for


def url(name: str, workspace: Workspace, query: str = "") -> str:
    path = reverse(f"integrations:{name}", kwargs={"slug": workspace.slug})
    return f"{path}?{query}" if query else path


def page_text(response: Any) -> str:
    return html.unescape(response.content.decode())


def connect(alice: User, workspace: Workspace, name: str = "Production", segment: Any = None) -> tuple[Connection, str]:
    key = new_write_key()
    if segment is not None:
        segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name=name, region="us",
                                            write_key=key)
    return connection, key


def checked(*connections: Connection) -> None:
    """As if a check had found each connection's key known: delivery may run for it."""
    for connection in connections:
        Connection.objects.filter(pk=connection.pk).update(checked_key=connection.cleared_token())


def chips(response: Any) -> list[dict[str, str]]:
    """Each listed event's chips, as {source name: label}, in list order."""
    return [{chip.connection.name: chip.label for chip in status.chips} for _event, status in response.context["rows"]
            if status is not None]


def sent_id(connection: Connection, message_id: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(RELAY_NAMESPACE, str(connection.pk)), message_id))



def seqs(response: Any) -> list[int]:
    return [event.seq for event, _status in response.context["rows"]]


def test_the_debugger_lists_the_latest_events_newest_first(db: None, alice_client: Client,
                                                           workspace: Workspace) -> None:
    for n in range(60):
        emit.track(workspace, f"Step {n}", user_id=f"user-{n}")
    response = alice_client.get(url("debugger", workspace))
    assert response.status_code == 200
    assert seqs(response) == list(range(60, 10, -1))  # the latest 50
    page = page_text(response)
    assert page.index("Step 59") < page.index("Step 58") and "Step 9<" not in page
    assert "Live: new events appear within 2 seconds" in page and "Pause" in page


def test_the_poll_brings_only_what_arrived_and_says_when_more_came_than_it_shows(
        db: None, alice_client: Client, workspace: Workspace) -> None:
    emit.track(workspace, "First", user_id="user-1")
    assert alice_client.get(url("debugger_events", workspace, "after=1")).status_code == 204  # nothing new
    emit.track(workspace, "Second", user_id="user-1")
    fresh = alice_client.get(url("debugger_events", workspace, "after=1"))
    assert fresh.status_code == 200 and seqs(fresh) == [2] and "is-new" in fresh.content.decode()
    for n in range(55):
        emit.track(workspace, f"Burst {n}", user_id="user-1")
    burst = alice_client.get(url("debugger_events", workspace, "after=2"))
    assert seqs(burst)[0] == 57 and len(seqs(burst)) == 50
    assert "5 more events arrived before these and are not listed." in page_text(burst)


def test_an_empty_workspace_shows_how_to_send_a_first_event_and_keeps_listening(
        db: None, alice_client: Client, workspace: Workspace) -> None:
    page = page_text(alice_client.get(url("debugger", workspace)))
    assert "Waiting for the first event" in page
    assert "curl http://testserver/v1/track" in page or "/v1/track" in page
    assert reverse("integrations:api_keys", kwargs={"slug": workspace.slug}) in page
    assert 'hx-trigger="every 2s' in page


def test_an_opened_event_shows_the_payload_as_received_and_per_source_what_was_sent_and_segments_answer(
        transactional_db: None, segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    production, key = connect(alice, workspace, segment=segment)
    staging, staging_key = connect(alice, workspace, "Staging", segment=segment)
    emit.track(workspace, "Order Completed", user_id="user-42", properties={"revenue": 42.0},
                message_id="emit-order-1", context={"library": {"name": "analytics-python", "version": "2.4.0"}})
    wait_for(lambda: all(c.delivered_seq == 1 for c in Connection.objects.all()))
    client = Client()
    client.force_login(alice)
    response = client.get(url("debugger_event", workspace, "seq=1"))
    received = orjson.loads(response.context["received"])
    assert received["messageId"] == "emit-order-1"
    assert received["context"] == {"library": {"name": "analytics-python", "version": "2.4.0"}}
    assert received["properties"] == {"revenue": 42.0} and received["userId"] == "user-42"
    page = page_text(response)
    for connection, write_key in ((production, key), (staging, staging_key)):
        trail = next(t for t in response.context["trails"] if t.connection == connection)
        assert trail.state == "delivered" and trail.reply is not None and trail.reply.status == 200
        sent = orjson.loads(trail.sent)
        assert sent["messageId"] == sent_id(connection, "emit-order-1")
        assert sent["context"]["library"]["name"] == "tributary"
        assert sent["context"]["tributary"]["messageId"] == "emit-order-1"
        # What the page says was sent is what Segment received.
        [arrived] = [e["payload"] for e in segment.events(write_key=write_key)
                     if e["payload"].get("event") == "Order Completed"]
        assert {k: v for k, v in arrived.items() if k != "sentAt"} == sent
        assert sent_id(connection, "emit-order-1") in page
    assert page.count("HTTP 200") == 2 and page.count('{"success": true}') + page.count('{"success":true}') == 2


def test_each_source_says_what_happened_to_the_event_delivered_after_a_retry_waiting_dead_or_connected_after(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    delivered, _ = connect(alice, workspace, "Delivered")
    waiting, _ = connect(alice, workspace, "Waiting")
    dead, _ = connect(alice, workspace, "Dead")
    checked(delivered, waiting, dead)
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="emit-2")
    event = Event.objects.get(workspace=workspace, seq=1)
    connect(alice, workspace, "Later")
    Connection.objects.filter(pk__in=[delivered.pk, dead.pk]).update(delivered_seq=1)
    start = event.received_at + timedelta(seconds=1)
    for offset, status, outcome in ((0, 503, AttemptOutcome.RETRYING), (2, 200, AttemptOutcome.DELIVERED)):
        DeliveryAttempt.objects.create(connection=delivered, started_at=start + timedelta(seconds=offset), events=1,
                                       bytes=500, first_seq=1, last_seq=1, status=status, outcome=outcome,
                                       reply="Service Unavailable" if status == 503 else '{"success":true}',
                                       attempt=1 if status == 503 else 2)
    DeliveryAttempt.objects.create(connection=waiting, started_at=start, events=1, bytes=500, first_seq=1, last_seq=1,
                                   status=429, outcome=AttemptOutcome.RETRYING, reply="Too Many Requests")
    DeadLetter.objects.create(connection=dead, seq=1, message_id="emit-2", type="track", name="Order Completed",
                              body=bytes(event.body), reason="rejected", status=400, response='{"error":"too big"}',
                              received_at=event.received_at)
    response = alice_client.get(url("debugger_event", workspace, "seq=1"))
    trails = {t.connection.name: t for t in response.context["trails"]}
    assert trails["Delivered"].state == "delivered" and [a.status for a in trails["Delivered"].attempts] == [503, 200]
    waiting_reply = trails["Waiting"].reply
    assert trails["Waiting"].state == "waiting" and waiting_reply is not None and waiting_reply.status == 429
    assert trails["Dead"].state == "dead" and trails["Dead"].dead_letter is not None
    assert trails["Later"].state == "before"
    page = page_text(response)
    assert "2 requests" in page and "try 2" in page
    assert "Will be sent again" in page and ": Segment refused it (HTTP 400)." in page
    assert "Connected after this event" in page
    # The list: one chip per source, each saying where the event stands there.
    Connection.objects.filter(pk=waiting.pk).update(failures=1)
    assert chips(alice_client.get(url("debugger", workspace))) == [
        {"Dead": "Dead letter", "Delivered": "Delivered", "Later": "Connected after this event", "Waiting": "Retrying"}]
    DeadLetter.objects.all().delete()
    Connection.objects.filter(pk=waiting.pk).update(delivered_seq=1)
    assert chips(alice_client.get(url("debugger", workspace))) == [
        {"Dead": "Delivered", "Delivered": "Delivered", "Later": "Connected after this event", "Waiting": "Delivered"}]


def test_a_paused_source_waits_alone_and_a_disabled_one_is_left_out(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    web, _ = connect(alice, workspace, "Web")
    paused, _ = connect(alice, workspace, "Warehouse")
    connect(alice, workspace, "New key")
    off, _ = connect(alice, workspace, "Switched off")
    checked(web, paused, off)
    Connection.objects.filter(pk=paused.pk).update(paused_reason="Segment refused the write key (HTTP 401).")
    Connection.objects.filter(pk=off.pk).update(enabled=False)
    for n in range(3):
        emit.track(workspace, f"Step {n}", user_id="user-1")
    Connection.objects.filter(pk=web.pk).update(delivered_seq=2)
    listed = chips(alice_client.get(url("debugger", workspace)))
    assert listed == [{"New key": "Key check", "Warehouse": "Paused", "Web": "Sending"}] + [
        {"New key": "Key check", "Warehouse": "Paused", "Web": "Delivered"}] * 2
    page = page_text(alice_client.get(url("debugger", workspace)))
    assert "Switched off" not in page and "Warehouse: waiting, delivery is paused" in page
    assert "New key: waiting for the key check" in page
    # The opened event says why in full.
    detail = page_text(alice_client.get(url("debugger_event", workspace, "seq=3")))
    assert "until a check finds it known to Segment" in detail and "delivery is paused" in detail
    assert "Switched off" not in detail


def test_a_dead_letter_a_replay_delivered_reads_delivered_replayed_and_keeps_its_history(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace, "Production")
    checked(connection)
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="emit-r")
    event = Event.objects.get(workspace=workspace, seq=1)
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=1)
    letter = DeadLetter.objects.create(connection=connection, seq=1, message_id="emit-r", type="track",
                                       name="Order Completed", body=bytes(event.body), reason="rejected", status=400,
                                       response='{"error":"bad"}', received_at=event.received_at)
    assert chips(alice_client.get(url("debugger", workspace))) == [{"Production": "Dead letter"}]
    DeadLetter.objects.filter(pk=letter.pk).update(replays=2, replayed_at=timezone.now())
    assert chips(alice_client.get(url("debugger", workspace))) == [{"Production": "Delivered (replayed)"}]
    detail = alice_client.get(url("debugger_event", workspace, "seq=1"))
    assert [t.state for t in detail.context["trails"]] == ["replayed"]
    text = page_text(detail)
    assert "Delivered (replayed)" in text and "Dead letter since" in text
    assert "Segment refused it (HTTP 400). Replayed 2 times; Segment accepted it" in text


def test_the_status_refresh_swaps_the_chips_of_the_rows_asked_about_in_a_few_queries(
        db: None, alice_client: Client, alice: User, workspace: Workspace,
        django_assert_max_num_queries: Any) -> None:
    first, _ = connect(alice, workspace, "First")
    second, _ = connect(alice, workspace, "Second")
    checked(first, second)
    for n in range(60):
        emit.track(workspace, f"Step {n}", user_id="user-1")
    Connection.objects.filter(pk=first.pk).update(delivered_seq=60)
    assert alice_client.get(url("debugger_statuses", workspace)).status_code == 204  # no row on screen
    query = "&".join(f"seq={n}" for n in range(60, 10, -1))
    alice_client.get(url("debugger_statuses", workspace, query))  # sessions and the like, warmed
    with django_assert_max_num_queries(8):
        response = alice_client.get(url("debugger_statuses", workspace, query))
    body = response.content.decode()
    assert response.status_code == 200 and body.count('hx-swap-oob="true"') == 50
    assert 'id="event-status-60"' in body and 'id="event-status-10"' not in body
    assert [list(status_chips.values()) for status_chips in chips(response)][:1] == [["Delivered", "Sending"]]
    # Rows are asked about by seq within this workspace only, and at most REFRESH_ROWS at once.
    many = "&".join(f"seq={n}" for n in range(1, 500))
    assert len(alice_client.get(url("debugger_statuses", workspace, many)).context["rows"]) == 60
    assert alice_client.get(url("debugger_statuses", workspace, "seq=abc&seq=-1")).status_code == 204


def test_search_by_event_name_user_id_and_message_id(db: None, alice_client: Client, workspace: Workspace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    emit.track(workspace, "Order Completed", user_id="user-1", message_id="emit-a")
    emit.track(workspace, "Signed Up", user_id="user-2", message_id="emit-b")
    emit.identify(workspace, user_id="user-1", traits={"plan": "pro"}, message_id="emit-c")
    emit.track(workspace, "Order Refunded", user_id="user-3", message_id="emit-d")
    by_name = alice_client.get(url("debugger", workspace, "field=name&q=order"))
    assert seqs(by_name) == [4, 1]
    assert "Searching the latest 10,000 events for event name containing “order”" in page_text(by_name)
    assert seqs(alice_client.get(url("debugger", workspace, "field=user_id&q=user-1"))) == [3, 1]
    by_id = alice_client.get(url("debugger", workspace, "field=message_id&q=emit-b"))
    assert seqs(by_id) == [2] and "in the whole log" in page_text(by_id)
    assert seqs(alice_client.get(url("debugger", workspace, "field=message_id&q=emit-zzz"))) == []
    # Name and user id look only at the latest events; a messageId is found however old.
    monkeypatch.setattr(debugger, "SEARCH_WINDOW", 2)
    assert seqs(alice_client.get(url("debugger", workspace, "field=name&q=order"))) == [4]
    assert seqs(alice_client.get(url("debugger", workspace, "field=message_id&q=emit-a"))) == [1]
    # The poll of a search brings only new matches.
    emit.track(workspace, "Order Completed", user_id="user-9")
    emit.track(workspace, "Signed Up", user_id="user-9")
    assert seqs(alice_client.get(url("debugger_events", workspace, "after=4&field=name&q=order"))) == [5]


def test_a_member_uses_the_debugger_and_an_outsider_gets_404_everywhere(
        db: None, bob_client: Client, charlie_client: Client, charlie_workspace: Workspace,
        workspace: Workspace) -> None:
    emit.track(workspace, "Order Completed", user_id="user-1")
    assert bob_client.get(url("debugger", workspace)).status_code == 200
    assert bob_client.get(url("debugger_event", workspace, "seq=1")).status_code == 200
    assert bob_client.get(url("debugger_statuses", workspace, "seq=1")).status_code == 200
    for name, query in (("debugger", ""), ("debugger_events", "after=0"), ("debugger_event", "seq=1"),
                        ("debugger_statuses", "seq=1")):
        assert charlie_client.get(url(name, workspace, query)).status_code == 404, name
    # Seqs are per workspace: one that exists only in another workspace is not found here.
    emit.track(charlie_workspace, "Secret", user_id="c-1")
    emit.track(charlie_workspace, "Secret", user_id="c-2")
    assert bob_client.get(url("debugger_event", workspace, "seq=2")).status_code == 404
    assert "Secret" not in bob_client.get(url("debugger", workspace)).content.decode()


def test_the_payload_as_received_puts_back_what_tributary_moved(db: None, workspace: Workspace) -> None:
    emit.page(workspace, "Pricing", anonymous_id="anon-1", message_id="emit-p", context={"ip": "203.0.113.4"})
    event = Event.objects.get(workspace=workspace, seq=1)
    received = debugger.payload_as_received(event)
    assert received["messageId"] == "emit-p" and received["context"] == {"ip": "203.0.113.4"}
    assert "tributary" not in orjson.dumps(received).decode()
    assert received["receivedAt"] and received["name"] == "Pricing"
    stored = orjson.loads(bytes(event.body))
    assert stored["context"]["library"]["name"] == "tributary" and "messageId" not in stored
    assert timezone.now() - event.received_at < timedelta(minutes=1)


def ingest(client: Client, key: str, body: dict[str, Any]) -> Any:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.post("/v1/batch", data=orjson.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=auth)


def test_refused_events_are_listed_as_rejected_in_words_linked_to_the_rejected_events_page(
        db: None, client: Client, alice_client: Client, alice: User, workspace: Workspace) -> None:
    key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    ingest(client, key, {"batch": [{"type": "track", "event": "Signed Up", "userId": "user-1"},
                                   {"type": "track", "event": "Order Completed", "messageId": "m-anon"}]})
    listed = alice_client.get(url("debugger", workspace))
    rows = [row for row, _status in listed.context["rows"]]
    assert [getattr(row, "seq", "rejected") for row in rows] == ["rejected", 1]
    page = page_text(listed)
    rejected = RejectedEvent.objects.get(workspace=workspace)
    link = reverse("integrations:rejected_events", kwargs={"slug": workspace.slug}) + f"#rejected-{rejected.pk}"
    assert f'href="{link}"' in page and "Refused: No userId or anonymousId" in page
    assert "missing_user_or_anonymous_id" not in page and "Order Completed" in page
    cursor = listed.context["rejected_after"]
    # The poll brings refused events newer than the newest shown, and moves the cursor on.
    assert alice_client.get(url("debugger_events", workspace, f"after=1&rejected_after={quote(cursor)}")).status_code == 204
    ingest(client, key, {"batch": [{"type": "launch", "userId": "user-2"}]})
    fresh = alice_client.get(url("debugger_events", workspace, f"after=1&rejected_after={quote(cursor)}"))
    text = page_text(fresh)
    assert fresh.status_code == 200 and "Refused: Unknown type" in text and "Refused: No userId" not in text
    assert 'id="debugger-rejected-after"' in text and fresh.context["rejected_after"] > cursor
    # The Rejected events page uses the same words, and keeps the code for API users.
    settings_page = page_text(alice_client.get(reverse("integrations:rejected_events", kwargs={"slug": workspace.slug})))
    assert "No userId or anonymousId" in settings_page and "Unknown type" in settings_page
    assert f'id="rejected-{rejected.pk}"' in settings_page


def test_a_reason_code_without_words_reads_as_its_own_words() -> None:
    assert rejection_reason_text("missing_event") == "Track without an event name"
    assert rejection_reason_text("too_many_properties") == "Too many properties"
    assert rejection_reason_text("") == "Refused"
    assert RejectedEvent(reason="too_deeply_nested").reason_text == "Nested too deeply"


def test_a_first_refused_event_reaches_a_list_that_had_none(
        db: None, client: Client, alice_client: Client, alice: User, workspace: Workspace) -> None:
    key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    cursor = alice_client.get(url("debugger", workspace)).context["rejected_after"]
    ingest(client, key, {"batch": [{"type": "identify", "traits": {"plan": "pro"}}]})
    fresh = alice_client.get(url("debugger_events", workspace, f"after=0&rejected_after={quote(cursor)}"))
    assert "Refused: No userId or anonymousId" in page_text(fresh)


def test_an_opened_event_names_each_sources_status_in_the_chips_words_and_says_under_which_id_it_will_be_sent(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    web, _ = connect(alice, workspace, "Web")
    paused, _ = connect(alice, workspace, "Unknown")
    connect(alice, workspace, "New key")
    checked(web, paused)
    Connection.objects.filter(pk=paused.pk).update(paused_reason="Segment refused the write key (HTTP 401).")
    emit.track(workspace, "Order Completed", user_id="user-42", message_id="emit-w")
    connect(alice, workspace, "Mobile")
    listed = chips(alice_client.get(url("debugger", workspace)))
    assert listed == [{"Mobile": "Connected after this event", "New key": "Key check", "Unknown": "Paused", "Web": "Sending"}]
    detail = alice_client.get(url("debugger_event", workspace, "seq=1"))
    # One derivation, one vocabulary: the opened event's badge per source is its chip.
    assert {t.connection.name: t.chip.label for t in detail.context["trails"]} == listed[0]
    page = page_text(detail)
    badges = [b.split(">", 1)[1] for b in page.split('data-testid="trail-state"')[1:]]
    assert sorted(b.split("<", 1)[0] for b in badges) == ["Connected after this event", "Key check", "Paused", "Sending"]
    assert ">Waiting<" not in page
    # Nothing was sent to the waiting sources: no "Sent" step, the id it will go out under instead.
    assert '<span class="trail-step">Sent</span>' not in page
    assert page.count("Will be sent as") == 3 and sent_id(paused, "emit-w") in page
    assert "Not sent: delivery is paused" in page
    # Once sent, the step says so.
    Connection.objects.filter(pk=web.pk).update(delivered_seq=1)
    page = page_text(alice_client.get(url("debugger_event", workspace, "seq=1")))
    assert page.count('<span class="trail-step">Sent</span>') == 1 and page.count("Will be sent as") == 2


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_chip_keeps_its_state_whole_and_its_source_name_readable_at_both_widths(
        page: Any, alice: User, workspace: Workspace) -> None:
    from playwright.sync_api import expect

    from tests.conftest import screenshot, sign_in

    web, _ = connect(alice, workspace, "Web")
    checked(web)
    emit.track(workspace, "Order Completed", user_id="user-42")
    connect(alice, workspace, "Mobile-unknown-key")
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/debugger/")
    later = page.locator("details.event-row[data-seq='1'] .chip[data-connection='Mobile-unknown-key']")
    expect(later).to_have_attribute("title", "Mobile-unknown-key: Connected after this event, so not sent to it")
    for width, name in ((1280, "debugger-06-chips"), (390, "debugger-06-chips-phone")):
        page.set_viewport_size({"width": width, "height": 844})
        screenshot(page, name)
        # Nothing of the state is cut, and the name is shown in full (no ellipsis, no overflow).
        expect(later.locator(".chip-state")).to_have_text("Connected after this event")
        expect(later.locator(".chip-name")).to_have_text("Mobile-unknown-key")
        cut = later.evaluate("""chip => [...chip.children].some(part => part.scrollWidth > part.clientWidth + 1)
                                || chip.scrollWidth > chip.clientWidth + 1""")
        assert not cut, f"the chip is cut at {width} px"
    # Opened, the event names each source's status in the same words.
    page.set_viewport_size({"width": 1280, "height": 844})
    page.locator("details.event-row[data-seq='1'] > summary").click()
    trail = page.locator("[data-testid='trail'][data-connection='Web']")
    expect(trail.get_by_test_id("trail-state")).to_have_text("Sending")
    expect(trail).to_contain_text("Will be sent as")
    expect(page.locator("[data-testid='trail'][data-connection='Mobile-unknown-key']").get_by_test_id(
        "trail-state")).to_have_text("Connected after this event")
    screenshot(page, "debugger-07-opened-waiting")


def test_the_rejected_events_page_says_the_rest_of_the_batch_was_stored_not_that_it_was_relayed(
        db: None, client: Client, alice_client: Client, alice: User, workspace: Workspace) -> None:
    paused, _ = connect(alice, workspace, "Warehouse")
    checked(paused)
    Connection.objects.filter(pk=paused.pk).update(paused_reason="Segment refused the write key (HTTP 401).")
    key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    ingest(client, key, {"batch": [{"type": "track", "event": "Signed Up", "userId": "user-1"},
                                   {"type": "track", "event": "Order Completed"}]})
    assert Event.objects.filter(workspace=workspace).count() == 1  # stored; the paused source has sent nothing
    page = page_text(alice_client.get(reverse("integrations:rejected_events", kwargs={"slug": workspace.slug})))
    assert "The other events of the same batch were stored, and are delivered to your Segment sources like any " \
           "other event." in page
    assert "relayed" not in page
