"""Segment's batch protocol, written once for every sender (delivery, replay, what comes next).

What it knows, and nothing else (HTTP calls stay in `integrations.segment.client`):
  - the call types and the size limits of an event and a batch;
  - the event as sent (`wire`): the stored body with the connection's own messageId spliced
    in, so that no sender parses or re-serialises a stored event;
  - how many of the next events go in one batch (`batch_cut`) and the batch's body (`batch_body`);
  - what Segment's answer means for the events sent (`outcome`);
  - how long to wait before trying again (`backoff_seconds`).
"""
from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterable
from itertools import islice

import orjson
from django.utils import timezone

from integrations.models import AttemptOutcome

TYPES = ("identify", "track", "page", "screen", "group", "alias")
# Segment refuses an event over 32 KB as sent.
MAX_EVENT_BYTES = 32 * 1024
# What delivery adds to a stored body: `,"messageId":"<uuid>"`.
SENT_MESSAGE_ID_BYTES = len(b',"messageId":""') + 36

# Segment takes 2,500 events and 500 KB a batch; like its Python SDK, cut at 475,000 bytes.
MAX_BATCH_EVENTS = 2500
MAX_BATCH_BYTES = 475_000
# What the batch envelope adds around the events: '{"batch":[' … '],"sentAt":"<ISO time>"}'.
ENVELOPE_OVERHEAD = b'{"batch":[],"sentAt":"2026-01-01T00:00:00.000000+00:00"}'
# What a batch's events may take together, each counted as its size as sent plus a comma.
BATCH_ROOM = MAX_BATCH_BYTES - len(ENVELOPE_OVERHEAD)

# The content of the batch: split it until the offending events stand alone.
REJECTED = frozenset({400, 413, 422})
# Worth another try later, like no answer at all and every 5xx but NOT_RETRIED_5XX.
RETRYABLE = frozenset({408, 410, 429, 460})
# Not implemented, HTTP version not supported: the same request will get the same answer.
NOT_RETRIED_5XX = frozenset({501, 505})
BACKOFF_FIRST_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 300.0

# Fixed namespace for per-connection messageIds: uuid5(namespace(connection), event messageId).
RELAY_NAMESPACE = uuid.UUID("7d1c1f0e-2f4b-5b8e-9a57-1f0f2c5d9e31")


def connection_namespace(connection_id: int) -> bytes:
    """The namespace of a connection's messageIds: Segment deduplicates messageIds across all
    its customers, so the copies of one event sent to several sources must differ."""
    return uuid.uuid5(RELAY_NAMESPACE, str(connection_id)).bytes


def sent_message_id(namespace: bytes, message_id: str) -> bytes:
    """`uuid.uuid5(namespace, message_id)` as text, without building UUID objects: this runs
    once per event and connection."""
    digest = bytearray(hashlib.sha1(namespace + message_id.encode()).digest()[:16])  # noqa: S324 (UUIDv5 is SHA-1)
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}".encode()


def wire(body: bytes, message_id: bytes) -> bytes:
    """The event as Segment receives it from one connection: the stored body (a JSON object,
    never empty) with that connection's messageId added."""
    return body[:-1] + b',"messageId":"' + message_id + b'"}'


def batch_cut(sent_sizes: Iterable[int]) -> int:
    """How many of the next events go in one batch, given their sizes as sent (`len(wire)`) in
    log order: as many as fit in BATCH_ROOM, at most MAX_BATCH_EVENTS, and at least one (an
    event is never larger than a batch)."""
    room, count = BATCH_ROOM, 0
    for size in islice(sent_sizes, MAX_BATCH_EVENTS):
        room -= size + 1
        if room < 0 and count:
            break
        count += 1
    return count


def batch_body(wires: Iterable[bytes]) -> bytes:
    """The body of a `/v1/batch` request from events as sent, stamped with the sending time."""
    sent_at = orjson.dumps(timezone.now().isoformat())
    return b'{"batch":[' + b",".join(wires) + b'],"sentAt":' + sent_at + b"}"


def outcome(status: int | None) -> AttemptOutcome:
    """What Segment's answer (None: no answer) means for the events sent:
      - 200: delivered;
      - 400, 413, 422: rejected for their content;
      - 408, 410, 429, 460, any other 5xx and no answer: retrying, later;
      - anything else (401, 403, 404, 501, 505…): refused, the same request will not pass.
    """
    if status == 200:
        return AttemptOutcome.DELIVERED
    if status in REJECTED:
        return AttemptOutcome.REJECTED
    if status is None or status in RETRYABLE or (status >= 500 and status not in NOT_RETRIED_5XX):
        return AttemptOutcome.RETRYING
    return AttemptOutcome.REFUSED


def backoff_seconds(failures: int, retry_after: int | None = None) -> float:
    """The wait before trying again after `failures` failed tries in a row (1 after the
    first): Segment's Retry-After when it gave one (the client caps it), else 0.5 s doubled
    with every failure up to 300 s, times a jitter of 0.5 to 1.5 so that connections that
    failed together do not all come back together."""
    if retry_after is not None:
        return float(retry_after)
    # Past 2**10 the doubling is over the cap anyway, and 2**1024 no longer fits in a float.
    doubling = min(failures - 1, 10)
    return min(BACKOFF_CAP_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** doubling) * random.uniform(0.5, 1.5)  # noqa: S311
