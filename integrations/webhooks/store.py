"""Storing an accepted webhook on PostgreSQL: its receipt and its events in one call.

The transaction the receive path would otherwise open costs four round trips (BEGIN, the
claim, the append, COMMIT), and the workspace's stream row lock, taken by the append, would be
held across the client's round trip to COMMIT: requests for one workspace commit one at a
time, so that wait is paid by every request queued behind.

`claim_and_append` sends one call instead:
  1. insert the accepted receipt unless the endpoint already accepted this webhook id (the
     partial unique index; a concurrent request with the same id waits on it until this one
     commits, then finds the id taken);
  2. only if it was inserted, append the events through the log's own function
     (`integrations_event_append`, migration 0018: the stream row lock, the messageId check
     under it, seqs in commit order) and wake the workspace's connections
     (`integrations_connections_wake`, migration 0020);
  3. commit. In autocommit (the server) the call is the procedure
     `integrations_webhook_store_durably` (migration 0020), which releases the lock without
     waiting for the disk and returns once a second commit has flushed the log past the
     first, as `integrations.relay.log` does for the ingest API. Inside a caller's
     transaction (tests) it is one statement that joins it.
Both happen or neither does. The connections woken are queued once it is committed.

Only for a workspace without a tracking plan: a plan may record blocked events and counts,
which must be written only if the webhook is claimed, so that path stays a transaction.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import orjson
from django.db import connection
from django.utils import timezone

from integrations.models import ReceiptOutcome, SignatureVerdict, WebhookReceipt
from integrations.relay import pg
from integrations.relay.log import (
    SCALAR_EVENTS,
    WAKE_IF_STORED,
    Message,
    append_arguments,
    append_call,
    append_parameters,
)
from integrations.relay.wake import connections_queue_after_commit

_RECEIPTS, _ACCEPTED = WebhookReceipt._meta.db_table, ReceiptOutcome.ACCEPTED.value
# The receipt's values: endpoint, receive time, webhook id, signature verdict, messageIds
# (JSON), body and its size; then the events' (`append_call`), then the workspace and the time
# the connections are woken at.
RECEIPT_SQL = f"""
WITH claim AS (
    INSERT INTO {_RECEIPTS} (endpoint_id, received_at, webhook_id, status, signature, outcome, reason, message_ids,
                             body, body_size)
    VALUES (%s, %s, %s, 200, %s, '{_ACCEPTED}', '', %s::jsonb, %b, %s)
    ON CONFLICT (endpoint_id, webhook_id) WHERE outcome = '{_ACCEPTED}' DO NOTHING
    RETURNING id
)
"""  # noqa: S608 (the table name and outcome are the model's)


@cache
def _in_transaction(calls: int) -> str:
    return (f"{RECEIPT_SQL}, appended AS MATERIALIZED (SELECT claim.id, {append_call(calls)} AS stored FROM claim) "  # noqa: S608
            f"SELECT id, {WAKE_IF_STORED} FROM appended")


@cache
def _durably(calls: int) -> str:
    return (f"CALL integrations_webhook_store_durably(%s, %s, %s, %s, %s::jsonb, %b, %s, {append_arguments(calls)}, "
            "%b::timestamptz)")


def claim_and_append(*, endpoint_id: int, workspace_id: int, webhook_id: str, verdict: SignatureVerdict,
                     body: bytes, messages: Sequence[Message]) -> bool:
    """Claim the webhook id and append its events (see the module's steps): True when
    claimed and stored, False when the endpoint had already accepted this id (nothing stored).
    No dedupe keys: a webhook's events are deduplicated by messageId."""
    message_ids = [m.message_id for m in messages]
    values: list[object] = [endpoint_id, messages[0].received_at, webhook_id, verdict.value,
                            orjson.dumps(message_ids).decode(), body, len(body),
                            *append_parameters(workspace_id, [(m, None) for m in messages])]
    shape = min(len(messages), SCALAR_EVENTS + 1)
    atomic = connection.in_atomic_block
    with pg.cursor() as cursor:
        if atomic:
            cursor.execute(_in_transaction(shape), [*values, workspace_id, timezone.now()])
        else:
            cursor.execute(_durably(shape), [*values, timezone.now()])
        row = cursor.fetchone()
    if row is None or row[0] is None:
        return False
    connections_queue_after_commit(row[1])
    return True
