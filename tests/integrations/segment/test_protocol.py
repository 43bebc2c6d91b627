"""Segment's batch protocol as every sender uses it: the event as sent, batch cutting, the batch
body, what an answer means and how long to wait before trying again (Retry-After included)."""
from __future__ import annotations

import random
import uuid
from datetime import datetime

import orjson
import pytest
from django.utils import timezone

from integrations.models import AttemptOutcome
from integrations.segment import protocol
from integrations.segment.client import parse_retry_after

# As an ingest request stores it: compact, in the order it came, never re-serialised later.
STORED = b'{"type":"track","event":"Order Completed","userId":"u1","properties":{"total": 9.5,"b":1,"a":2}}'


def sent(seq: int, body: bytes = STORED, connection_id: int = 7) -> bytes:
    namespace = protocol.connection_namespace(connection_id)
    return protocol.wire(body, protocol.sent_message_id(namespace, f"emitter-{seq}"))


def test_the_sent_message_id_is_the_uuid5_of_the_event_in_the_connections_namespace() -> None:
    for message_id in ("client-42", "é-ünïcode-✓", "x" * 100):
        namespace = protocol.connection_namespace(7)
        expected = uuid.uuid5(uuid.uuid5(protocol.RELAY_NAMESPACE, "7"), message_id)
        assert protocol.sent_message_id(namespace, message_id) == str(expected).encode()
    # The same event sent to two sources goes under two ids, or Segment would keep only one copy.
    first, second = protocol.connection_namespace(7), protocol.connection_namespace(8)
    assert protocol.sent_message_id(first, "e1") != protocol.sent_message_id(second, "e1")
    assert protocol.sent_message_id(first, "e1") == protocol.sent_message_id(bytes(first), "e1")


def test_an_event_is_sent_as_its_stored_bytes_with_the_message_id_spliced_in() -> None:
    message_id = protocol.sent_message_id(protocol.connection_namespace(7), "emitter-1")
    as_sent = protocol.wire(STORED, message_id)
    assert as_sent == STORED[:-1] + b',"messageId":"' + message_id + b'"}'
    assert orjson.loads(as_sent) == {**orjson.loads(STORED), "messageId": message_id.decode()}
    # What it adds is what ingest reserves for it when it checks an event's size.
    assert len(as_sent) == len(STORED) + protocol.SENT_MESSAGE_ID_BYTES


def test_the_batch_body_holds_the_events_byte_for_byte_and_when_they_were_sent() -> None:
    events = [sent(1), sent(2), sent(3)]
    before = timezone.now()
    body = protocol.batch_body(iter(events))
    after = timezone.now()
    assert body.startswith(b'{"batch":[' + b",".join(events) + b'],"sentAt":"') and body.endswith(b'"}')
    parsed = orjson.loads(body)
    assert list(parsed) == ["batch", "sentAt"] and len(parsed["batch"]) == 3
    assert before <= datetime.fromisoformat(parsed["sentAt"]) <= after
    # The envelope the cut reserves room for is at least what the body adds around the events.
    assert len(body) - len(b",".join(events)) <= len(protocol.ENVELOPE_OVERHEAD)


def test_a_batch_is_cut_at_segments_event_count() -> None:
    assert protocol.batch_cut(iter([100] * (protocol.MAX_BATCH_EVENTS + 500))) == protocol.MAX_BATCH_EVENTS
    assert protocol.batch_cut([100] * protocol.MAX_BATCH_EVENTS) == protocol.MAX_BATCH_EVENTS
    assert protocol.batch_cut([100] * 3) == 3
    assert protocol.batch_cut([]) == 0


def test_a_batch_is_cut_where_the_next_event_would_pass_the_size_limit() -> None:
    # Each event takes its size as sent and a comma; the last one that fits fills the room exactly.
    assert protocol.batch_cut([protocol.BATCH_ROOM - 2, 0]) == 2
    assert protocol.batch_cut([protocol.BATCH_ROOM - 1, 0]) == 1
    # In log order: nothing skips ahead of the one that did not fit.
    assert protocol.batch_cut([protocol.BATCH_ROOM - 1, 0, 0]) == 1
    assert protocol.batch_cut([999] * 1000) == protocol.BATCH_ROOM // 1000
    # An event larger than the room still goes, alone, for Segment to refuse and the sender to dead-letter.
    assert protocol.batch_cut([protocol.BATCH_ROOM + 100, 10]) == 1


def test_a_full_batch_as_sent_stays_within_segments_limits() -> None:
    largest = b'{"type":"track","event":"Big","userId":"u1","properties":{"blob":"' \
        + b"x" * (protocol.MAX_EVENT_BYTES - protocol.SENT_MESSAGE_ID_BYTES - 90) + b'"}}'
    assert len(sent(0, largest)) <= protocol.MAX_EVENT_BYTES
    for body in (largest, STORED):
        events = [sent(seq, body) for seq in range(protocol.MAX_BATCH_EVENTS + 100)]
        cut = protocol.batch_cut(len(event) for event in events)
        assert len(protocol.batch_body(events[:cut])) <= protocol.MAX_BATCH_BYTES
        # Cut where the limit is, not well before it: one event more would (nearly) pass it.
        one_more = protocol.batch_body(events[:cut + 1])
        assert cut == protocol.MAX_BATCH_EVENTS or len(one_more) > protocol.MAX_BATCH_BYTES - 64
    # Segment's own limits: 2,500 events and 500 KB.
    assert protocol.MAX_BATCH_EVENTS <= 2500 and protocol.MAX_BATCH_BYTES < 500 * 1024


@pytest.mark.parametrize(("status", "expected"), [
    (200, AttemptOutcome.DELIVERED),
    # The batch's content: split until the offending events stand alone.
    (400, AttemptOutcome.REJECTED),
    (413, AttemptOutcome.REJECTED),
    (422, AttemptOutcome.REJECTED),
    # The key or the request: trying again changes nothing.
    (401, AttemptOutcome.REFUSED),
    (403, AttemptOutcome.REFUSED),
    (404, AttemptOutcome.REFUSED),
    (302, AttemptOutcome.REFUSED),
    (501, AttemptOutcome.REFUSED),
    (505, AttemptOutcome.REFUSED),
    # Segment, busy or down: later.
    (408, AttemptOutcome.RETRYING),
    (410, AttemptOutcome.RETRYING),
    (429, AttemptOutcome.RETRYING),
    (460, AttemptOutcome.RETRYING),
    (500, AttemptOutcome.RETRYING),
    (502, AttemptOutcome.RETRYING),
    (503, AttemptOutcome.RETRYING),
    (504, AttemptOutcome.RETRYING),
    (599, AttemptOutcome.RETRYING),
    (None, AttemptOutcome.RETRYING),  # no answer at all
])
def test_each_answer_means_what_segments_sdks_make_of_it(status: int | None,
                                                         expected: AttemptOutcome) -> None:
    assert protocol.outcome(status) == expected


def test_retry_after_is_the_wait_when_segment_gives_one() -> None:
    assert protocol.backoff_seconds(1, retry_after=3) == 3.0
    assert protocol.backoff_seconds(40, retry_after=0) == 0.0
    assert protocol.backoff_seconds(1, retry_after=300) == 300.0


@pytest.mark.parametrize(("failures", "base"), [
    (1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 128.0), (10, 256.0), (11, 300.0), (50, 300.0),
    (5000, 300.0),  # days of failures: still the cap (2**4999 would not even fit in a float)
])
def test_the_backoff_doubles_from_half_a_second_up_to_five_minutes_with_jitter(
        failures: int, base: float, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert protocol.backoff_seconds(failures) == pytest.approx(base * 0.5)
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert protocol.backoff_seconds(failures) == pytest.approx(base * 1.5)


def test_the_jitter_spreads_connections_that_failed_together() -> None:
    waits = [protocol.backoff_seconds(3) for _ in range(200)]
    assert all(1.0 <= wait <= 3.0 for wait in waits)
    assert max(waits) - min(waits) > 1.0  # not all together again
    assert all(150.0 <= protocol.backoff_seconds(10_000) <= 450.0 for _ in range(50))


@pytest.mark.parametrize(("header", "seconds"), [
    ("5", 5), (" 7 ", 7), ("99999", 300), ("", None), (None, None),
    # What no Segment sends, from a proxy in the way: as if there were no header, never an error
    # that would stop the delivery run.
    ("soon", None), ("²", None), ("-3", None), ("Thu, 31 Feb 2026 25:00:00 GMT", None),
])
def test_a_retry_after_header_is_read_as_seconds_or_ignored(header: str | None, seconds: int | None) -> None:
    assert parse_retry_after(header) == seconds
