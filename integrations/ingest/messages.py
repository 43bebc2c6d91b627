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
  6. serialise it once, refusing only this event when it cannot be (nested deeper than
     MAX_DEPTH, an integer beyond 64 bits, a string that is not Unicode), and measure what
     Segment will receive against its 32 KB limit.

The stored body is the event exactly as every connection sends it, less its messageId: each
connection sends under its own (see `delivery.wire`), so delivery only splices that id in and
never parses or re-serialises an event.
"""
from __future__ import annotations

import json
import math
import threading
import uuid
from datetime import datetime
from typing import Any

import orjson
from django.utils.dateparse import parse_datetime

from integrations.relay.log import Message
from integrations.segment.client import LIBRARY
from integrations.segment.protocol import MAX_EVENT_BYTES, SENT_MESSAGE_ID_BYTES, TYPES

MAX_MESSAGE_ID = 100
ENVELOPE_KEYS = ("context", "integrations")
# How deep objects and arrays may nest, the event itself being level 1. orjson cannot write
# past 254 levels, and no real event comes near 64; refusing early keeps a hostile event from
# costing more than a normal one anywhere downstream (repr, templates, Segment).
MAX_DEPTH = 64
# The integers orjson (and Segment) can write: signed or unsigned 64-bit.
INT_RANGE = (-(2**63), 2**64 - 1)
CONTAINERS = (dict, list, tuple)


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail



class Normaliser:
    """Normalises the events of one request: what they share (the receive time, the batch's
    `sentAt`, `context` and `integrations`) is worked out once, not per event."""

    def __init__(self, *, received_at: datetime, call: str | None = None,
                 envelope: dict[str, Any] | None = None, sent_at: Any = None) -> None:
        self.received_at = received_at
        self.received_text = received_at.isoformat()
        # A corrected timestamp is in received_at's zone. orjson writes a datetime as isoformat()
        # does but for an offset with seconds (+01:00:07 becomes +01:00), so with such a zone
        # (none real) the text is made here.
        offset = received_at.utcoffset()
        self._times_as_is = offset is not None and offset.seconds % 60 == 0 and not offset.microseconds
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
        return self.normalised(raw)[0]

    def normalised(self, raw: Any) -> tuple[Message, dict[str, Any]]:
        """`__call__`, with the event as the dict its body was written from: what
        `orjson.loads(message.body)` gives, but that its `timestamp` may be the datetime orjson
        wrote (see `__init__`). The tracking plan judges it without parsing the body again.
        The dict is the caller's, but the objects in it are shared with `raw` (and the
        batch's envelope): replace a top-level key if need be, change nothing inside.

        Every event of a batch comes through here, so the common case is written out inline
        (a function call costs as much as the check it makes); the steps are the module's.
        """
        if type(raw) is not dict and not isinstance(raw, dict):
            raise Invalid("not_an_object", "Each event must be a JSON object.")
        event = dict(raw)
        if self.envelope:  # 1.
            for key, shared in self.envelope.items():
                own = event.get(key)
                event[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
        event_type = self.call or event.get("type")
        if event_type not in TYPES:
            raise Invalid("unknown_type", f"Unknown type {_glimpse(event_type)}: use one of {', '.join(TYPES)}.")
        event["type"] = event_type
        user_id = event.get("userId")
        if event_type != "track" or type(user_id) is not str or not user_id.strip() \
                or type(name := event.get("event")) is not str or not name.strip():
            _require_fields(event_type, event)
        message_id = event.pop("messageId", None)  # 2.
        if message_id is None or message_id == "":
            message_id = str(uuid.uuid4())
        elif type(message_id) is not str or len(message_id) > MAX_MESSAGE_ID or "\x00" in message_id:
            raise Invalid("invalid_message_id",
                          "messageId must be a string of at most 100 characters, without NUL characters.")
        own_sent_at = event.pop("sentAt", None)
        original = event.get("timestamp")  # 3.
        if original is None or original == "":
            event["timestamp"] = self.received_text
        else:
            self._set_timestamp(event, original, own_sent_at)
        event["receivedAt"] = self.received_text  # 4.
        event.pop("writeKey", None)
        context = event.get("context")  # 5.
        context = dict(context) if type(context) is dict or isinstance(context, dict) else {}
        context["tributary"] = {"messageId": message_id, "library": context.get("library")}
        context["library"] = LIBRARY
        event["context"] = context
        body = _serialised(event)  # 6.
        if len(body) + SENT_MESSAGE_ID_BYTES > MAX_EVENT_BYTES:
            raise Invalid("event_too_large", f"The event is {len(body) + SENT_MESSAGE_ID_BYTES:,} bytes as sent "
                          "to Segment; Segment accepts at most 32 KB.")
        # name and user_id are search columns; PostgreSQL text cannot hold NUL (the body keeps it).
        user_id = str(user_id or event.get("anonymousId") or "")
        label = _label(event_type, event)
        if "\x00" in user_id:
            user_id = user_id.replace("\x00", "")
        if "\x00" in label:
            label = label.replace("\x00", "")
        return Message(event_type, message_id, body, label[:200], user_id[:200], self.received_at), event

    def _set_timestamp(self, event: dict[str, Any], original: Any, own_sent_at: Any) -> None:
        happened = _parse_time(original, "timestamp")
        if own_sent_at not in (None, ""):
            sent: datetime | Invalid | None = _parse_time(own_sent_at, "sentAt")
        else:
            sent = self._batch_sent
        if isinstance(sent, Invalid):
            raise sent
        event["originalTimestamp"] = original
        if sent is None:
            event["timestamp"] = happened.isoformat()
            return
        try:
            corrected = self.received_at - (sent - happened)
        except OverflowError:
            raise Invalid("invalid_timestamp",
                          f"timestamp {_glimpse(original)} and sentAt are too far apart to correct the sender's "
                          "clock (the time would fall outside the years 1 to 9999): check the clock that set "
                          "them.") from None
        # orjson writes a datetime as isoformat() would, at a third of the cost (see __init__).
        event["timestamp"] = corrected if self._times_as_is else corrected.isoformat()


def normalise(raw: Any, *, received_at: datetime, call: str | None = None, envelope: dict[str, Any] | None = None,
              sent_at: Any = None) -> Message:
    """Validate one event and return it normalised, or raise Invalid(reason, detail)."""
    return Normaliser(received_at=received_at, call=call, envelope=envelope, sent_at=sent_at)(raw)


def loads_lenient(raw: bytes) -> Any:
    """JSON that orjson refused, read again by the standard library; ValueError if it is not JSON.

    It also takes a string holding a lone UTF-16 surrogate ("\\ud83d"): valid JSON syntax,
    and what JavaScript's JSON.stringify writes for a string cut inside an emoji, so the event
    holding it can be refused alone (invalid_unicode) rather than its whole batch or file
    line being "not JSON". Everything else orjson refuses stays refused (NaN, numbers out of
    a double's range, bytes that are not UTF-8, nesting past the parser's depth), and numbers
    are read as orjson reads them, so the parser used never changes an event.
    """
    try:
        return json.loads(raw.decode(), parse_constant=_not_json, parse_int=_integer, parse_float=_finite)
    except RecursionError:
        raise ValueError("nested past the parser's depth") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _integer(text: str) -> int | float:
    """As orjson: an integer within 64 bits stays one, a larger one becomes a float."""
    if len(text) <= 21:
        number = int(text)
        if INT_RANGE[0] <= number <= INT_RANGE[1]:
            return number
    return _finite(text)


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError("a number out of range")
    return number


def _require_fields(kind: str, event: dict[str, Any]) -> None:
    if kind == "alias":
        if not _present(event.get("previousId")):
            raise Invalid("missing_previous_id", "An alias call needs previousId." + _wrong(event, "previousId"))
        if not _present(event.get("userId")):
            raise Invalid("missing_user_id", "An alias call needs userId." + _wrong(event, "userId"))
        return
    if not (_present(event.get("userId")) or _present(event.get("anonymousId"))):
        raise Invalid("missing_user_or_anonymous_id", "Every call but alias needs userId or anonymousId."
                      + _wrong(event, "userId") + _wrong(event, "anonymousId"))
    if kind == "track":
        name = event.get("event")
        if not (isinstance(name, str) and name.strip()):
            raise Invalid("missing_event", "A track call needs the event name in `event`."
                          + (f" It must be a string, not {_json_kind(name)}." if name is not None
                             and not isinstance(name, str) else ""))
    elif kind == "group" and not _present(event.get("groupId")):
        raise Invalid("missing_group_id", "A group call needs groupId." + _wrong(event, "groupId"))


def _wrong(event: dict[str, Any], field: str) -> str:
    """Why a field that is there does not count as an id, or "" when it is simply absent."""
    value = event.get(field)
    if value is None or value == "":
        return ""
    if type(value) is str:
        return f" {field} is only white space."
    if type(value) in (int, float):
        return f" {field} is 0, which Segment reads as no id."
    return f" {field} must be a string or a number, not {_json_kind(value)}."


def _json_kind(value: Any) -> str:
    """A value as the sender wrote it in JSON: `true`, `123`, "an object", "an array"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool) or value is None:
        return orjson.dumps(value).decode()
    return str(value)[:40]  # a number; orjson would refuse one past 64 bits


def _present(value: Any) -> bool:
    """An id Segment keeps: a string with something in it, or a number but zero (Segment reads
    ids as JavaScript does, where 0 is false, and drops an event whose id is 0 after its 200)."""
    kind = type(value)
    if kind is str:
        return bool(value.strip())
    return (kind is int or kind is float) and value != 0  # not bool, which is an int


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
                      f"{field} {_glimpse(value)} is not an ISO-8601 time with a time zone (e.g. 2026-11-23T10:00:00Z).")
    return parsed


def _serialised(event: dict[str, Any]) -> bytes:
    """The event as JSON, or Invalid naming why this one event cannot be.

    The common case costs one orjson.dumps and two byte counts: nesting deeper than MAX_DEPTH
    needs more than MAX_DEPTH brackets, and counting them in the output runs at memchr speed.
    Only an event with that many (a cart of 40 products has 80) is measured, by orjson again
    (see _nests_too_deep). An event orjson refuses is walked to say why: the error path may
    be slow, the normal one may not.
    """
    try:
        body = orjson.dumps(event)
    except orjson.JSONEncodeError as error:
        raise _unserialisable(event, error) from None
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH and _nests_too_deep(event):
        raise _too_deep(_nested_past(event, MAX_DEPTH) or "?")
    return body


def _orjson_depth_limit(cap: int = 2048) -> int | None:
    """How deep orjson writes before refusing (254 in orjson 3), measured, not assumed; None
    if it writes `cap` levels."""
    levels: list[list[Any]] = [[]]
    for _ in range(cap - 1):
        levels.append([levels[-1]])  # levels[i] nests i + 1 deep
    low, high = 0, cap
    while low < high:  # the deepest that writes is in [low, high]
        middle = (low + high + 1) // 2
        try:
            orjson.dumps(levels[middle - 1])
            low = middle
        except orjson.JSONEncodeError:
            high = middle - 1
    return None if low == cap else low


ORJSON_DEPTH = _orjson_depth_limit()
_probe = threading.local()


def _nests_too_deep(event: dict[str, Any]) -> bool:
    """Whether the event nests past MAX_DEPTH, asked of orjson: written inside
    ORJSON_DEPTH - MAX_DEPTH arrays, it is refused exactly when it nests deeper than
    MAX_DEPTH. A second orjson.dumps costs a few microseconds where a walk in Python costs
    tens. The event has already been written once, so depth is the only thing that can fail."""
    if ORJSON_DEPTH is None or ORJSON_DEPTH <= MAX_DEPTH:
        return _nested_past(event, MAX_DEPTH) is not None
    wrapper = getattr(_probe, "wrapper", None)
    if wrapper is None:  # one per thread: its innermost array holds the event being measured
        outer: list[Any] = []
        inner = outer
        for _ in range(ORJSON_DEPTH - MAX_DEPTH - 1):
            inner.append([])
            inner = inner[0]
        wrapper = _probe.wrapper = (outer, inner)
    outer, inner = wrapper
    inner.append(event)
    try:
        orjson.dumps(outer)
    except orjson.JSONEncodeError:
        return True
    finally:
        inner.clear()
    return False


def _nested_past(event: dict[str, Any], limit: int) -> str | None:
    """The top-level key under which objects and arrays nest past `limit` levels (the event
    being level 1), or None. One level at a time, so no depth can raise RecursionError."""
    for key, value in event.items():
        level = [value] if isinstance(value, CONTAINERS) else []
        depth = 2
        while level:
            if depth > limit:
                return str(key)
            level = [child for node in level for child in (node.values() if isinstance(node, dict) else node)
                     if isinstance(child, CONTAINERS)]
            depth += 1
    return None


def _unserialisable(event: dict[str, Any], error: Exception) -> Invalid:
    """Why orjson refused the event: the first value at fault, found by a walk (error path only)."""
    under = _nested_past(event, MAX_DEPTH)
    if under is not None:
        return _too_deep(under)
    stack: list[tuple[Any, str]] = [(event, "")]
    while stack:
        node, path = stack.pop()
        for key, child in _children(node):
            where = _joined(path, key)
            if isinstance(key, str) and not _is_unicode(key):
                return _not_unicode(where, "key")
            if isinstance(child, str):
                if not _is_unicode(child):
                    return _not_unicode(where, "value")
            elif isinstance(child, int) and not isinstance(child, bool):
                if not INT_RANGE[0] <= child <= INT_RANGE[1]:
                    return Invalid("integer_too_large", f"{_shown_path(where)} is an integer beyond 64 bits, which "
                                   "Segment cannot take: send it as a string.")
            elif isinstance(child, CONTAINERS):
                stack.append((child, where))
    return Invalid("not_serialisable", f"The event cannot be written as JSON: {str(error)[:120]}.")


def _children(node: Any) -> Any:
    return node.items() if isinstance(node, dict) else enumerate(node)


def _joined(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    shown = key if isinstance(key, str) and _is_unicode(key) else repr(key)
    return f"{path}.{shown}" if path else shown


def _shown_path(path: str) -> str:
    return path if len(path) <= 80 else path[:80] + "…"


def _too_deep(under: str) -> Invalid:
    return Invalid("too_deeply_nested", f"The event nests objects and arrays more than {MAX_DEPTH} levels deep "
                   f"(in {under!r}): flatten it.")


def _not_unicode(path: str, what: str) -> Invalid:
    return Invalid("invalid_unicode", f"The {what} at {_shown_path(path)} holds a lone UTF-16 surrogate (half of "
                   "a character, as when a string is cut inside an emoji), which is not Unicode: fix how it is cut.")


def _is_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _glimpse(value: Any) -> str:
    """A short, safe rendering of a value for an error message: a deep repr would recurse."""
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, list | tuple):
        return "[…]"
    return repr(str(value)[:40])


def _label(kind: str, event: dict[str, Any]) -> str:
    if kind == "track":
        return str(event.get("event", ""))
    if kind in ("page", "screen"):
        return str(event.get("name") or "")
    return ""
