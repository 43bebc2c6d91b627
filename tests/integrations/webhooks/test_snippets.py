"""The page's "send a signed sample" snippets work as shown: curl with openssl and Python with
the Standard Webhooks library, copied from the page right after the endpoint was created."""
from __future__ import annotations

import html
import re
import subprocess
import sys
from typing import Any

import orjson
import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import Workspace
from integrations.models import Event, ReceiptOutcome, SignatureVerdict, WebhookReceipt
from integrations.webhooks import receive

pytestmark = pytest.mark.django_db(transaction=True)


def snippets(page: str) -> list[str]:
    block = page.split('data-testid="webhook-snippets"', 1)[1].split("</details>", 1)[0]
    return [html.unescape(code) for code in re.findall(r"<pre class=\"code-block\"><code>(.*?)</code></pre>", block,
                                                        re.S)]


def test_the_curl_and_python_snippets_send_a_signed_sample_that_is_stored(
        alice_client: Client, workspace: Workspace, live_server: Any, settings: Any) -> None:
    settings.SITE_URL = live_server.url
    receive._receivers.clear()
    page = alice_client.post(reverse("integrations:webhook_create", kwargs={"slug": workspace.slug}),
                             {"name": "Chat assistant", "mode": "signed", "preset": "chat_assistant"},
                             follow=True).content.decode()
    curl, python = snippets(page)
    assert "whsec_…" not in curl and "whsec_…" not in python  # the real secret, this once
    done = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and orjson.loads(done.stdout)["accepted"] == 1, done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0 and "'accepted': 1" in done.stdout, done.stdout + done.stderr
    assert list(WebhookReceipt.objects.values_list("outcome", "signature")) == [
        (ReceiptOutcome.ACCEPTED, SignatureVerdict.VERIFIED)] * 2
    assert [e.name for e in Event.objects.order_by("seq")] == ["Conversation Started"] * 2
