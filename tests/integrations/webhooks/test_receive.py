"""The receive path: what an endpoint stores and answers for good, retried and bad requests."""
from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from django.test import Client

from accounts.models import User, Workspace
from integrations.models import Event, ReceiptOutcome, SignatureVerdict, WebhookReceipt
from integrations.webhooks import receive
from integrations.webhooks.receive import message_id_for
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, post, send_signed, signed_headers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_receivers() -> Any:
    receive._receivers.clear()
    yield
    receive._receivers.clear()


def stored(workspace: Workspace) -> list[dict[str, Any]]:
    return [orjson.loads(bytes(e.body)) | {"messageId": e.message_id}
            for e in Event.objects.filter(workspace=workspace).order_by("seq")]


def test_a_signed_webhook_becomes_a_track_call_in_the_event_log(client: Client, alice: User,
                                                                 workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = send_signed(client, created, CHAT_STARTED, webhook_id="msg_1")
    assert response.status_code == 200, response.content
    expected_id = message_id_for(created.endpoint.public_id, "msg_1", 0)
    assert response.json() == {"success": True, "accepted": 1, "messageIds": [expected_id]}
    [event] = stored(workspace)
    assert event["type"] == "track" and event["event"] == "Conversation Started"
    assert event["userId"] == "user-42" and event["anonymousId"] == "vis_1"
    assert event["properties"] == {"conversation_id": "conv_1", "channel": "web"}
    assert event["messageId"] == expected_id
    assert event["context"]["tributary"]["webhook"] == {"endpoint": created.endpoint.pk, "name": "Chat assistant",
                                                        "webhookId": "msg_1"}
    receipt = WebhookReceipt.objects.get()
    assert (receipt.status, receipt.outcome, receipt.signature) == (200, ReceiptOutcome.ACCEPTED,
                                                                    SignatureVerdict.VERIFIED)
    assert receipt.message_ids == [expected_id] and orjson.loads(bytes(receipt.body)) == CHAT_STARTED


def test_a_retried_webhook_id_is_answered_200_and_stored_once(client: Client, alice: User,
                                                              workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    first = send_signed(client, created, CHAT_STARTED, webhook_id="msg_retry")
    # A sender's retry: the same id, signed again with a later timestamp.
    again = send_signed(client, created, CHAT_STARTED, webhook_id="msg_retry", timestamp=int(time.time()) + 5)
    assert first.status_code == again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["messageIds"] == first.json()["messageIds"]
    assert Event.objects.filter(workspace=workspace).count() == 1
    assert list(WebhookReceipt.objects.order_by("id").values_list("outcome", flat=True)) == [
        ReceiptOutcome.ACCEPTED, ReceiptOutcome.REPLAYED]


def test_an_exact_replay_of_a_signed_request_stores_nothing_again(client: Client, alice: User,
                                                                  workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps(CHAT_STARTED)
    headers = signed_headers(created.secret, body)
    assert post(client, created.endpoint.public_id, body, headers).status_code == 200
    replay = post(client, created.endpoint.public_id, body, headers)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert Event.objects.filter(workspace=workspace).count() == 1


def test_a_lead_becomes_an_identify_and_a_track_with_distinct_message_ids(client: Client, alice: User,
                                                                          workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    lead = {**CHAT_STARTED, "type": "lead.captured",
            "data": {**CHAT_STARTED["data"], "lead": {"email": "ann@example.com", "name": "Ann"}}}
    response = send_signed(client, created, lead, webhook_id="msg_lead")
    assert response.status_code == 200
    identify, track = stored(workspace)
    assert identify["type"] == "identify" and identify["traits"] == {"email": "ann@example.com", "name": "Ann"}
    assert track["type"] == "track" and track["event"] == "Lead Captured"
    assert [identify["messageId"], track["messageId"]] == [message_id_for(created.endpoint.public_id, "msg_lead", 0),
                                                           message_id_for(created.endpoint.public_id, "msg_lead", 1)]


@pytest.mark.parametrize(("change", "status", "error", "verdict"), [
    ({"webhook-signature": None}, 400, "missing_signature_headers", SignatureVerdict.MISSING),
    ({"webhook-id": None}, 400, "missing_signature_headers", SignatureVerdict.MISSING),
    ({"webhook-signature": "v1,bm90IHRoZSByaWdodCBzaWduYXR1cmU="}, 401, "invalid_signature", SignatureVerdict.INVALID),
    ({"webhook-signature": "v1"}, 401, "invalid_signature", SignatureVerdict.INVALID),
    ({"webhook-signature": "v1,***not base64***"}, 401, "invalid_signature", SignatureVerdict.INVALID),
    ({"webhook-timestamp": "yesterday"}, 400, "invalid_signature_headers", SignatureVerdict.MISSING),
    ({"webhook-timestamp": "1733.5"}, 400, "invalid_signature_headers", SignatureVerdict.MISSING),
    ({"webhook-id": "m" * 2000}, 400, "invalid_signature_headers", SignatureVerdict.MISSING),
])
def test_bad_signature_headers_are_refused_and_logged(client: Client, alice: User, workspace: Workspace,
                                                      change: dict[str, str | None], status: int, error: str,
                                                      verdict: SignatureVerdict) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps(CHAT_STARTED)
    headers = {k: v for k, v in {**signed_headers(created.secret, body), **change}.items() if v is not None}
    response = post(client, created.endpoint.public_id, body, headers)
    assert response.status_code == status and response.json()["error"] == error
    assert not Event.objects.exists()
    receipt = WebhookReceipt.objects.get()
    assert (receipt.status, receipt.outcome, receipt.signature) == (status, ReceiptOutcome.REFUSED, verdict)
    assert receipt.reason == response.json()["message"]


def test_a_timestamp_far_in_the_future_is_counted_exactly(client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps(CHAT_STARTED)
    far = 10**22
    response = post(client, created.endpoint.public_id, body,
                    signed_headers(created.secret, body) | {"webhook-timestamp": str(far)})
    assert response.status_code == 401 and response.json()["error"] == "timestamp_in_future"
    assert f"{far - int(time.time()):,}"[:8].replace(",", "") in response.json()["message"]


@pytest.mark.parametrize(("offset", "status", "verdict"), [
    (-290, 200, SignatureVerdict.VERIFIED), (-310, 401, SignatureVerdict.STALE),
    (290, 200, SignatureVerdict.VERIFIED), (310, 401, SignatureVerdict.FUTURE),
])
def test_timestamps_are_accepted_within_five_minutes_either_way(client: Client, alice: User, workspace: Workspace,
                                                                offset: int, status: int,
                                                                verdict: SignatureVerdict) -> None:
    created = make_endpoint(alice, workspace)
    response = send_signed(client, created, CHAT_STARTED, timestamp=int(time.time()) + offset)
    assert response.status_code == status
    assert WebhookReceipt.objects.get().signature == verdict
    assert Event.objects.count() == (1 if status == 200 else 0)


def test_a_body_that_is_not_json_is_a_400(client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = send_signed(client, created, b"type=conversation.started")
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
    assert not Event.objects.exists() and WebhookReceipt.objects.get().outcome == ReceiptOutcome.REFUSED


def test_a_one_megabyte_body_is_a_413_and_is_not_kept(client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps({**CHAT_STARTED, "padding": "x" * 1_000_000})
    response = post(client, created.endpoint.public_id, body, signed_headers(created.secret, body))
    assert response.status_code == 413 and response.json()["error"] == "body_too_large"
    receipt = WebhookReceipt.objects.get()
    assert receipt.body_size == len(body) and bytes(receipt.body) == b"" and not Event.objects.exists()


def test_a_payload_no_route_maps_is_a_422_with_the_reason(client: Client, alice: User,
                                                          workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = send_signed(client, created, {**CHAT_STARTED, "type": "conversation.closed"})
    assert response.status_code == 422 and response.json()["error"] == "no_route"
    assert "conversation.closed" in response.json()["message"]
    receipt = WebhookReceipt.objects.get()
    assert receipt.outcome == ReceiptOutcome.UNMAPPABLE and "conversation.closed" in receipt.reason


def test_an_expression_that_fails_on_the_payload_is_a_422(client: Client, alice: User,
                                                          workspace: Workspace) -> None:
    mapping = {"routes": [{"type": "track", "event": "Seen", "userId": {"from": "user"},
                           "properties": {"n": {"from": "length(count)"}}}]}
    created = make_endpoint(alice, workspace, mapping=mapping)
    response = send_signed(client, created, {"user": "u1", "count": 5})
    assert response.status_code == 422 and response.json()["error"] == "expression_failed"
    assert "length(count)" in response.json()["message"] and not Event.objects.exists()


def test_a_call_segment_would_refuse_is_a_422_naming_the_field(client: Client, alice: User,
                                                               workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    anonymous = {**CHAT_STARTED, "data": {"conversation": {"id": "c"}, "visitor": {}}}
    response = send_signed(client, created, anonymous)
    assert response.status_code == 422 and response.json()["error"] == "missing_user_or_anonymous_id"
    assert WebhookReceipt.objects.get().outcome == ReceiptOutcome.UNMAPPABLE


def test_a_refused_id_can_be_sent_again_once_the_mapping_takes_it(client: Client, alice: User,
                                                                  workspace: Workspace) -> None:
    from accounts.audit import Actor
    from integrations.webhooks import services

    created = make_endpoint(alice, workspace)
    closed = {**CHAT_STARTED, "type": "conversation.closed"}
    assert send_signed(client, created, closed, webhook_id="msg_later").status_code == 422
    mapping = {"routes": [*created.endpoint.mapping["routes"],
                          {"when": "type == 'conversation.closed'", "type": "track", "event": "Conversation Closed",
                           "userId": {"from": "data.visitor.user_id"}}]}
    services.endpoint_update(actor=Actor(user=alice), endpoint=created.endpoint, mapping=mapping)
    receive._receivers.clear()  # as another process sees it within RECEIVER_SECONDS
    assert send_signed(client, created, closed, webhook_id="msg_later").status_code == 200
    assert Event.objects.get().name == "Conversation Closed"


def test_ignored_payloads_are_answered_2xx_and_store_nothing(client: Client, alice: User,
                                                             workspace: Workspace) -> None:
    mapping = {"routes": [{"when": "kind == 'signup'", "type": "track", "event": "Signed Up",
                           "userId": {"from": "user"}}], "unmatched": "ignore"}
    created = make_endpoint(alice, workspace, mapping=mapping)
    response = send_signed(client, created, {"kind": "ping"})
    assert response.status_code == 200 and response.json()["ignored"] is True
    assert not Event.objects.exists() and WebhookReceipt.objects.get().outcome == ReceiptOutcome.IGNORED


def test_an_unknown_endpoint_is_a_404_and_a_get_a_405(client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    assert post(client, "wh_nosuchendpoint", CHAT_STARTED).status_code == 404
    # The unsigned shape of a signed endpoint's URL is not a way in.
    assert post(client, created.endpoint.public_id, CHAT_STARTED, token="guess").status_code == 404
    assert client.get(f"/webhooks/in/{created.endpoint.public_id}").status_code == 405
    assert not WebhookReceipt.objects.exists()


def test_a_disabled_endpoint_answers_403_and_stores_nothing(client: Client, alice: User,
                                                            workspace: Workspace) -> None:
    from accounts.audit import Actor
    from integrations.webhooks import services

    created = make_endpoint(alice, workspace)
    services.endpoint_set_enabled(actor=Actor(user=alice), endpoint=created.endpoint, enabled=False)
    response = send_signed(client, created, CHAT_STARTED)
    assert response.status_code == 403 and not Event.objects.exists()


def test_unsigned_endpoints_take_the_token_in_the_url_and_dedupe_by_idempotency_key(
        client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace, mode="url_token")
    public_id = created.endpoint.public_id
    wrong = post(client, public_id, CHAT_STARTED, token="not-the-token")
    assert wrong.status_code == 401 and WebhookReceipt.objects.get().signature == SignatureVerdict.BAD_TOKEN
    first = post(client, public_id, CHAT_STARTED, {"Idempotency-Key": "k1"}, token=created.url_token)
    again = post(client, public_id, CHAT_STARTED, {"Idempotency-Key": "k1"}, token=created.url_token)
    other = post(client, public_id, CHAT_STARTED, {"Idempotency-Key": "k2"}, token=created.url_token)
    assert first.status_code == again.status_code == other.status_code == 200
    assert again.json()["duplicate"] is True and Event.objects.count() == 2
    # Without any id header an identical body counts as a retry.
    post(client, public_id, {**CHAT_STARTED, "id": "evt_9"}, token=created.url_token)
    post(client, public_id, {**CHAT_STARTED, "id": "evt_9"}, token=created.url_token)
    assert Event.objects.count() == 3


@pytest.mark.django_db(transaction=True)  # the receipt's foreign key is checked when its transaction commits
def test_an_endpoint_deleted_while_remembered_answers_404(client: Client, alice: User, workspace: Workspace) -> None:
    from accounts.audit import Actor
    from integrations.webhooks import services

    created = make_endpoint(alice, workspace)
    assert send_signed(client, created, CHAT_STARTED).status_code == 200  # now remembered by this process
    # Deleted by another process: this one still has it for a few seconds.
    remembered = dict(receive._receivers)
    services.endpoint_delete(actor=Actor(user=alice), endpoint=created.endpoint)
    receive._receivers.update(remembered)
    for body in (CHAT_STARTED, b"not json"):
        assert send_signed(client, created, body).status_code == 404
    assert not WebhookReceipt.objects.exists() and Event.objects.count() == 1


def test_a_signed_body_that_is_not_utf8_is_refused_as_such(client: Client, alice: User,
                                                             workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = b'{"type": "conversation.started", "x": "\xff"}'
    headers = signed_headers(created.secret, b"{}")
    response = post(client, created.endpoint.public_id, body, headers)
    # Told what is wrong with the body, not sent looking at the secret.
    assert response.status_code == 400 and response.json()["error"] == "invalid_body"
    assert response.json()["message"].startswith("The body is not UTF-8 (at byte offset 39)")
    assert WebhookReceipt.objects.get().signature == SignatureVerdict.INVALID


def test_the_inbound_log_keeps_seven_days(client: Client, alice: User, workspace: Workspace, settings: Any) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from integrations.webhooks.services import webhook_receipts_trim

    created = make_endpoint(alice, workspace)
    send_signed(client, created, CHAT_STARTED, webhook_id="old")
    send_signed(client, created, CHAT_STARTED, webhook_id="new")
    WebhookReceipt.objects.filter(webhook_id="old").update(received_at=timezone.now() - timedelta(days=7, minutes=1))
    assert webhook_receipts_trim() == 1
    assert list(WebhookReceipt.objects.values_list("webhook_id", flat=True)) == ["new"]
    settings.WEBHOOK_LOG_RETENTION_DAYS = 0  # never below a day: seen ids must outlive senders' retries
    assert webhook_receipts_trim() == 0


def test_a_flood_of_refused_requests_is_answered_but_only_partly_recorded(
        client: Client, alice: User, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import itertools

    hits = itertools.count(1)  # all within one second
    monkeypatch.setattr(receive, "hits_this_second", lambda name: next(hits))
    monkeypatch.setattr(receive, "REFUSALS_RECORDED_PER_SECOND", 3)
    created = make_endpoint(alice, workspace)
    for _ in range(6):
        response = post(client, created.endpoint.public_id, CHAT_STARTED, {"webhook-id": "x"})
        assert response.status_code == 400 and response.json()["error"] == "missing_signature_headers"
    assert WebhookReceipt.objects.count() == 3
    # Accepted requests are always recorded: they are the record of seen ids.
    assert send_signed(client, created, CHAT_STARTED).status_code == 200
    assert WebhookReceipt.objects.filter(outcome=ReceiptOutcome.ACCEPTED).count() == 1


def test_the_hourly_retention_task_trims_the_inbound_log(client: Client, alice: User, workspace: Workspace) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from integrations.tasks import relay_retention

    created = make_endpoint(alice, workspace)
    send_signed(client, created, CHAT_STARTED, webhook_id="old")
    WebhookReceipt.objects.update(received_at=timezone.now() - timedelta(days=8))
    relay_retention()
    assert not WebhookReceipt.objects.exists()


def test_the_tracking_plan_applies_to_webhooks_as_to_every_way_in(client: Client, alice: User,
                                                                  workspace: Workspace) -> None:
    from accounts.audit import Actor
    from integrations.models import BlockedEvent
    from integrations.tracking_plans import services as plans

    actor = Actor(user=alice)
    plans.plan_rule_put(actor=actor, workspace=workspace, rule=plans.simple_rule(
        kind="TRACK", key="Conversation Started", required=["conversation_id"], types={}))
    plans.plan_enforcement_save(actor=actor, workspace=workspace, enabled=True, unplanned_events="block",
                                unplanned_properties="allow", on_violation="block", forward_violations_to=None)
    created = make_endpoint(alice, workspace)
    assert send_signed(client, created, CHAT_STARTED).json()["accepted"] == 1
    handoff = {**CHAT_STARTED, "type": "handoff.requested"}
    response = send_signed(client, created, handoff, webhook_id="msg_unplanned")
    assert response.status_code == 200 and response.json()["accepted"] == 0
    assert response.json()["blocked"][0]["event"] == "Handoff Requested"
    assert list(Event.objects.values_list("name", flat=True)) == ["Conversation Started"]
    assert BlockedEvent.objects.get().message_id == response.json()["messageIds"][0]
    receipt = WebhookReceipt.objects.get(webhook_id="msg_unplanned")
    assert receipt.outcome == ReceiptOutcome.ACCEPTED and receipt.reason.startswith("1 of 1 call blocked")
    # Blocked is a verdict, not a failure: the sender's retry is a duplicate.
    assert send_signed(client, created, handoff, webhook_id="msg_unplanned").json()["duplicate"] is True
