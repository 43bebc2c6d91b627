"""Turn one tracking request's bytes into events, or into the 400 Segment would answer.

The steps run in the order a front end would: decode, content type, raw size, JSON, write
key, then per-event size. Each failure keeps whatever was learnt so far (the write key from
the header, the events) so the request log can still show it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final

from . import payloads, rules

# Bodies are decompressed up to this size only: anything larger is refused as too large
# without inflating a gzip bomb into memory.
MAX_DECODED_BYTES: Final = 4 * rules.MAX_BATCH_BYTES

Decoded = tuple[str | None, Any, list[Any]]  # (400 error or None, the body's writeKey, events)


@dataclass(slots=True)
class Intake:
    call: str
    write_key: str = ""
    error: str | None = None
    body: bytes = b""
    events: list[Any] = field(default_factory=list)

    @property
    def implied_type(self) -> str | None:
        return None if self.call in rules.BATCH_CALLS else self.call


def read_tracking_request(call: str, headers: Any, raw: bytes) -> Intake:
    """Parse a POST /v1/<call> body. `headers` is any case-insensitive mapping."""
    intake = Intake(call=call, write_key=rules.write_key_from_basic_auth(headers.get("Authorization")))
    try:
        intake.body = _decode(raw, headers.get("Content-Encoding", ""))
    except ValueError as error:
        intake.error = str(error)
        return intake
    intake.error = _check_content_type(headers.get("Content-Type", "")) or _check_body_size(intake)
    if intake.error:
        return intake
    _parse(intake)
    if not intake.error and not rules.is_usable_write_key(intake.write_key):
        intake.error = rules.INVALID_WRITE_KEY
    return intake


def _decode(raw: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in ("gzip", "x-gzip"):
        raise ValueError(rules.INVALID_ENCODING)
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        body = inflater.decompress(raw, MAX_DECODED_BYTES + 1)
    except zlib.error:
        raise ValueError(rules.INVALID_ENCODING) from None
    if len(body) > MAX_DECODED_BYTES:
        raise ValueError(rules.BATCH_TOO_LARGE)
    return body


def _check_content_type(content_type: str) -> str | None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return None if media_type == "application/json" else rules.INVALID_CONTENT_TYPE


def _check_body_size(intake: Intake) -> str | None:
    size = len(intake.body)
    if intake.call in rules.BATCH_CALLS:
        return rules.BATCH_TOO_LARGE if size > rules.MAX_BATCH_BYTES else None
    return rules.EVENT_TOO_LARGE if size > rules.MAX_EVENT_BYTES else None


def _parse(intake: Intake) -> None:
    """Set the write key and the events from the body, or the 400 it deserves."""
    if not payloads.is_utf8(intake.body):
        intake.error = rules.INVALID_JSON
        return
    try:
        error, write_key, events = _decode_typed(intake.body, intake.implied_type)
    except payloads.DECODE_ERRORS:
        # Not the shape the fast path decodes: the generic decode finds which 400 it is,
        # or reads the body the slow way should it be fine after all.
        error, write_key, events = _decode_generic(intake.body, intake.implied_type)
    intake.write_key = intake.write_key or (write_key if isinstance(write_key, str) else "")
    intake.error, intake.events = error, events
    if not error and intake.implied_type is None and len(intake.body) > rules.MAX_EVENT_BYTES:
        intake.error = _check_event_sizes(intake.body)


def _decode_typed(body: bytes, implied_type: str | None) -> Decoded:
    if implied_type:
        # A single call is its own event; its size was checked with the body.
        event = payloads.EVENT_DECODER.decode(body)
        return None, event.write_key, [event]
    batch = payloads.BATCH_DECODER.decode(body)
    return None, batch.write_key, batch.batch


def _decode_generic(body: bytes, implied_type: str | None) -> Decoded:
    try:
        document = payloads.decode_any(body)
    except payloads.DECODE_ERRORS:
        return rules.INVALID_JSON, None, []
    if type(document) is not dict:
        return rules.INVALID_JSON, None, []
    write_key = document.get("writeKey")
    if implied_type:
        return None, write_key, [payloads.as_event(document)]
    batch = document.get("batch")
    if not isinstance(batch, list):
        return rules.INVALID_BATCH, write_key, []
    return None, write_key, [payloads.as_event(item) for item in batch]


def _check_event_sizes(body: bytes) -> str | None:
    """event_too_large when an item of the batch is over 32 KB.

    An item is measured in the bytes it was sent as, as a single call's body always was:
    what the sender controls and what a server reading the body sees, and no item has to
    be serialised again to find out.
    """
    try:
        raw_events = payloads.RAW_BATCH_DECODER.decode(body).batch
    except payloads.DECODE_ERRORS:
        # Only nesting close to the recursion limit can fail here after the decode above.
        return rules.INVALID_JSON
    return rules.EVENT_TOO_LARGE if max(map(len, raw_events), default=0) > rules.MAX_EVENT_BYTES else None


def decode_stored_events(call: str, body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Re-read a body kept by the event buffer: its events and its batch-level envelope.

    With the decoder that accepted it, so every body accepted can be read back.
    """
    document = payloads.decode_any(body)
    if call in rules.BATCH_CALLS:
        envelope = {k: v for k, v in document.items() if k != "batch"}
        return document["batch"], envelope
    return [document], {}
