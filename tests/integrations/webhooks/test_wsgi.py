"""Webhooks on the lean path: POST /webhooks/in/… answered in front of Django's middleware by
the application config.wsgi serves, like the ingest API."""
from __future__ import annotations

from typing import Any

import orjson
import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory

from accounts.models import User, Workspace
from integrations.ingest import api
from integrations.models import Event, WebhookReceipt
from integrations.webhooks import receive, views
from tests.integrations.test_ingest_wsgi import Answer, Middleware
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, signed_headers

pytestmark = pytest.mark.django_db


@pytest.fixture
def app(settings: Any) -> Any:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.integrations.test_ingest_wsgi.Middleware"]
    Middleware.seen = []
    receive._receivers.clear()
    return views.wsgi_application(api.wsgi_application(WSGIHandler()), api.serve)


def environ(path: str, body: bytes, headers: dict[str, str] | None = None, method: str = "post") -> dict[str, Any]:
    if method == "get":
        return RequestFactory().get(path, headers=headers).environ
    return RequestFactory().post(path, data=body, content_type="application/json", headers=headers).environ


def test_a_signed_webhook_is_stored_without_the_middleware(app: Any, alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps(CHAT_STARTED)
    path = f"/webhooks/in/{created.endpoint.public_id}"
    answer = Answer(app, environ(path, body, signed_headers(created.secret, body, webhook_id="msg_lean")))
    assert answer.code == 200 and answer.json()["accepted"] == 1
    assert answer.headers["Content-Length"] == str(len(answer.body))
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert Middleware.seen == [] and Event.objects.get().name == "Conversation Started"
    refused = Answer(app, environ(path, body, {"webhook-id": "x"}))
    assert refused.code == 400 and WebhookReceipt.objects.count() == 2 and Middleware.seen == []


def test_the_unsigned_shape_and_everything_else_keep_their_routes(app: Any, alice: User,
                                                                  workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace, mode="url_token")
    path = f"/webhooks/in/{created.endpoint.public_id}/{created.url_token}"
    assert Answer(app, environ(path, orjson.dumps(CHAT_STARTED))).code == 200
    assert Middleware.seen == []
    assert Answer(app, environ(path, b"", method="get")).code == 405  # through Django
    assert Answer(app, environ(f"{path}/more", b"{}")).code == 404  # not a receive URL: Django's 404
    assert Middleware.seen == [path, f"{path}/more"]
