"""Settings → Webhooks through the views: who may do what, the secret shown once, the test
console, the mapping editor and the inbound log."""
from __future__ import annotations

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations.models import WebhookEndpoint
from integrations.webhooks import receive, services
from integrations.webhooks.services import Created
from integrations.webhooks.verification import url_token_matches
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, send_signed

pytestmark = pytest.mark.django_db


def url(name: str, workspace: Workspace, **kwargs: object) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


def test_creating_an_endpoint_shows_its_secret_once_after_a_redirect(alice_client: Client,
                                                                     workspace: Workspace) -> None:
    response = alice_client.post(url("webhook_create", workspace),
                                 {"name": "Chat assistant", "mode": "signed", "preset": "chat_assistant"})
    endpoint = WebhookEndpoint.objects.get(workspace=workspace)
    secret = endpoint.secret()
    assert response.status_code == 302 and response["Location"] == url("webhook_secret", workspace, pk=endpoint.pk)
    assert secret not in response["Location"] and secret not in response.content.decode()
    # Between the two requests the session holds it encrypted only.
    assert secret not in str(dict(alice_client.session)) and secret not in str(alice_client.cookies)
    shown = alice_client.get(response["Location"])
    assert shown.status_code == 200 and secret.startswith("whsec_") and secret in shown.content.decode()
    assert "no-cache" in shown["Cache-Control"] or "max-age=0" in shown["Cache-Control"]
    assert "shown_once" not in alice_client.session
    # A reload of that page: the endpoint's page, the secret not again, and why.
    reloaded = alice_client.get(response["Location"]).content.decode()
    assert secret not in reloaded and f"whsec_…{secret[-4:]}" in reloaded and "is not shown again" in reloaded
    again = alice_client.get(url("webhook", workspace, pk=endpoint.pk)).content.decode()
    assert secret not in again and f"whsec_…{secret[-4:]}" in again
    assert endpoint.public_id in again
    assert WebhookEndpoint.objects.count() == 1
    audit = AuditEvent.objects.get(action=AuditAction.WEBHOOK_CREATED)
    assert secret not in orjson.dumps(audit.details).decode()


def test_opening_the_create_and_rotate_addresses_leads_to_their_pages(alice_client: Client, alice: User,
                                                                     workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = alice_client.get(url("webhook_create", workspace))
    assert response.status_code == 302 and response["Location"] == url("webhooks", workspace)
    response = alice_client.get(url("webhook_rotate", workspace, pk=created.endpoint.pk))
    assert response.status_code == 302 and response["Location"] == url("webhook", workspace, pk=created.endpoint.pk)
    assert WebhookEndpoint.objects.get().secret() == created.secret


def test_a_secret_replaced_before_its_page_opened_is_not_shown(alice_client: Client, alice: User,
                                                               workspace: Workspace) -> None:
    response = alice_client.post(url("webhook_create", workspace), {"name": "Chat", "mode": "signed",
                                                                    "preset": "generic"})
    endpoint = WebhookEndpoint.objects.get()
    first = endpoint.secret()
    services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=endpoint, overlap_hours=0)
    page = alice_client.get(response["Location"]).content.decode()
    assert first not in page and "is not shown again" in page


def test_a_duplicate_name_is_refused_with_the_reason(alice_client: Client, alice: User, workspace: Workspace) -> None:
    make_endpoint(alice, workspace, name="Chat")
    response = alice_client.post(url("webhook_create", workspace), {"name": "chat", "mode": "signed",
                                                                    "preset": "generic"})
    assert response.status_code == 422 and "already called" in response.content.decode()


def test_an_unsigned_endpoint_shows_its_url_with_the_token_once_and_says_it_is_weaker(
        alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("webhook_create", workspace), {"name": "Forms", "mode": "url_token",
                                                                    "preset": "generic"}, follow=True)
    page = response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert "Weaker than a signature" in page and f"/webhooks/in/{endpoint.public_id}/" in page
    assert "/TOKEN" not in page
    token = page.split(f"/webhooks/in/{endpoint.public_id}/")[1].split("<")[0]
    assert token not in str(dict(alice_client.session))
    reloaded = alice_client.get(response.redirect_chain[-1][0]).content.decode()
    assert token not in reloaded and "/TOKEN" in reloaded and "The new URL is not shown again" in reloaded
    assert "/TOKEN" in alice_client.get(url("webhook", workspace, pk=endpoint.pk)).content.decode()


def test_replacing_a_url_token_shows_the_new_url_once_and_a_reload_replaces_nothing(
        alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace, mode="url_token", preset="generic")
    response = alice_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk), {"overlap_hours": 0})
    assert response.status_code == 302
    hashed = WebhookEndpoint.objects.get().url_token_hash
    page = alice_client.get(response["Location"]).content.decode()
    token = page.split(f"/webhooks/in/{created.endpoint.public_id}/")[1].split("<")[0]
    assert token != "TOKEN" and url_token_matches(token, hashed)
    reloaded = alice_client.get(response["Location"]).content.decode()
    assert token not in reloaded and WebhookEndpoint.objects.get().url_token_hash == hashed


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


def test_rotating_shows_the_new_secret_once_and_a_reload_does_not_rotate_again(
        client: Client, alice_client: Client, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    response = alice_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk), {"overlap_hours": 24})
    assert response.status_code == 302 and response["Location"] == url("webhook_secret", workspace,
                                                                       pk=created.endpoint.pk)
    endpoint = WebhookEndpoint.objects.get()
    new = endpoint.secret()
    shown = alice_client.get(response["Location"]).content.decode()
    assert new in shown and endpoint.previous_secret() == created.secret
    assert "keeps working until" in shown
    reloaded = alice_client.get(response["Location"]).content.decode()
    assert new not in reloaded and "is not shown again" in reloaded and "keeps working until" not in reloaded
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret() == new and endpoint.previous_secret() == created.secret
    assert AuditEvent.objects.filter(action=AuditAction.WEBHOOK_SECRET_ROTATED).count() == 1
    # The sender still on the original secret and one already on the new one both get in.
    receive._receivers.clear()
    assert send_signed(client, created, CHAT_STARTED).status_code == 200
    assert send_signed(client, Created(endpoint, secret=new), CHAT_STARTED).status_code == 200


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
    response = alice_client.post(url("webhook_rotate", workspace, pk=created.endpoint.pk), {"overlap_hours": 0},
                                 follow=True)
    assert "The old secret no longer works." in response.content.decode()
    assert "keeps working until" not in response.content.decode()
