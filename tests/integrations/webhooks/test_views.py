"""Settings → Webhooks through the views: who may do what, the secret shown once, the test
console, the mapping editor and the inbound log."""
from __future__ import annotations

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations.models import WebhookEndpoint
from integrations.webhooks import receive
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, send_signed

pytestmark = pytest.mark.django_db


def url(name: str, workspace: Workspace, **kwargs: object) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


def test_creating_an_endpoint_shows_its_secret_once(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("webhook_create", workspace),
                                 {"name": "Chat assistant", "mode": "signed", "preset": "chat_assistant"})
    assert response.status_code == 200
    endpoint = WebhookEndpoint.objects.get(workspace=workspace)
    secret = endpoint.secret()
    assert secret.startswith("whsec_") and secret in response.content.decode()
    assert response["Cache-Control"].startswith("max-age=0") or "no-cache" in response["Cache-Control"]
    again = alice_client.get(url("webhook", workspace, pk=endpoint.pk)).content.decode()
    assert secret not in again and f"whsec_…{secret[-4:]}" in again
    assert endpoint.public_id in again
    audit = AuditEvent.objects.get(action=AuditAction.WEBHOOK_CREATED)
    assert secret not in orjson.dumps(audit.details).decode()


def test_a_duplicate_name_is_refused_with_the_reason(alice_client: Client, alice: User, workspace: Workspace) -> None:
    make_endpoint(alice, workspace, name="Chat")
    response = alice_client.post(url("webhook_create", workspace), {"name": "chat", "mode": "signed",
                                                                    "preset": "generic"})
    assert response.status_code == 422 and "already called" in response.content.decode()


def test_an_unsigned_endpoint_shows_its_url_with_the_token_once_and_says_it_is_weaker(
        alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("webhook_create", workspace), {"name": "Forms", "mode": "url_token",
                                                                    "preset": "generic"})
    page = response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert "Weaker than a signature" in page and f"/webhooks/in/{endpoint.public_id}/" in page
    assert "/TOKEN" not in page
    assert "/TOKEN" in alice_client.get(url("webhook", workspace, pk=endpoint.pk)).content.decode()


def test_members_see_endpoints_but_only_owners_and_admins_change_them(bob_client: Client, alice: User,
                                                                      workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    assert bob_client.get(url("webhooks", workspace)).status_code == 200
    page = bob_client.get(url("webhook", workspace, pk=created.endpoint.pk)).content.decode()
    assert "Rotate the secret" not in page
    assert bob_client.post(url("webhook_create", workspace), {"name": "X", "mode": "signed",
                                                             "preset": "generic"}).status_code == 403
    assert bob_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk),
                           {"overlap_hours": 0}).status_code == 403
    assert bob_client.post(url("webhook_delete", workspace, pk=created.endpoint.pk)).status_code == 403
    assert WebhookEndpoint.objects.filter(pk=created.endpoint.pk).exists()


def test_an_outsider_gets_404_on_every_webhook_page(charlie_client: Client, alice: User,
                                                     workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    pk = created.endpoint.pk
    for name in ("webhook", "webhook_receipts", "webhook_preset"):
        assert charlie_client.get(url(name, workspace, pk=pk)).status_code == 404
    for name in ("webhook_mapping", "webhook_console", "webhook_rotate", "webhook_enabled", "webhook_delete"):
        assert charlie_client.post(url(name, workspace, pk=pk)).status_code == 404
    assert WebhookEndpoint.objects.filter(pk=pk, enabled=True).exists()


def test_the_console_shows_what_a_sample_becomes_without_saving(alice_client: Client, alice: User,
                                                                workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    mapping = orjson.dumps(created.endpoint.mapping).decode()
    shown = alice_client.post(url("webhook_console", workspace, pk=created.endpoint.pk),
                              {"mapping": mapping, "sample": orjson.dumps(CHAT_STARTED).decode()}).content.decode()
    assert "Conversation Started" in shown and "conv_1" in shown and "1 Segment call" in shown
    refused = alice_client.post(url("webhook_console", workspace, pk=created.endpoint.pk),
                                {"mapping": mapping, "sample": '{"type": "nope"}'}).content.decode()
    assert "would be refused" in refused and "no_route" in refused
    bad = alice_client.post(url("webhook_console", workspace, pk=created.endpoint.pk),
                            {"mapping": '{"routes": [{"type": "track", "when": "=="}]}', "sample": "{}"})
    assert "routes[0].when" in bad.content.decode()
    assert WebhookEndpoint.objects.get().mapping == created.endpoint.mapping


def test_saving_a_mapping_checks_it_first(alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    target = url("webhook_mapping", workspace, pk=created.endpoint.pk)
    refused = alice_client.post(target, {"mapping": '{"routes": [{"type": "buy"}]}'})
    assert refused.status_code == 422 and "Unknown call" in refused.content.decode()
    mapping = {"routes": [{"type": "track", "event": "Ping", "userId": {"from": "user"}}]}
    assert alice_client.post(target, {"mapping": orjson.dumps(mapping).decode()}).status_code == 302
    assert WebhookEndpoint.objects.get().mapping == mapping


def test_the_inbound_log_lists_new_requests_and_opens_their_payload(client: Client, alice_client: Client,
                                                                    alice: User, workspace: Workspace) -> None:
    receive._receivers.clear()
    created = make_endpoint(alice, workspace)
    pk = created.endpoint.pk
    assert alice_client.get(url("webhook_receipts", workspace, pk=pk), {"after": 0}).status_code == 204
    send_signed(client, created, CHAT_STARTED, webhook_id="msg_logged")
    rows = alice_client.get(url("webhook_receipts", workspace, pk=pk), {"after": 0})
    assert rows.status_code == 200 and "msg_logged" in rows.content.decode() and "Verified" in rows.content.decode()
    receipt = created.endpoint.receipts.get()
    debugger = reverse("integrations:debugger", kwargs={"slug": workspace.slug})
    assert f"{debugger}?field=message_id&amp;q={receipt.message_ids[0]}" in rows.content.decode()
    receipt_id = receipt.pk
    assert alice_client.get(url("webhook_receipts", workspace, pk=pk), {"after": receipt_id}).status_code == 204
    opened = alice_client.get(url("webhook_receipt", workspace, pk=pk), {"receipt": receipt_id}).content.decode()
    assert "conversation.started" in opened and "conv_1" in opened


def test_rotating_shows_the_new_secret_once(alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = alice_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk), {"overlap_hours": 24})
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret() in response.content.decode() and endpoint.previous_secret() == created.secret
    assert "keeps working until" in response.content.decode()


def test_the_debugger_says_which_webhook_an_event_came_through(client: Client, alice_client: Client, alice: User,
                                                               workspace: Workspace) -> None:
    receive._receivers.clear()
    created = make_endpoint(alice, workspace)
    send_signed(client, created, CHAT_STARTED, webhook_id="msg_debugged")
    opened = alice_client.get(reverse("integrations:debugger_event", kwargs={"slug": workspace.slug}), {"seq": 1})
    page = opened.content.decode()
    assert opened.status_code == 200 and 'data-testid="event-via-webhook"' in page
    assert "Chat assistant" in page and "msg_debugged" in page
    assert url("webhook", workspace, pk=created.endpoint.pk) in page


def test_rotating_again_during_an_overlap_is_refused_with_the_reason_until_confirmed(
        alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    target = url("webhook_rotate", workspace, pk=created.endpoint.pk)
    alice_client.post(target, {"overlap_hours": 24})
    first = WebhookEndpoint.objects.get().secret()
    refused = alice_client.post(target, {"overlap_hours": 24})
    page = refused.content.decode()
    assert refused.status_code == 422 and "still accepted until" in page
    assert "Stop the secret before the current one now" in page and "keeps working until" not in page
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret() == first and endpoint.previous_secret() == created.secret
    alice_client.post(target, {"overlap_hours": 0, "end_running_overlap": "on"})
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret() not in (first, created.secret) and endpoint.previous_secret() is None


def test_a_rotation_without_overlap_says_the_old_secret_no_longer_works(
        alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = alice_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk), {"overlap_hours": 0})
    assert "The old secret no longer works." in response.content.decode()
    assert "keeps working until" not in response.content.decode()
