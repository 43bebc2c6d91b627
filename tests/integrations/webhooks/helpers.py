"""Sending webhooks to an endpoint in tests, signed as a Standard Webhooks sender signs."""
from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from django.test import Client
from django.test.client import Client as TestClient
from django.urls import reverse
from standardwebhooks.webhooks import Webhook

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.webhooks import services
from integrations.webhooks.services import Created

CHAT_STARTED: dict[str, Any] = {
    "type": "conversation.started", "id": "evt_1", "created_at": "2026-12-02T10:15:00Z",
    "data": {"conversation": {"id": "conv_1", "channel": "web"}, "visitor": {"id": "vis_1", "user_id": "user-42"}},
}


def make_endpoint(alice: User, workspace: Workspace, *, name: str = "Chat assistant", mode: str = "signed",
                  preset: str = "chat_assistant", mapping: dict[str, Any] | None = None) -> Created:
    return services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name=name, mode=mode,
                                    preset=preset, mapping=mapping)


def signed_headers(secret: str, body: bytes, *, webhook_id: str | None = None,
                   timestamp: int | None = None) -> dict[str, str]:
    """Headers as the reference library's signer makes them."""
    webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def post(client: Client | TestClient, endpoint_public_id: str, body: bytes | dict[str, Any],
         headers: dict[str, str] | None = None, token: str | None = None) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    if token is None:
        url = reverse("webhook_receive", kwargs={"public_id": endpoint_public_id})
    else:
        url = reverse("webhook_receive_token", kwargs={"public_id": endpoint_public_id, "token": token})
    return client.post(url, data=raw, content_type="application/json", headers=headers or {})


def send_signed(client: Client, created: Created, body: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return post(client, created.endpoint.public_id, raw, signed_headers(created.secret, raw, **kwargs))
