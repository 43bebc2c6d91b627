"""Storing an accepted webhook in one statement: the receipt and the events together or not at
all, once per webhook id however requests race, in the log's order."""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from django.db import DataError, connection
from django.test import Client
from django.utils import timezone

from accounts.models import User, Workspace
from integrations.ingest.messages import Normaliser
from integrations.models import Event, EventStream, ReceiptOutcome, SignatureVerdict, WebhookReceipt
from integrations.relay.log import Message
from integrations.webhooks import receive
from integrations.webhooks.store import claim_and_append
from tests.integrations.webhooks.helpers import CHAT_STARTED, make_endpoint, send_signed

pytestmark = pytest.mark.django_db(transaction=True)  # autocommit, as the server runs it


@pytest.fixture(autouse=True)
def fresh_receivers() -> Any:
    receive._receivers.clear()
    yield
    receive._receivers.clear()


def messages(*ids: str) -> list[Message]:
    normalise = Normaliser(received_at=timezone.now())
    return [normalise({"type": "track", "event": "Lead Captured", "userId": "u1", "messageId": i}) for i in ids]


def store(endpoint_id: int, workspace: Workspace, webhook_id: str, batch: list[Message]) -> bool:
    return claim_and_append(endpoint_id=endpoint_id, workspace_id=workspace.pk, webhook_id=webhook_id,
                            verdict=SignatureVerdict.VERIFIED, body=b'{"lead": 1}', messages=batch)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement store is PostgreSQL's")
def test_one_statement_claims_the_id_and_appends_every_event(alice: User, workspace: Workspace) -> None:
    endpoint = make_endpoint(alice, workspace).endpoint
    assert store(endpoint.pk, workspace, "msg_1", messages("m-1", "m-2")) is True
    receipt = WebhookReceipt.objects.get()
    assert (receipt.webhook_id, receipt.outcome, receipt.status, receipt.signature) == (
        "msg_1", ReceiptOutcome.ACCEPTED, 200, SignatureVerdict.VERIFIED)
    assert receipt.message_ids == ["m-1", "m-2"] and bytes(receipt.body) == b'{"lead": 1}' and receipt.body_size == 11
    events = list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("seq", "message_id", "name"))
    assert events == [(1, "m-1", "Lead Captured"), (2, "m-2", "Lead Captured")]
    assert EventStream.objects.get(workspace=workspace).last_seq == 2


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement store is PostgreSQL's")
def test_a_second_claim_of_the_id_stores_nothing(alice: User, workspace: Workspace) -> None:
    endpoint = make_endpoint(alice, workspace).endpoint
    assert store(endpoint.pk, workspace, "msg_1", messages("m-1")) is True
    assert store(endpoint.pk, workspace, "msg_1", messages("m-1")) is False
    assert WebhookReceipt.objects.count() == 1 and Event.objects.count() == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-statement store is PostgreSQL's")
def test_an_append_that_fails_leaves_no_receipt(alice: User, workspace: Workspace) -> None:
    endpoint = make_endpoint(alice, workspace).endpoint
    broken = messages("m-1")[0]._replace(type="x" * 40)  # longer than the log's type column
    with pytest.raises(DataError):
        store(endpoint.pk, workspace, "msg_1", [broken])
    assert not WebhookReceipt.objects.exists() and not Event.objects.exists()
    # The id is still free: the sender's retry is stored.
    assert store(endpoint.pk, workspace, "msg_1", messages("m-1")) is True


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(i)` in `count` threads released together; each thread's database connection is
    closed when it is done."""
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        try:
            start.wait()
            results[i] = work(i)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_racing_requests_with_one_webhook_id_store_it_once(alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    body = orjson.dumps(CHAT_STARTED)
    answers = in_threads(6, lambda i: send_signed(Client(), created, body, webhook_id="msg_raced").json())
    assert sum(1 for a in answers if a.get("accepted") == 1) == 1
    assert sum(1 for a in answers if a.get("duplicate")) == 5
    assert Event.objects.filter(workspace=workspace).count() == 1
    outcomes = sorted(WebhookReceipt.objects.values_list("outcome", flat=True))
    assert outcomes == [ReceiptOutcome.ACCEPTED] + [ReceiptOutcome.REPLAYED] * 5


def test_concurrent_webhooks_to_one_workspace_take_consecutive_seqs(alice: User, workspace: Workspace) -> None:
    created = make_endpoint(alice, workspace)
    answers = in_threads(8, lambda i: send_signed(Client(), created, {**CHAT_STARTED, "id": f"evt_{i}"},
                                                  webhook_id=f"msg_{i}").status_code)
    assert answers == [200] * 8
    seqs = sorted(Event.objects.filter(workspace=workspace).values_list("seq", flat=True))
    assert seqs == list(range(1, 9)) and EventStream.objects.get(workspace=workspace).last_seq == 8
    assert WebhookReceipt.objects.filter(outcome=ReceiptOutcome.ACCEPTED).count() == 8
