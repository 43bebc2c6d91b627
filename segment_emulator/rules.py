"""Segment's validation rules and limits, quirks included (see /work/shared/segment-api.md).

Everything here is pure: no I/O, no clock, no shared state, so the server can call it on
its hot path and the tests can reason about it.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Any, Final

from .payloads import Event

MAX_EVENT_BYTES: Final = 32_768
MAX_BATCH_BYTES: Final = 512_000
MAX_BATCH_EVENTS: Final = 2_500
MAX_MESSAGE_ID_CHARS: Final = 100
# Segment answers 400 only to "empty or very short" keys and does not say how short. Real keys
# are 32 characters; 8 catches placeholders such as "test" and lets every real key through.
MIN_WRITE_KEY_CHARS: Final = 8

EVENT_TYPES: Final = frozenset({"identify", "track", "page", "screen", "group", "alias"})
BATCH_CALLS: Final = frozenset({"batch", "import"})
TRACKING_CALLS: Final = EVENT_TYPES | BATCH_CALLS
REGIONS: Final = ("us", "eu")

# Reasons an event is dropped although the request is answered 200 (Segment's silent drops).
UNKNOWN_KEY: Final = "unknown_key"
WRONG_REGION: Final = "wrong_region"
OVER_BATCH_LIMIT: Final = "over_batch_limit"
NOT_AN_OBJECT: Final = "not_an_object"
INVALID_TYPE: Final = "invalid_type"
MISSING_IDENTITY: Final = "missing_user_or_anonymous_id"
MISSING_EVENT: Final = "missing_event"
MISSING_GROUP_ID: Final = "missing_group_id"
MISSING_PREVIOUS_ID: Final = "missing_previous_id"
MISSING_USER_ID: Final = "missing_user_id"
INVALID_MESSAGE_ID: Final = "invalid_message_id"
DUPLICATE: Final = "duplicate"

# Reasons a whole request is refused with a non-200 answer.
INVALID_WRITE_KEY: Final = "invalid_write_key"
INVALID_CONTENT_TYPE: Final = "invalid_content_type"
INVALID_ENCODING: Final = "invalid_content_encoding"
INVALID_JSON: Final = "invalid_json"
INVALID_BATCH: Final = "invalid_batch"
EVENT_TOO_LARGE: Final = "event_too_large"
BATCH_TOO_LARGE: Final = "batch_too_large"
FAULT: Final = "fault"

ERROR_MESSAGES: Final = {
    INVALID_WRITE_KEY: f"Write key is missing or shorter than {MIN_WRITE_KEY_CHARS} characters.",
    INVALID_CONTENT_TYPE: "Content-Type must be application/json.",
    INVALID_ENCODING: "Body could not be decoded with the given Content-Encoding.",
    INVALID_JSON: "Invalid JSON: the body must be a JSON object.",
    INVALID_BATCH: 'Invalid batch: "batch" must be an array of events.',
    EVENT_TOO_LARGE: f"Payload limit exceeded: an event is over {MAX_EVENT_BYTES} bytes (32 KB).",
    BATCH_TOO_LARGE: f"Payload limit exceeded: the batch is over {MAX_BATCH_BYTES} bytes (500 KB).",
}


def write_key_from_basic_auth(header: str | None) -> str:
    """The user name of `Basic base64("KEY:")`, or "" when the header does not carry one.

    Without the colon there is no user name/password pair: Segment's docs insist on it, so
    the emulator refuses it rather than hide a client bug that real Segment may not forgive.
    """
    if not header or header[:6].lower() != "basic ":
        return ""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return ""
    user, colon, _password = decoded.partition(":")
    return user if colon else ""


def is_usable_write_key(write_key: str) -> bool:
    return len(write_key.strip()) >= MIN_WRITE_KEY_CHARS


def new_message_id() -> str:
    # Segment's own server-assigned ids are prefixed "api-"; keep that so they stand out.
    return f"api-{uuid.uuid4()}"


def missing_field(kind: Any, event: Event) -> str | None:
    """The reason Segment would drop this event for a missing field, or None."""
    if kind == "alias":
        if not event.previous_id:
            return MISSING_PREVIOUS_ID
        return None if event.user_id else MISSING_USER_ID
    # The type check first: a "type" that is an object or an array cannot be looked up.
    if type(kind) is not str or kind not in EVENT_TYPES:
        return INVALID_TYPE
    if not (event.user_id or event.anonymous_id):
        return MISSING_IDENTITY
    if kind == "track" and not event.event:
        return MISSING_EVENT
    if kind == "group" and not event.group_id:
        return MISSING_GROUP_ID
    return None


def message_ids(events: list[Any]) -> list[Any]:
    """The messageIds as sent (None where absent), for the request log."""
    return [event.message_id if type(event) is Event else None for event in events]
