"""The JSON the tracking API reads, as msgspec types: only what Segment's rules look at.

Decoding into these types skips everything else (properties, context, traits) without
building a Python object for it, which is most of what made parsing a batch expensive.
The bodies are kept as bytes and decoded in full only when the control API asks for them.

One parser for the tracking API: a body is valid JSON when msgspec accepts it and it is
UTF-8 (`is_utf8`), so an accepted body decodes again with `decode_any` when it is listed.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec


class Event(msgspec.Struct, rename="camel", gc=False):
    """The fields of one call that the rules read; absent and null both decode to None.

    `gc=False`: an Event holds only freshly decoded values, which cannot refer back to it,
    so it can never be part of a reference cycle and the collector need not track it.
    """

    type: Any = None
    user_id: Any = None
    anonymous_id: Any = None
    event: Any = None
    group_id: Any = None
    previous_id: Any = None
    message_id: Any = None
    # Read only where the call is the whole body (/v1/track and friends), as a credential.
    write_key: Any = None


# Every JSON value: objects become Events, anything else stays as it was sent, so a batch
# holding a non-object still decodes and that item is dropped as not_an_object.
Item = Event | list[Any] | str | int | float | bool | None


class Batch(msgspec.Struct, rename="camel", gc=False):
    batch: list[Item]
    write_key: Any = None


class RawBatch(msgspec.Struct, gc=False):
    """A batch's items as the exact bytes they were sent in: their size is Segment's measure."""

    batch: list[msgspec.Raw]


# float_hook: a number beyond a double's range (1e400) is valid JSON; it decodes to
# infinity wherever it is read instead of failing in one decoder and not in another.
EVENT_DECODER: Final = msgspec.json.Decoder(Event, float_hook=float)
BATCH_DECODER: Final = msgspec.json.Decoder(Batch, float_hook=float)
RAW_BATCH_DECODER: Final = msgspec.json.Decoder(RawBatch)
ANY_DECODER: Final = msgspec.json.Decoder(float_hook=float)

# What a decoder raises for a body it refuses. Nesting deeper than the interpreter's
# recursion limit (close to 1,000 levels) raises RecursionError.
DECODE_ERRORS: Final = (msgspec.MsgspecError, RecursionError)


def is_utf8(body: bytes) -> bool:
    """Whether the body is UTF-8, as JSON must be.

    msgspec checks the strings it decodes but not the ones it skips, so this is checked
    once up front. Almost every body is ASCII, which `isascii` confirms at memory speed.
    """
    if body.isascii():
        return True
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True


def decode_any(body: bytes) -> Any:
    """The whole document as dicts, lists and scalars. Raises one of DECODE_ERRORS."""
    return ANY_DECODER.decode(body)


def as_event(item: Any) -> Any:
    """An item of a generically decoded batch as the screening loop sees it."""
    return msgspec.convert(item, Event) if type(item) is dict else item
