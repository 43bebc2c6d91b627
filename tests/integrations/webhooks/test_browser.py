"""Settings → Webhooks in headless Chromium: an owner creates a signed endpoint, copies its
secret, tries the mapping on samples in the test console, saves a change, then sends a
signed webhook with the page's own snippet values and watches it arrive in the inbound log.

Screenshots land in artifacts/ for people to look at."""
from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
import requests
from playwright.sync_api import expect

from accounts.models import User
from integrations.models import Event, WebhookEndpoint
from integrations.webhooks import receive
from tests.conftest import both_sizes, sign_in
from tests.integrations.webhooks.helpers import CHAT_STARTED, signed_headers

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

def test_an_owner_creates_an_endpoint_tries_its_mapping_and_sees_a_webhook_arrive(
        page: Any, alice: User, live_server: Any) -> None:
    receive._receivers.clear()
    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="Webhooks").click()
    expect(page.get_by_role("heading", name="Webhooks", exact=True)).to_be_visible()
    expect(page.get_by_text("Weaker", exact=True).first).to_be_visible()
    both_sizes(page, "webhooks-01-empty")

    page.get_by_label("Name").fill("Chat assistant")
    page.get_by_role("button", name="Create endpoint").click()
    secret = page.get_by_test_id("webhook-secret-value").inner_text().strip()
    assert secret.startswith("whsec_")
    expect(page.get_by_test_id("webhook-secret")).to_contain_text("This is the only time it is shown")
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret() == secret
    expect(page.get_by_test_id("webhook-url")).to_contain_text(f"/webhooks/in/{endpoint.public_id}")
    both_sizes(page, "webhooks-02-created")

    # A reload neither shows the secret again nor posts the form again.
    page.reload()
    expect(page.get_by_test_id("webhook-secret-gone")).to_contain_text("is not shown again")
    expect(page.get_by_test_id("webhook-secret")).to_have_count(0)
    assert secret not in page.content() and WebhookEndpoint.objects.count() == 1
    page.goto(f"{live_server.url}/w/{endpoint.workspace.slug}/settings/webhooks/{endpoint.pk}/")

    # The test console: the preset's sample becomes a Track call.
    page.get_by_test_id("console-try").click()
    result = page.get_by_test_id("console-result")
    expect(result).to_contain_text("1 Segment call")
    expect(result.get_by_test_id("console-call")).to_contain_text('"event": "Conversation Started"')
    both_sizes(page, "webhooks-03-console")

    # A type no route takes is refused with the reason, before anything is saved.
    sample = page.get_by_label("Sample payload")
    sample.fill(orjson.dumps({**CHAT_STARTED, "type": "conversation.closed"}).decode())
    page.get_by_test_id("console-try").click()
    expect(result).to_contain_text("would be refused")
    expect(result).to_contain_text("conversation.closed")

    # Another preset fills the editor; the generic one takes any payload.
    page.get_by_role("button", name="Whole payload as properties").click()
    expect(page.get_by_label("Mapping (JSON)")).to_have_value(re.compile("Webhook Received"))
    page.get_by_test_id("console-try").click()
    expect(result.get_by_test_id("console-call")).to_contain_text('"event": "invoice.paid"')
    page.get_by_role("button", name="Save mapping").click()
    expect(page.get_by_text("Mapping saved")).to_be_visible()
    endpoint.refresh_from_db()
    assert endpoint.mapping["routes"][0]["properties"] == {"from": "@"}
    assert secret not in page.content()  # shown once: gone after the redirect

    # A signed webhook sent to the URL shows up in the live inbound log, and in the event log.
    receive._receivers.clear()
    body = orjson.dumps({"type": "invoice.paid", "user_id": "user-7", "amount": 4900})
    answer = requests.post(f"{live_server.url}/webhooks/in/{endpoint.public_id}", data=body, timeout=10,
                           headers={**signed_headers(secret, body, webhook_id="msg_browser"),
                                    "content-type": "application/json"})
    assert answer.status_code == 200, answer.text
    row = page.get_by_test_id("webhook-receipts").locator("tr", has_text="msg_browser")
    expect(row).to_contain_text("Verified")
    expect(row).to_contain_text("Stored")
    assert Event.objects.get().name == "invoice.paid"
    row.get_by_role("button", name="View").click()
    expect(page.get_by_test_id("receipt-detail")).to_contain_text('"amount": 4900')
    both_sizes(page, "webhooks-04-inbound")

    # Rotating with an overlap: the new secret once; a reload rotates nothing, and both the
    # original secret (the sender's) and the new one still get in.
    page.get_by_label("Keep the old secret working for").select_option("24")
    page.get_by_role("button", name="Rotate secret").click()
    new = page.get_by_test_id("webhook-secret-value").inner_text().strip()
    expect(page.get_by_test_id("webhook-secret")).to_contain_text("The old secret keeps working until")
    page.reload()
    expect(page.get_by_test_id("webhook-secret-gone")).to_be_visible()
    assert new not in page.content()
    endpoint.refresh_from_db()
    assert endpoint.secret() == new and endpoint.previous_secret() == secret
    receive._receivers.clear()
    for signing, webhook_id in ((secret, "msg_original"), (new, "msg_new")):
        answer = requests.post(f"{live_server.url}/webhooks/in/{endpoint.public_id}", data=body, timeout=10,
                               headers={**signed_headers(signing, body, webhook_id=webhook_id),
                                        "content-type": "application/json"})
        assert answer.status_code == 200, answer.text
    # Rotating again during that overlap is refused, saying why, until confirmed.
    page.get_by_role("button", name="Rotate secret").click()
    expect(page.get_by_text("and the sender may still sign with it")).to_be_visible()
    endpoint.refresh_from_db()
    assert endpoint.secret() == new
    both_sizes(page, "webhooks-05-rotate-refused")

    # Deleting asks first, then the endpoint and its URL are gone.
    page.get_by_text("Delete endpoint…").click()
    page.get_by_role("button", name="Delete “Chat assistant”").click()
    expect(page.get_by_text("“Chat assistant” deleted")).to_be_visible()
    assert not WebhookEndpoint.objects.exists()
    gone = requests.post(f"{live_server.url}/webhooks/in/{endpoint.public_id}", data=body, timeout=10,
                         headers={**signed_headers(secret, body), "content-type": "application/json"})
    assert gone.status_code == 404
