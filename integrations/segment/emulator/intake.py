"""Turn one tracking request's bytes into events, or into the 400 Segment would answer.

The steps run in the order a front end would: decode, content type, raw size, JSON, write
key, then per-event size. Each failure keeps whatever was learnt so far (the write key from
the header, the events) so the request log can still show it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any, Final

import orjson

from . import rules

# Bodies are decompressed up to this size only: anything larger is refused as too large
# without inflating a gzip bomb into memory.
MAX_DECODED_BYTES: Final = 4 * rules.MAX_BATCH_BYTES


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
    document = _parse(intake)
    if document is None:
        return intake
    intake.write_key = intake.write_key or _body_write_key(document)
    _take_events(intake, document)
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


def _parse(intake: Intake) -> dict[str, Any] | None:
    try:
        document = orjson.loads(intake.body)
    except orjson.JSONDecodeError:
        document = None
    if type(document) is not dict:
        intake.error = rules.INVALID_JSON
        return None
    return document


def _body_write_key(document: dict[str, Any]) -> str:
    write_key = document.get("writeKey")
    return write_key if isinstance(write_key, str) else ""


def _take_events(intake: Intake, document: dict[str, Any]) -> None:
    if intake.implied_type:
        # A single call is its own event; its size was checked with the body.
        intake.events = [document]
        return
    batch = document.get("batch")
    if not isinstance(batch, list):
        intake.error = rules.INVALID_BATCH
        return
    intake.events = batch
    # No event can be over the limit when the whole body is not, which is the common case
    # for small batches; only bigger bodies pay for re-serialising each event.
    if len(intake.body) > rules.MAX_EVENT_BYTES and _has_oversized_event(batch, len(intake.body)):
        intake.error = rules.EVENT_TOO_LARGE


def _has_oversized_event(batch: list[Any], body_size: int) -> bool:
    """Whether an event re-serialises to more than 32 KB, with few serialiser calls.

    Events are measured in slices of about half the limit: a slice under the limit clears
    all its events at once, and only a slice over it has its events measured one by one.
    """
    limit = rules.MAX_EVENT_BYTES
    dumps = orjson.dumps
    step = max(1, (limit // 2) * len(batch) // max(body_size, 1))
    for start in range(0, len(batch), step):
        events = batch[start : start + step]
        if len(dumps(events)) > limit and max(map(len, map(dumps, events))) > limit:
            return True
    return False


def decode_stored_events(call: str, body: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Re-read a body kept by the event buffer: its events and its batch-level envelope."""
    document = orjson.loads(body)
    if call in rules.BATCH_CALLS:
        envelope = {k: v for k, v in document.items() if k != "batch"}
        return document["batch"], envelope
    return [document], {}
