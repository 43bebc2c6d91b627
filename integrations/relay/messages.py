"""Segment message rules: what an accepted event must carry, and how it is normalised.

Validation follows Segment's documentation, but where Segment silently drops (a track with no
name, a call with neither userId nor anonymousId) Tributary refuses loudly with a reason.
Normalisation, in order:
  1. merge a batch's `context` and `integrations` into each event (the event's own keys win);
  2. give the event a messageId when it has none;
  3. correct the clock of the sender as Segment does: timestamp = receivedAt - (sentAt - timestamp),
     keeping the sender's value as `originalTimestamp`; an event without timestamp happened now;
  4. stamp `receivedAt` (when Tributary accepted it);
  5. measure the result against the 32 KB limit.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from django.utils.dateparse import parse_datetime

TYPES = ("identify", "track", "page", "screen", "group", "alias")
MAX_EVENT_BYTES = 32 * 1024
MAX_MESSAGE_ID = 100


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Message:
    """A valid, normalised event ready for the log."""

    type: str
    message_id: str
    body: bytes
    name: str
    user_id: str
    received_at: datetime


def normalise(raw: Any, *, received_at: datetime, call: str | None = None, envelope: dict[str, Any] | None = None,
              sent_at: Any = None) -> Message:
    """Validate one event and return it normalised, or raise Invalid(reason, detail)."""
    if not isinstance(raw, dict):
        raise Invalid("not_an_object", "Each event must be a JSON object.")
    event = _merged(raw, envelope or {})
    event_type = call or event.get("type")
    if event_type not in TYPES:
        raise Invalid("unknown_type", f"Unknown type {str(event_type)[:40]!r}: use one of {', '.join(TYPES)}.")
    event["type"] = event_type
    _require_fields(event)
    event["messageId"] = _message_id(event.get("messageId"))
    _set_timestamps(event, received_at, event.pop("sentAt", None) or sent_at)
    event["receivedAt"] = received_at.isoformat()
    event.pop("writeKey", None)
    body = orjson.dumps(event)
    if len(body) > MAX_EVENT_BYTES:
        raise Invalid("event_too_large", f"The event is {len(body):,} bytes; Segment accepts at most 32 KB.")
    # name and user_id are search columns; PostgreSQL text cannot hold NUL (the body keeps it).
    user_id = str(event.get("userId") or event.get("anonymousId") or "")
    return Message(type=event_type, message_id=event["messageId"], body=body,
                   name=_label(event).replace("\x00", "")[:200], user_id=user_id.replace("\x00", "")[:200],
                   received_at=received_at)


def _merged(raw: dict[str, Any], envelope: dict[str, Any]) -> dict[str, Any]:
    event = dict(raw)
    for key in ("context", "integrations"):
        shared = envelope.get(key)
        if isinstance(shared, dict):
            own = event.get(key)
            event[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
    return event


def _require_fields(event: dict[str, Any]) -> None:
    kind = event["type"]
    if kind == "alias":
        if not _present(event.get("previousId")):
            raise Invalid("missing_previous_id", "An alias call needs previousId.")
        if not _present(event.get("userId")):
            raise Invalid("missing_user_id", "An alias call needs userId.")
        return
    if not (_present(event.get("userId")) or _present(event.get("anonymousId"))):
        raise Invalid("missing_user_or_anonymous_id", "Every call but alias needs userId or anonymousId.")
    if kind == "track" and not (isinstance(event.get("event"), str) and event["event"].strip()):
        raise Invalid("missing_event", "A track call needs the event name in `event`.")
    if kind == "group" and not _present(event.get("groupId")):
        raise Invalid("missing_group_id", "A group call needs groupId.")


def _present(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return (isinstance(value, str) and bool(value.strip())) or isinstance(value, int | float)


def _message_id(value: Any) -> str:
    if value is None or value == "":
        return str(uuid.uuid4())
    if not isinstance(value, str) or len(value) > MAX_MESSAGE_ID or "\x00" in value:
        raise Invalid("invalid_message_id",
                      "messageId must be a string of at most 100 characters, without NUL characters.")
    return value


def _set_timestamps(event: dict[str, Any], received_at: datetime, sent_at: Any) -> None:
    original = event.get("timestamp")
    if original in (None, ""):
        event["timestamp"] = received_at.isoformat()
        return
    happened = _parse_time(original, "timestamp")
    sent = _parse_time(sent_at, "sentAt") if sent_at not in (None, "") else None
    event["originalTimestamp"] = original
    if sent is not None:
        happened = received_at - (sent - happened)
    event["timestamp"] = happened.isoformat()


def _parse_time(value: Any, field: str) -> datetime:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None or parsed.tzinfo is None:
        raise Invalid("invalid_timestamp",
                      f"{field} {str(value)[:40]!r} is not an ISO-8601 time with a time zone (e.g. 2026-11-23T10:00:00Z).")
    return parsed


def _label(event: dict[str, Any]) -> str:
    if event["type"] == "track":
        return str(event.get("event", ""))
    if event["type"] in ("page", "screen"):
        return str(event.get("name") or "")
    return ""
