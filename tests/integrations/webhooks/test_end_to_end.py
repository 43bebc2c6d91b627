"""A signed webhook all the way to Segment (the emulator), delivered by a real Celery worker,
and its sender's retries never duplicated there."""
from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client

from accounts.models import User, Workspace
from integrations.webhooks import receive
from tests.integrations.relay.processes import arrived, emulator_connection, wait_for
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, send_signed

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_signed_webhook_reaches_segment_once_however_often_it_is_retried(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    receive._receivers.clear()
    key = emulator_connection(segment, alice, workspace, checked=True)[1]
    created = make_endpoint(alice, workspace)
    client = Client()
    lead = {**CHAT_STARTED, "type": "lead.captured",
            "data": {**CHAT_STARTED["data"], "lead": {"email": "ann@example.com"}}}
    assert send_signed(client, created, CHAT_STARTED, webhook_id="msg_a").status_code == 200
    assert send_signed(client, created, lead, webhook_id="msg_b").status_code == 200
    wait_for(lambda: len(arrived(segment, key)) == 3, 20, "the first two webhooks' three events delivered")
    # The sender did not see the answers and sends all again, freshly signed.
    for body, webhook_id in ((CHAT_STARTED, "msg_a"), (lead, "msg_b")):
        again = send_signed(client, created, body, webhook_id=webhook_id, timestamp=int(time.time()) + 2)
        assert again.status_code == 200 and again.json()["duplicate"] is True
    # A new webhook after the retries: delivery keeps log order, so once it has arrived any
    # retry wrongly stored before it would have arrived too.
    handoff = {**CHAT_STARTED, "type": "handoff.requested", "data": {**CHAT_STARTED["data"], "handoff": {}}}
    assert send_signed(client, created, handoff, webhook_id="msg_c").status_code == 200
    wait_for(lambda: any(e.get("event") == "Handoff Requested" for e in arrived(segment, key)), 20,
             "the webhook after the retries delivered")
    events = arrived(segment, key)
    assert [(e["type"], e.get("event")) for e in events] == [
        ("track", "Conversation Started"), ("identify", None), ("track", "Lead Captured"),
        ("track", "Handoff Requested")]
    assert len({e["messageId"] for e in events}) == 4
    assert events[0]["userId"] == "user-42" and events[1]["traits"] == {"email": "ann@example.com"}
    assert events[0]["context"]["tributary"]["webhook"]["name"] == "Chat assistant"
