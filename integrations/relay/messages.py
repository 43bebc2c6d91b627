"""Segment message rules: what an accepted event must carry, and how it is normalised.

Validation follows Segment's documentation, but where Segment silently drops (a track with no
name, a call with neither userId nor anonymousId) Tributary refuses loudly with a reason.
Normalisation, in order:
  1. merge a batch's `context` and `integrations` into each event (the event's own keys win);
  2. give the event a messageId when it has none;
  3. correct the clock of the sender as Segment does: timestamp = receivedAt - (sentAt - timestamp),
     keeping the sender's value as `originalTimestamp`; an event without timestamp happened now;
  4. stamp `receivedAt` (when Tributary accepted it);
  5. name Tributary in `context.library`, keeping the emitter's messageId and library in
     `context.tributary` so an event can be traced from the emitter to Segment;
  6. measure what Segment will receive against its 32 KB limit.

The stored body is the event exactly as every connection sends it, less its messageId: each
connection sends under its own (see `delivery.wire`), so delivery only splices that id in and
never parses or re-serialises an event.
"""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from django.utils.dateparse import parse_datetime

from integrations.segment.client import LIBRARY

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_EVENT_BYTES = 32 * 1024
MAX_MESSAGE_ID = 100
# What delivery adds to a stored body: `,"messageId":"<uuid>"`.
SENT_MESSAGE_ID_BYTES = len(b',"messageId":""') + 36
ENVELOPE_KEYS = ("context", "integrations")


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Message(NamedTuple):
    """A valid, normalised event ready for the log (`body`: the sent form, less messageId)."""

    type: str
    message_id: str
    body: bytes
    name: str
    user_id: str
    received_at: datetime


class Normaliser:
    """Normalises the events of one request: what they share (the receive time, the batch's
    `sentAt`, `context` and `integrations`) is worked out once, not per event."""

    def __init__(self, *, received_at: datetime, call: str | None = None,
                 envelope: dict[str, Any] | None = None, sent_at: Any = None) -> None:
        self.received_at = received_at
        self.received_text = received_at.isoformat()
        self.call = call
        self.envelope = {k: v for k, v in (envelope or {}).items() if k in ENVELOPE_KEYS and isinstance(v, dict)}
        self.sent_at = sent_at
        self._batch_sent: datetime | Invalid | None = None
        if sent_at not in (None, ""):
            try:
                self._batch_sent = _parse_time(sent_at, "sentAt")
            except Invalid as invalid:  # only the events that need it are refused
                self._batch_sent = invalid

    def __call__(self, raw: Any) -> Message:
        """Validate one event and return it normalised, or raise Invalid(reason, detail)."""
        if not isinstance(raw, dict):
            raise Invalid("not_an_object", "Each event must be a JSON object.")
        event = self._merged(raw)
        event_type = self.call or event.get("type")
        if event_type not in TYPES:
            raise Invalid("unknown_type", f"Unknown type {str(event_type)[:40]!r}: use one of {', '.join(TYPES)}.")
        event["type"] = event_type
        _require_fields(event_type, event)
        message_id = _message_id(event.pop("messageId", None))
        self._set_timestamps(event, event.pop("sentAt", None))
        event["receivedAt"] = self.received_text
        event.pop("writeKey", None)
        _name_the_relay(event, message_id)
        body = orjson.dumps(event)
        if len(body) + SENT_MESSAGE_ID_BYTES > MAX_EVENT_BYTES:
            raise Invalid("event_too_large", f"The event is {len(body) + SENT_MESSAGE_ID_BYTES:,} bytes as sent "
                          "to Segment; Segment accepts at most 32 KB.")
        # name and user_id are search columns; PostgreSQL text cannot hold NUL (the body keeps it).
        user_id = str(event.get("userId") or event.get("anonymousId") or "")
        return Message(event_type, message_id, body, _label(event_type, event).replace("\x00", "")[:200],
                       user_id.replace("\x00", "")[:200], self.received_at)

    def _merged(self, raw: dict[str, Any]) -> dict[str, Any]:
        event = dict(raw)
        for key, shared in self.envelope.items():
            own = event.get(key)
            event[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
        return event

    def _set_timestamps(self, event: dict[str, Any], own_sent_at: Any) -> None:
        original = event.get("timestamp")
        if original is None or original == "":
            event["timestamp"] = self.received_text
            return
        happened = _parse_time(original, "timestamp")
        if own_sent_at not in (None, ""):
            sent: datetime | Invalid | None = _parse_time(own_sent_at, "sentAt")
        else:
            sent = self._batch_sent
        if isinstance(sent, Invalid):
            raise sent
        event["originalTimestamp"] = original
        if sent is not None:
            happened = self.received_at - (sent - happened)
        event["timestamp"] = happened.isoformat()


def normalise(raw: Any, *, received_at: datetime, call: str | None = None, envelope: dict[str, Any] | None = None,
              sent_at: Any = None) -> Message:
    """Validate one event and return it normalised, or raise Invalid(reason, detail)."""
    return Normaliser(received_at=received_at, call=call, envelope=envelope, sent_at=sent_at)(raw)


def _name_the_relay(event: dict[str, Any], message_id: str) -> None:
    context = event.get("context")
    context = dict(context) if isinstance(context, dict) else {}
    context["tributary"] = {"messageId": message_id, "library": context.get("library")}
    context["library"] = LIBRARY
    event["context"] = context


def _require_fields(kind: str, event: dict[str, Any]) -> None:
    if kind == "alias":
        if not _present(event.get("previousId")):
            raise Invalid("missing_previous_id", "An alias call needs previousId.")
        if not _present(event.get("userId")):
            raise Invalid("missing_user_id", "An alias call needs userId.")
        return
    if not (_present(event.get("userId")) or _present(event.get("anonymousId"))):
        raise Invalid("missing_user_or_anonymous_id", "Every call but alias needs userId or anonymousId.")
    if kind == "track":
        name = event.get("event")
        if not (isinstance(name, str) and name.strip()):
            raise Invalid("missing_event", "A track call needs the event name in `event`.")
    elif kind == "group" and not _present(event.get("groupId")):
        raise Invalid("missing_group_id", "A group call needs groupId.")


def _present(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return bool(value.strip())
    return kind is int or kind is float  # not bool, which is an int


def _message_id(value: Any) -> str:
    if value is None or value == "":
        return str(uuid.uuid4())
    if type(value) is not str or len(value) > MAX_MESSAGE_ID or "\x00" in value:
        raise Invalid("invalid_message_id",
                      "messageId must be a string of at most 100 characters, without NUL characters.")
    return value


def _parse_time(value: Any, field: str) -> datetime:
    parsed = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            try:
                parsed = parse_datetime(value)  # the few ISO-8601 forms fromisoformat refuses
            except ValueError:
                parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise Invalid("invalid_timestamp",
                      f"{field} {str(value)[:40]!r} is not an ISO-8601 time with a time zone (e.g. 2026-11-23T10:00:00Z).")
    return parsed


def _label(kind: str, event: dict[str, Any]) -> str:
    if kind == "track":
        return str(event.get("event", ""))
    if kind in ("page", "screen"):
        return str(event.get("name") or "")
    return ""
