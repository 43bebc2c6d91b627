"""Storing an accepted webhook on PostgreSQL: its receipt and its events in one statement.

The transaction the receive path would otherwise open costs four round trips (BEGIN, the
claim, the append, COMMIT), and the workspace's stream row lock, taken by the append, would be
held across the client's round trip to COMMIT: requests for one workspace commit one at a
time, so that wait is paid by every request queued behind.

`claim_and_append` sends one autocommitted statement instead:
  1. insert the accepted receipt unless the endpoint already accepted this webhook id (the
     partial unique index; a concurrent request with the same id waits on it until this one
     commits, then finds the id taken);
  2. only if it was inserted, append the events through the log's own function
     (`integrations_event_append`, migration 0018: the stream row lock, the messageId check
     under it, seqs in commit order);
  3. commit when the statement ends, the lock held for the append and the commit's WAL flush
     only.
Both happen or neither does, as in one transaction (inside a caller's transaction the
statement simply joins it). The caller wakes the connections once it is committed, as
`events_append` does.

Only for a workspace without a tracking plan: a plan may record blocked events and counts,
which must be written only if the webhook is claimed, so that path stays a transaction.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import orjson

from integrations.models import ReceiptOutcome, SignatureVerdict, WebhookReceipt
from integrations.relay import pg
from integrations.relay.log import Message

_RECEIPTS, _ACCEPTED = WebhookReceipt._meta.db_table, ReceiptOutcome.ACCEPTED.value
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
def store_sql(calls: int) -> str:
    """The statement for a webhook of `calls` events. Each value of each event is a parameter
    of its own, gathered into the function's arrays by the server: psycopg dumps a scalar in
    a fraction of the time it takes to inspect and dump a list."""
    def array(placeholder: str, kind: str) -> str:
        return f"ARRAY[{', '.join([placeholder] * calls)}]::{kind}[]"

    # No dedupe keys: a webhook's events are deduplicated by messageId.
    arrays = ", ".join(array(p, kind) for p, kind in COLUMNS)
    return f"{RECEIPT_SQL}SELECT claim.id, integrations_event_append(%s::bigint, {arrays}, {array('NULL', 'text')}) FROM claim"  # noqa: S608 (placeholders only)


# The function's arrays after the workspace: messageIds, types, names, user ids, bodies,
# receive times.
COLUMNS = (("%s", "text"), ("%s", "text"), ("%s", "text"), ("%s", "text"), ("%b", "bytea"), ("%s", "timestamptz"))


def claim_and_append(*, endpoint_id: int, workspace_id: int, webhook_id: str, verdict: SignatureVerdict,
                     body: bytes, messages: Sequence[Message]) -> bool:
    """Claim the webhook id and append its events (see the module's steps): True when
    claimed and stored, False when the endpoint had already accepted this id (nothing stored)."""
    message_ids = [m.message_id for m in messages]
    values: list[object] = [endpoint_id, messages[0].received_at, webhook_id, verdict.value,
                            orjson.dumps(message_ids).decode(), body, len(body), workspace_id, *message_ids]
    values.extend(m.type for m in messages)
    values.extend(m.name for m in messages)
    values.extend(m.user_id for m in messages)
    values.extend(m.body for m in messages)
    values.extend(m.received_at for m in messages)
    with pg.cursor() as cursor:
        cursor.execute(store_sql(len(messages)), values)
        return cursor.fetchone() is not None
