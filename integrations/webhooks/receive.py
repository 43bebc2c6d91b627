"""Receiving one webhook: verify, map, store, answer.

`webhook_receive` runs after the view has read the body (at most MAX_BODY_BYTES):
  1. find the endpoint by the URL's public id (remembered RECEIVER_SECONDS per process, with
     its secrets as reference-library objects and its mapping compiled);
  2. check the sender: the Standard Webhooks signature, or in URL-token mode the token;
  3. parse the JSON and map it to Segment calls; normalise each as the ingest API does, with
     a messageId derived from the endpoint and the webhook id (so a retry that got through
     anyway could never be a second event in Segment) and the endpoint named in
     `context.tributary.webhook`;
  4. at once, claim the webhook id (an accepted receipt, unique per endpoint and id) and
     append the calls to the workspace's event log: one statement on PostgreSQL for a
     workspace without a tracking plan (`store`), else one transaction; an id already
     claimed is a retry or a replay: answered 200, stored nothing;
  5. answer 2xx only once committed. Every refusal is a 4xx naming the reason and is kept in
     the inbound log; nothing of it reaches the event log.
"""
from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from time import monotonic
from typing import Any

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from standardwebhooks.webhooks import Webhook

from integrations.crypto import CredentialUnreadable
from integrations.ingest.messages import Invalid, Normaliser, loads_lenient
from integrations.ingest.ratelimit import hits_this_second
from integrations.models import ReceiptOutcome, SignatureVerdict, WebhookEndpoint, WebhookReceipt
from integrations.relay.log import Message, events_append
from integrations.segment.protocol import MAX_EVENT_BYTES, SENT_MESSAGE_ID_BYTES
from integrations.tracking_plans.enforcement import plan_enforce, plan_for_workspace
from integrations.webhooks import verification
from integrations.webhooks.mapping import Mapping, MappingError, Unmappable, compile_mapping
from integrations.webhooks.store import claim_and_append

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
# Of a refused request, this much of the body is kept for the inbound log.
REFUSED_BODY_BYTES = 16 * 1024
# Refused requests kept in an endpoint's inbound log per second, at most: a leaked URL must not
# let anyone fill the database with bad signatures. Beyond it they are answered alike, unrecorded.
REFUSALS_RECORDED_PER_SECOND = 20
RECEIVER_SECONDS = 5.0
RECEIVER_MAX = 10_000
# messageIds of webhook events: uuid5 of the endpoint and the webhook id in this namespace.
MESSAGE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://tributary.dev/webhooks")


@dataclass
class Answer:
    status: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class Receiver:
    """What the receive path needs of an endpoint, decrypted and compiled once."""

    endpoint_id: int
    workspace_id: int
    name: str
    public_id: str
    signed: bool
    enabled: bool
    url_token_hash: str
    current: Webhook | None
    previous: Webhook | None
    previous_until: datetime | None
    mapping: Mapping | MappingError

    def webhooks(self, now: datetime) -> list[Webhook]:
        keys = [self.current] if self.current is not None else []
        if self.previous is not None and self.previous_until is not None and now < self.previous_until:
            keys.append(self.previous)
        return keys


_receivers: dict[str, tuple[float, Receiver]] = {}
_lock = threading.Lock()


def receiver_get(public_id: str) -> Receiver | None:
    now = monotonic()
    found_at, receiver = _receivers.get(public_id, (0.0, None))
    if receiver is not None and now - found_at <= RECEIVER_SECONDS:
        return receiver
    endpoint = WebhookEndpoint.objects.filter(public_id=public_id).first()
    if endpoint is None:
        _receivers.pop(public_id, None)
        return None
    receiver = _receiver(endpoint)
    with _lock:
        if len(_receivers) >= RECEIVER_MAX:
            _receivers.clear()
        _receivers[public_id] = (now, receiver)
    return receiver


def receiver_forget(public_id: str) -> None:
    """Drop this process's copy after a change (other processes see it within RECEIVER_SECONDS)."""
    _receivers.pop(public_id, None)


@sensitive_variables()
def _receiver(endpoint: WebhookEndpoint) -> Receiver:
    current = previous = None
    if endpoint.secret_encrypted:
        try:
            current = verification.webhook_for(endpoint.secret())
            previous_secret = endpoint.previous_secret()
            previous = verification.webhook_for(previous_secret) if previous_secret else None
        except CredentialUnreadable:
            logger.error("webhooks.secret_unreadable", extra={"endpoint_id": endpoint.pk})
    try:
        mapping: Mapping | MappingError = compile_mapping(endpoint.mapping)
    except MappingError as error:
        mapping = error
    return Receiver(endpoint.pk, endpoint.workspace_id, endpoint.name, endpoint.public_id, endpoint.is_signed,
                    endpoint.enabled, endpoint.url_token_hash, current, previous,
                    endpoint.previous_secret_expires_at, mapping)


@dataclass
class Request:
    """The parts of the HTTP request the receiver reads (header names in lower case)."""

    public_id: str
    url_token: str | None
    headers: dict[str, str]
    body: bytes
    too_large: int | None = None  # the declared or read size, when over MAX_BODY_BYTES
    received_at: datetime = field(default_factory=timezone.now)


class Refusal(Exception):
    def __init__(self, status: int, error: str, message: str, verdict: SignatureVerdict,
                 outcome: ReceiptOutcome = ReceiptOutcome.REFUSED) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.verdict, self.outcome = status, error, message, verdict, outcome


UNKNOWN = Answer(404, {"success": False, "error": "unknown_endpoint", "message": "No webhook endpoint here."})


def webhook_receive(request: Request) -> Answer:
    receiver = receiver_get(request.public_id)
    if receiver is None or (request.url_token is None) != receiver.signed:
        # An unknown URL, or the other mode's shape of it: nothing to record it against.
        return UNKNOWN
    try:
        return _receive(receiver, request)
    except IntegrityError:
        # The endpoint was deleted after this process remembered it (its receipt has nothing
        # to refer to): as unknown as it now is.
        receiver_forget(request.public_id)
        return UNKNOWN


def _receive(receiver: Receiver, request: Request) -> Answer:
    # Named in the inbound log even when the request is refused.
    webhook_id = _webhook_id(receiver, request)
    verdict = SignatureVerdict.NOT_CHECKED
    try:
        verdict = _check_sender(receiver, request)
        if not receiver.enabled:
            raise Refusal(403, "endpoint_disabled", "This endpoint is disabled: enable it under Settings → Webhooks.",
                          verdict)
        if request.too_large is not None:
            raise Refusal(413, "body_too_large", f"The body is {request.too_large:,} bytes; the limit is "
                          f"{MAX_BODY_BYTES // 1024} KB.", verdict)
        payload = _parsed(request.body, verdict)
        messages = _messages(receiver, payload, webhook_id, request.received_at, verdict)
    except Refusal as refusal:
        return _refused(receiver, request, webhook_id, refusal)
    return _store(receiver, request, webhook_id, verdict, messages)


def _check_sender(receiver: Receiver, request: Request) -> SignatureVerdict:
    if not receiver.signed:
        if not verification.url_token_matches(request.url_token or "", receiver.url_token_hash):
            raise Refusal(401, "invalid_token", "The token in the URL is not this endpoint's: copy the URL again "
                          "from Settings → Webhooks.", SignatureVerdict.BAD_TOKEN)
        return SignatureVerdict.URL_TOKEN
    if request.too_large is not None:
        return SignatureVerdict.NOT_CHECKED  # the body was not read, so it cannot be checked
    found = verification.signature_verify(request.body, request.headers, receiver.webhooks(request.received_at))
    if not found.passed:
        status = 400 if found.verdict == SignatureVerdict.MISSING or found.error else 401
        error = found.error or {
            SignatureVerdict.MISSING: "missing_signature_headers", SignatureVerdict.STALE: "timestamp_too_old",
            SignatureVerdict.FUTURE: "timestamp_in_future"}.get(found.verdict, "invalid_signature")
        raise Refusal(status, error, found.detail, found.verdict)
    return found.verdict


def _webhook_id(receiver: Receiver, request: Request) -> str:
    """The sender's id of this message: `webhook-id` (signed), or for URL-token senders the
    first of webhook-id, Idempotency-Key, X-Request-Id, else a hash of the body (so an
    identical body resent within the log's retention counts as a retry)."""
    for name in ("webhook-id", "idempotency-key", "x-request-id"):
        value = request.headers.get(name, "").strip().replace("\x00", "")
        if value:
            return value[:verification.MAX_WEBHOOK_ID]
        if receiver.signed:
            return ""
    return "sha256:" + hashlib.sha256(request.body).hexdigest()[:40]


def _parsed(body: bytes, verdict: SignatureVerdict) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        try:
            return loads_lenient(body)
        except (ValueError, UnicodeDecodeError):
            raise Refusal(400, "invalid_json", "The body is not JSON.", verdict) from None


def message_id_for(public_id: str, webhook_id: str, index: int) -> str:
    """The messageId of the `index`th call a webhook becomes: the same on every retry."""
    suffix = f"#{index}" if index else ""
    return str(uuid.uuid5(MESSAGE_NAMESPACE, f"{public_id}:{webhook_id}{suffix}"))


def _messages(receiver: Receiver, payload: Any, webhook_id: str, received_at: datetime,
              verdict: SignatureVerdict) -> list[Message]:
    if isinstance(receiver.mapping, MappingError):
        raise Refusal(422, "mapping_invalid", f"The endpoint's mapping cannot be used: {receiver.mapping}", verdict,
                      ReceiptOutcome.UNMAPPABLE)
    try:
        calls = receiver.mapping.apply(payload)
    except Unmappable as unmappable:
        raise Refusal(422, unmappable.reason, unmappable.detail, verdict, ReceiptOutcome.UNMAPPABLE) from None
    normalise = Normaliser(received_at=received_at)
    via = {"endpoint": receiver.endpoint_id, "name": receiver.name, "webhookId": webhook_id}
    messages = []
    for index, call in enumerate(calls):
        call["messageId"] = message_id_for(receiver.public_id, webhook_id, index)
        try:
            messages.append(_via_webhook(normalise(call), via))
        except Invalid as invalid:
            where = f"call {index + 1} ({call.get('type')})" if len(calls) > 1 else f"the {call.get('type')} call"
            raise Refusal(422, invalid.reason, f"The mapping made {where} that Segment would not take: "
                          f"{invalid.detail}", verdict, ReceiptOutcome.UNMAPPABLE) from None
    return messages


def _via_webhook(message: Message, via: dict[str, Any]) -> Message:
    """Name the endpoint in the stored event's `context.tributary.webhook`, beside what the
    normaliser put there, so the debugger can say "via webhook <name>"."""
    body = orjson.loads(message.body)
    body["context"]["tributary"]["webhook"] = via
    stored = orjson.dumps(body)
    if len(stored) + SENT_MESSAGE_ID_BYTES > MAX_EVENT_BYTES:
        raise Invalid("event_too_large", f"The event is {len(stored) + SENT_MESSAGE_ID_BYTES:,} bytes as sent to "
                      "Segment; Segment accepts at most 32 KB.")
    return message._replace(body=stored)


def _store(receiver: Receiver, request: Request, webhook_id: str, verdict: SignatureVerdict,
           messages: list[Message]) -> Answer:
    if not messages:  # no route matched, and the mapping ignores such payloads
        _record(receiver, request, webhook_id, 200, verdict, ReceiptOutcome.IGNORED,
                "No route matched; the mapping ignores such payloads.", request.body)
        return Answer(200, {"success": True, "ignored": True, "messageIds": []})
    if connection.vendor == "postgresql" and plan_for_workspace(receiver.workspace_id) is None:
        return _store_in_one_statement(receiver, request, webhook_id, verdict, messages)
    return _store_in_transaction(receiver, request, webhook_id, verdict, messages)


def _store_in_one_statement(receiver: Receiver, request: Request, webhook_id: str, verdict: SignatureVerdict,
                            messages: list[Message]) -> Answer:
    """A workspace without a tracking plan: the claim and the append in one statement (`store`)."""
    message_ids = [m.message_id for m in messages]
    if not claim_and_append(endpoint_id=receiver.endpoint_id, workspace_id=receiver.workspace_id,
                            webhook_id=webhook_id, verdict=verdict, body=request.body, messages=messages):
        return _replayed(receiver, request, webhook_id, verdict, message_ids)
    return Answer(200, {"success": True, "accepted": len(messages), "messageIds": message_ids})


def _store_in_transaction(receiver: Receiver, request: Request, webhook_id: str, verdict: SignatureVerdict,
                          messages: list[Message]) -> Answer:
    """The claim, the tracking plan (which records what it blocks only if the id is claimed)
    and the append in one transaction."""
    message_ids = [m.message_id for m in messages]
    blocked: list[dict[str, Any]] = []
    with transaction.atomic():
        claimed = _claim(receiver, request, webhook_id, verdict, message_ids)
        if claimed is not None:
            # The workspace's tracking plan, as on every way in: a blocked call is listed in
            # the 200 (a retry could not change the verdict) and kept with the plan's blocked events.
            planned = plan_enforce(workspace_id=receiver.workspace_id, messages=messages, source="webhook")
            events_append(workspace_id=receiver.workspace_id, messages=planned.messages)
            blocked = planned.blocked
            if blocked:
                WebhookReceipt.objects.filter(pk=claimed).update(reason=_blocked_reason(blocked, len(messages)))
    if claimed is None:
        return _replayed(receiver, request, webhook_id, verdict, message_ids)
    answer = {"success": True, "accepted": len(messages) - len(blocked), "messageIds": message_ids}
    return Answer(200, {**answer, "blocked": blocked} if blocked else answer)


def _replayed(receiver: Receiver, request: Request, webhook_id: str, verdict: SignatureVerdict,
              message_ids: list[str]) -> Answer:
    _record(receiver, request, webhook_id, 200, verdict, ReceiptOutcome.REPLAYED,
            "This webhook-id was already received: nothing stored again.", b"")
    return Answer(200, {"success": True, "duplicate": True, "messageIds": message_ids})


def _blocked_reason(blocked: list[dict[str, Any]], calls: int) -> str:
    first = (blocked[0].get("violations") or [{}])[0].get("description", "")
    return (f"{len(blocked)} of {calls} call{'s' if calls != 1 else ''} blocked by the tracking plan"
            f"{f': {first}' if first else ''}")[:300]


RECEIPT_COLUMNS = ("endpoint_id", "received_at", "webhook_id", "status", "signature", "outcome", "reason",
                   "message_ids", "body", "body_size")


def _claim(receiver: Receiver, request: Request, webhook_id: str, verdict: SignatureVerdict,
           message_ids: list[str]) -> int | None:
    """Insert the accepted receipt unless this endpoint already accepted the id, and return its
    id (None: already accepted). One statement, and a concurrent request with the same id
    waits on the unique index until this one commits or rolls back."""
    table = WebhookReceipt._meta.db_table
    sql = (f"INSERT INTO {table} ({', '.join(RECEIPT_COLUMNS)}) VALUES ({', '.join(['%s'] * len(RECEIPT_COLUMNS))}) "  # noqa: S608
           f"ON CONFLICT (endpoint_id, webhook_id) WHERE outcome = 'accepted' DO NOTHING RETURNING id")
    values = [receiver.endpoint_id, connection.ops.adapt_datetimefield_value(request.received_at), webhook_id, 200, verdict.value,
              ReceiptOutcome.ACCEPTED.value, "", orjson.dumps(message_ids).decode(), request.body, len(request.body)]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def _refused(receiver: Receiver, request: Request, webhook_id: str, refusal: Refusal) -> Answer:
    if refusal.outcome == ReceiptOutcome.UNMAPPABLE and webhook_id and _already_accepted(receiver, webhook_id):
        # A retry of a webhook accepted before the mapping changed: still a retry.
        _record(receiver, request, webhook_id, 200, refusal.verdict, ReceiptOutcome.REPLAYED,
                "This webhook-id was already received: nothing stored again.", b"")
        return Answer(200, {"success": True, "duplicate": True})
    if hits_this_second(f"webhook-refusals:{receiver.endpoint_id}") <= REFUSALS_RECORDED_PER_SECOND:
        body = b"" if request.too_large is not None else request.body[:REFUSED_BODY_BYTES]
        _record(receiver, request, webhook_id, refusal.status, refusal.verdict, refusal.outcome, refusal.message, body)
    logger.info("webhooks.refused", extra={"endpoint_id": receiver.endpoint_id, "status": refusal.status,
                                           "error": refusal.error})
    return Answer(refusal.status, {"success": False, "error": refusal.error, "message": refusal.message})


def _already_accepted(receiver: Receiver, webhook_id: str) -> bool:
    return WebhookReceipt.objects.filter(endpoint_id=receiver.endpoint_id, webhook_id=webhook_id,
                                         outcome=ReceiptOutcome.ACCEPTED).exists()


def _record(receiver: Receiver, request: Request, webhook_id: str, status: int, verdict: SignatureVerdict,
            outcome: ReceiptOutcome, reason: str, body: bytes) -> None:
    size = request.too_large if request.too_large is not None else len(request.body)
    WebhookReceipt.objects.create(endpoint_id=receiver.endpoint_id, received_at=request.received_at,
                                  webhook_id=webhook_id, status=status, signature=verdict,
                                  outcome=outcome, reason=reason[:300], body=body, body_size=size)
