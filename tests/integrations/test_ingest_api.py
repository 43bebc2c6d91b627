"""The Segment-compatible ingest API: Segment's protocol, louder errors, nothing lost."""
from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest import ratelimit
from integrations.ingest.keys import ingest_key_create
from integrations.ingest.messages import MAX_DEPTH, Invalid, normalise
from integrations.models import Event, RejectedEvent


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterator[None]:
    """Rate and failure counters live in the (per-process) cache: none carries over between tests."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ingest_key(alice: User, workspace: Workspace) -> str:
    return ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]


def post(client: Client, call: str, body: Any, key: str | None = None, **headers: Any) -> Any:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    if key is not None:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return client.post(f"/v1/{call}", data=data, content_type="application/json", **headers)


def track(n: int = 0, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Experiment Viewed", "userId": f"u{n}", "messageId": f"m-{n}", **extra}


def nested(levels: int, leaf: str = "1") -> str:
    """JSON text of `levels` objects inside one another, built as text since orjson cannot
    write past 254 levels: nested(2) == '{"a":{"a":1}}'."""
    return '{"a":' * levels + leaf + "}" * levels


def raw_track(n: int, properties: str = "{}") -> str:
    """A valid track call as JSON text, with `properties` as given (the event is level 1, so
    its properties add their own levels to one)."""
    return f'{{"type":"track","event":"E","userId":"u{n}","messageId":"m-{n}","properties":{properties}}}'


def raw_batch(*events: str) -> bytes:
    return ('{"batch":[' + ",".join(events) + "]}").encode()


def stored_ids() -> list[str]:
    return sorted(Event.objects.values_list("message_id", flat=True))


def test_a_track_call_with_basic_auth_is_stored_before_the_answer(client: Client, ingest_key: str,
                                                                  workspace: Workspace) -> None:
    response = post(client, "track", track(1), ingest_key)
    assert response.status_code == 200 and response.json()["accepted"] == 1
    event = Event.objects.get(workspace=workspace)
    assert event.message_id == "m-1" and event.name == "Experiment Viewed" and event.seq == 1


def test_the_key_may_travel_as_write_key_in_the_body(client: Client, ingest_key: str, workspace: Workspace) -> None:
    response = post(client, "batch", {"batch": [track(1)], "writeKey": ingest_key})
    assert response.status_code == 200
    assert b"writeKey" not in bytes(Event.objects.get().body)


def test_an_unknown_key_is_a_loud_401(client: Client, ingest_key: str) -> None:
    response = post(client, "track", track(1), "trb_not-a-real-key")
    assert response.status_code == 401 and response.json()["error"] == "invalid_ingest_key"
    assert "Settings → API keys" in response.json()["message"]
    assert not Event.objects.exists()


@pytest.mark.parametrize(("call", "body", "reason"), [
    ("track", {"userId": "u1"}, "missing_event"),
    ("identify", {"traits": {}}, "missing_user_or_anonymous_id"),
    ("group", {"userId": "u1"}, "missing_group_id"),
    ("alias", {"userId": "u1"}, "missing_previous_id"),
    ("alias", {"previousId": "a1"}, "missing_user_id"),
    ("track", {"userId": "u1", "event": "X", "timestamp": "yesterday"}, "invalid_timestamp"),
])
def test_an_invalid_single_call_is_a_400_naming_the_reason(client: Client, ingest_key: str, call: str,
                                                            body: dict[str, Any], reason: str) -> None:
    response = post(client, call, body, ingest_key)
    assert response.status_code == 400 and response.json()["error"] == reason
    assert RejectedEvent.objects.get().reason == reason


def test_one_bad_event_does_not_cost_the_good_ones(client: Client, ingest_key: str, workspace: Workspace) -> None:
    batch = [track(0), {"type": "track", "userId": "u1"}, track(2), {"type": "launch", "userId": "u"}, track(4),
             {"type": "track", "event": "Big", "userId": "u", "properties": {"x": "y" * 33_000}}]
    response = post(client, "batch", {"batch": batch}, ingest_key)
    assert response.status_code == 200
    answer = response.json()
    assert answer["accepted"] == 3
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [
        (1, "missing_event"), (3, "unknown_type"), (5, "event_too_large")]
    assert sorted(Event.objects.values_list("message_id", flat=True)) == ["m-0", "m-2", "m-4"]
    assert RejectedEvent.objects.filter(workspace=workspace).count() == 3


def test_nul_characters_never_reach_a_text_column(client: Client, ingest_key: str) -> None:
    batch = [track(0, userId="u\x00x", event="Na\x00me"), track(1, messageId="m\x00id")]
    answer = post(client, "batch", json.dumps({"batch": batch}).encode(), ingest_key).json()
    assert answer["accepted"] == 1 and answer["rejected"][0]["reason"] == "invalid_message_id"
    stored = Event.objects.get()
    assert (stored.user_id, stored.name) == ("ux", "Name")
    assert orjson.loads(bytes(stored.body))["userId"] == "u\x00x"  # the event itself is kept whole


@pytest.mark.parametrize(("body", "error"), [
    (b"{not json", "invalid_json"),
    (orjson.dumps({"batch": [track(n) for n in range(2501)]}), "batch_too_many_events"),
    (orjson.dumps({"batch": [track(n, properties={"p": "x" * 1000}) for n in range(600)]}), "batch_too_large"),
    (orjson.dumps({"batch": {"not": "a list"}}), "invalid_batch"),
    # Not JSON for orjson nor for the standard library's second reading (see _lenient_loads).
    (b'{"batch": [{"type": "track", "x": NaN}]}', "invalid_json"),
    (b'{"batch": [{"type": "track", "x": 1e400, "s": "\\ud83d"}]}', "invalid_json"),
    ('{"batch": [{"s": "caf\u00e9 \\ud83d"}]}'.encode("latin-1"), "invalid_json"),
    (raw_batch(raw_track(0, nested(1100))), "invalid_json"),  # past both parsers' depth
])
def test_a_request_that_is_not_a_batch_is_a_400(client: Client, ingest_key: str, body: bytes, error: str) -> None:
    response = post(client, "batch", body, ingest_key)
    assert response.status_code == 400 and response.json()["error"] == error
    assert not Event.objects.exists()


def test_gzip_bodies_are_accepted(client: Client, ingest_key: str) -> None:
    body = gzip.compress(orjson.dumps({"batch": [track(1), track(2)]}))
    response = post(client, "import", body, ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert response.status_code == 200 and Event.objects.count() == 2


def test_a_resent_message_id_is_acknowledged_and_not_stored_twice(client: Client, ingest_key: str) -> None:
    post(client, "batch", {"batch": [track(1), track(2)]}, ingest_key)
    again = post(client, "batch", {"batch": [track(2), track(3)]}, ingest_key).json()
    assert (again["accepted"], again["duplicates"]) == (1, 1)
    assert Event.objects.count() == 3


def test_the_senders_clock_skew_is_corrected_as_segment_does(client: Client, ingest_key: str) -> None:
    # The sender's clock runs 10 minutes fast: it says the event happened 5 s before it sent it.
    sent = datetime.fromisoformat("2031-01-01T12:10:00+00:00")
    happened = sent - timedelta(seconds=5)
    post(client, "batch", {"batch": [track(1, timestamp=happened.isoformat())], "sentAt": sent.isoformat()},
         ingest_key)
    stored = orjson.loads(bytes(Event.objects.get().body))
    corrected = datetime.fromisoformat(stored["timestamp"])
    received = Event.objects.get().received_at
    assert abs((received - corrected).total_seconds() - 5) < 2
    assert stored["originalTimestamp"] == happened.isoformat()
    assert datetime.fromisoformat(stored["receivedAt"]) == received


def test_a_clock_correction_that_leaves_the_calendar_refuses_that_event_alone(client: Client,
                                                                            ingest_key: str) -> None:
    answer = post(client, "batch", {"batch": [track(1, timestamp="0001-01-01T00:00:00Z"), track(2)],
                                    "sentAt": "9999-12-31T23:59:59Z"}, ingest_key)
    assert answer.status_code == 200
    (rejected,) = answer.json()["rejected"]
    assert rejected["reason"] == "invalid_timestamp" and "too far apart" in rejected["message"]
    # Its own sentAt, on a single call, the same.
    single = post(client, "track", track(3, timestamp="9999-12-31T23:59:59Z", sentAt="0001-01-01T00:00:00Z"),
                  ingest_key)
    assert single.status_code == 400 and "too far apart" in single.json()["message"]
    assert list(Event.objects.values_list("message_id", flat=True)) == [track(2)["messageId"]]


def test_an_id_of_zero_is_refused_as_missing_since_segment_would_drop_it(client: Client, ingest_key: str) -> None:
    batch = [{"type": "track", "event": "Viewed", "userId": 0},
             {"type": "identify", "anonymousId": 0.0},
             {"type": "group", "userId": "u", "groupId": 0},
             {"type": "alias", "userId": "u", "previousId": 0},
             {"type": "track", "event": "Viewed", "userId": 7}]
    answer = post(client, "batch", {"batch": batch}, ingest_key).json()
    assert [r["reason"] for r in answer["rejected"]] == [
        "missing_user_or_anonymous_id", "missing_user_or_anonymous_id", "missing_group_id", "missing_previous_id"]
    assert answer["accepted"] == 1 and Event.objects.get().user_id == "7"


@pytest.mark.parametrize(("event", "says"), [
    ({"type": "identify", "userId": True}, "userId must be a string or a number, not true."),
    ({"type": "identify", "userId": {"id": 1}}, "userId must be a string or a number, not an object."),
    ({"type": "identify", "anonymousId": "  "}, "anonymousId is only white space."),
    ({"type": "track", "userId": "u", "event": 123}, "It must be a string, not 123."),
    ({"type": "track", "userId": "u", "event": 2**70}, "It must be a string, not 1.1805916207174113e+21."),
    ({"type": "group", "userId": "u", "groupId": [1]}, "groupId must be a string or a number, not an array."),
])
def test_a_field_of_the_wrong_type_is_named_as_such(client: Client, ingest_key: str, event: dict[str, Any],
                                                     says: str) -> None:
    # The standard library writes integers past 64 bits, as a client may.
    (rejected,) = post(client, "batch", json.dumps({"batch": [event]}).encode(), ingest_key).json()["rejected"]
    assert says in rejected["message"]


def test_historical_events_keep_their_timestamp(client: Client, ingest_key: str) -> None:
    post(client, "track", track(1, timestamp="2024-03-01T09:30:00Z"), ingest_key)
    assert orjson.loads(bytes(Event.objects.get().body))["timestamp"].startswith("2024-03-01T09:30:00")


def test_a_key_over_its_rate_is_told_when_to_retry(client: Client, ingest_key: str, settings: Any) -> None:
    settings.INGEST_REQUESTS_PER_SECOND = 2
    time.sleep(1 - time.time() % 1)  # start of a second, so all three land in one window
    answers = [post(client, "track", track(n), ingest_key) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["Retry-After"] == "1" and Event.objects.count() == 2


# --- guessed keys ---------------------------------------------------------------------------


@pytest.fixture
def minute(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[float]:
    """The counters' clock, stopped 10 s into a minute (move it with minute[0] += …), and a
    limit of 3 failed authentications a minute."""
    settings.INGEST_AUTH_FAILURES_PER_MINUTE = 3
    now = [float(int(time.time()) // 60 * 60 + 10)]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(time=lambda: now[0]))
    return now


def guess(client: Client, n: int, **headers: Any) -> Any:
    return post(client, "track", track(n), f"trb_guessed-{n}", **headers)


def test_an_address_guessing_keys_gets_429_with_retry_after_and_no_database_lookup(
        client: Client, ingest_key: str, minute: list[float], django_assert_num_queries: Any) -> None:
    for n in range(3):
        with django_assert_num_queries(1):  # the key's lookup
            assert guess(client, n, REMOTE_ADDR="203.0.113.9").status_code == 401
    with django_assert_num_queries(0):
        blocked = guess(client, 3, REMOTE_ADDR="203.0.113.9")
        # A real key this process has not served yet cannot be told from a guess without a lookup.
        assert post(client, "track", track(4), ingest_key, REMOTE_ADDR="203.0.113.9").status_code == 429
    assert blocked.status_code == 429 and blocked["Retry-After"] == "50"
    assert blocked.json()["error"] == "too_many_invalid_keys"
    assert "try again in 50 s" in blocked.json()["message"] and "Settings → API keys" in blocked.json()["message"]
    # Another address is unaffected; once its key is served, the guesser's address may use it too.
    assert post(client, "track", track(5), ingest_key, REMOTE_ADDR="198.51.100.2").status_code == 200
    assert post(client, "track", track(6), ingest_key, REMOTE_ADDR="203.0.113.9").status_code == 200
    assert stored_ids() == ["m-5", "m-6"]
    minute[0] += 50  # the next minute starts afresh
    assert guess(client, 7, REMOTE_ADDR="203.0.113.9").status_code == 401


def test_a_forged_x_forwarded_for_neither_dodges_the_limit_nor_frames_another_address(
        client: Client, ingest_key: str, minute: list[float]) -> None:
    answers = [guess(client, n, REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}")
               for n in range(5)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    assert guess(client, 9, REMOTE_ADDR="198.51.100.1").status_code == 401  # not blocked by the forgery
    framed = post(client, "track", track(10), ingest_key, REMOTE_ADDR="198.51.100.3",
                  HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert framed.status_code == 200


def test_behind_trusted_proxies_the_address_they_saw_is_the_one_limited(
        client: Client, ingest_key: str, minute: list[float], settings: Any) -> None:
    settings.TRUSTED_PROXY_COUNT = 2  # a load balancer, then a reverse proxy, each appending

    def via_proxies(n: int, client_ip: str, key: str | None = None) -> Any:
        # Whatever the client wrote comes first; the two proxies append after it.
        headers = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_FOR": f"192.0.2.{n}, {client_ip}, 10.0.0.1"}
        return post(client, "track", track(n), key or f"trb_guessed-{n}", **headers)

    assert [via_proxies(n, "203.0.113.7").status_code for n in range(5)] == [401, 401, 401, 429, 429]
    assert via_proxies(5, "198.51.100.8").status_code == 401  # another client behind the same proxies
    assert via_proxies(6, "198.51.100.8", ingest_key).status_code == 200


def test_an_ipv6_host_cannot_rotate_past_the_limit_within_its_64(client: Client, db: None, minute: list[float]) -> None:
    answers = [guess(client, n, REMOTE_ADDR=f"2001:db8:1:2::{n + 1}") for n in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert guess(client, 5, REMOTE_ADDR="2001:db8:1:3::1").status_code == 401


# --- events that cannot be serialised ------------------------------------------------------


@pytest.mark.parametrize("levels", [MAX_DEPTH, 300, 1000])  # ours; past orjson's 254; past Python's repr
def test_an_event_nested_too_deep_is_refused_alone_and_the_rest_of_its_batch_stored(
        client: Client, ingest_key: str, workspace: Workspace, levels: int) -> None:
    response = post(client, "batch", raw_batch(raw_track(0), raw_track(1, nested(levels)), raw_track(2)), ingest_key)
    assert response.status_code == 200
    answer = response.json()
    assert answer["accepted"] == 2 and stored_ids() == ["m-0", "m-2"]
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, "too_deeply_nested")]
    assert f"more than {MAX_DEPTH} levels deep (in 'properties')" in answer["rejected"][0]["message"]
    rejected = RejectedEvent.objects.get(workspace=workspace)
    assert (rejected.reason, rejected.index, rejected.message_id) == ("too_deeply_nested", 1, "m-1")
    assert rejected.excerpt  # something of it is shown, however deep


def test_an_event_exactly_at_the_depth_limit_is_accepted_and_one_deeper_is_a_400(client: Client,
                                                                                 ingest_key: str) -> None:
    at_limit = post(client, "track", raw_track(0, nested(MAX_DEPTH - 1)).encode(), ingest_key)
    assert at_limit.status_code == 200 and at_limit.json()["accepted"] == 1
    too_deep = post(client, "track", raw_track(1, nested(MAX_DEPTH)).encode(), ingest_key)
    assert too_deep.status_code == 400 and too_deep.json()["error"] == "too_deeply_nested"
    assert stored_ids() == ["m-0"] and RejectedEvent.objects.get().reason == "too_deeply_nested"


def test_a_string_cut_inside_a_character_refuses_only_its_event(client: Client, ingest_key: str,
                                                                 workspace: Workspace) -> None:
    # JavaScript's JSON.stringify writes "\ud83d" for "👍".slice(0, 1): valid JSON, not Unicode.
    body = raw_batch(raw_track(0), '{"type":"track","event":"Liked \\ud83d","userId":"u1","messageId":"m-1\\udc4d"}',
                     raw_track(2, '{"\\ud83d": true}'), raw_track(3, '{"liked": "\\ud83d\\udc4d"}'))
    answer = post(client, "batch", body, ingest_key).json()
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, "invalid_unicode"), (2, "invalid_unicode")]
    assert "The value at event holds a lone UTF-16 surrogate" in answer["rejected"][0]["message"]
    assert answer["accepted"] == 2 and stored_ids() == ["m-0", "m-3"]
    assert orjson.loads(bytes(Event.objects.get(message_id="m-3").body))["properties"] == {"liked": "👍"}
    # Stored for the page without the half character PostgreSQL text cannot hold.
    assert sorted(RejectedEvent.objects.filter(workspace=workspace).values_list("message_id", flat=True)) == [
        "m-1?", "m-2"]
    single = post(client, "track", b'{"event": "Liked \\ud83d", "userId": "u9"}', ingest_key)
    assert single.status_code == 400 and single.json()["error"] == "invalid_unicode"


@pytest.mark.parametrize("also", ["", "\\ud83d"])  # read by orjson; read again by the standard library
def test_integers_past_64_bits_are_read_as_orjson_reads_them_whichever_parser_reads_the_body(
        client: Client, ingest_key: str, also: str) -> None:
    body = raw_batch(raw_track(0, '{"big": 123456789012345678901234567890, "top": 18446744073709551615, '
                                  '"low": -9223372036854775808, "huge": 1' + "0" * 300 + "}"),
                     raw_track(1, f'{{"s": "x{also}"}}'))
    answer = post(client, "batch", body, ingest_key).json()
    properties = orjson.loads(bytes(Event.objects.get(message_id="m-0").body))["properties"]
    assert properties["big"] == 1.2345678901234568e29 and isinstance(properties["big"], float)
    assert (properties["top"], properties["low"]) == (2**64 - 1, -(2**63))
    assert properties["huge"] == 1e300
    assert answer["accepted"] == (1 if also else 2)


def test_a_value_nested_deep_where_a_string_belongs_is_refused_without_a_server_error(client: Client,
                                                                                      ingest_key: str) -> None:
    deep_list = "[" * 1000 + "]" * 1000
    body = raw_batch(f'{{"type":{deep_list},"userId":"u"}}',
                     f'{{"type":"track","event":"E","userId":"u","timestamp":{deep_list}}}', raw_track(2))
    answer = post(client, "batch", body, ingest_key).json()
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(0, "unknown_type"), (1, "invalid_timestamp")]
    assert "Unknown type […]" in answer["rejected"][0]["message"] and answer["accepted"] == 1


@pytest.mark.parametrize(("properties", "reason", "where"), [
    ({"id": 2**64}, "integer_too_large", "properties.id is an integer beyond 64 bits"),
    ({"ids": [1, -(2**63) - 1]}, "integer_too_large", "properties.ids[1] is"),
    ({"name": "cut \ud83d"}, "invalid_unicode", "The value at properties.name"),
    ({"\udc4d": 1}, "invalid_unicode", "The key at properties.'\\udc4d'"),
    ({"price": Decimal("1.5")}, "not_serialisable", "Type is not JSON serializable: decimal.Decimal"),
])
def test_the_normaliser_names_what_cannot_be_serialised_and_where(properties: dict[Any, Any], reason: str,
                                                                  where: str) -> None:
    # Reached by Python callers (emit.track), whose values no JSON parser has seen.
    with pytest.raises(Invalid) as refused:
        normalise({"type": "track", "event": "E", "userId": "u", "properties": properties},
                  received_at=timezone.now())
    assert refused.value.reason == reason and where in refused.value.detail


# Strings with what trips serialisers: NUL, characters outside the BMP, and lone UTF-16
# surrogates, which json.dumps writes as "\udXXX" escapes (as JavaScript does).
odd_text = st.text(st.sampled_from("a\x00é👍") | st.integers(0xD800, 0xDFFF).map(chr), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20) | odd_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10) | odd_text, children,
                                                                      max_size=4),
    max_leaves=12,
)
event_like = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "identify", "page", "screen", "group", "alias", "nope"]) | json_values,
    "event": st.text(max_size=10) | json_values, "userId": st.text(max_size=10) | json_values,
    "anonymousId": json_values, "groupId": json_values, "previousId": json_values,
    "messageId": st.text(max_size=120) | json_values, "timestamp": st.text(max_size=30) | json_values,
    "context": json_values, "properties": json_values,
})


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(event_like | json_values, max_size=8), envelope=st.dictionaries(
    st.sampled_from(["context", "integrations", "sentAt"]), json_values, max_size=3))
def test_malformed_payloads_never_cause_a_server_error(client: Client, ingest_key: str, batch: list[Any],
                                                       envelope: dict[str, Any]) -> None:
    before = Event.objects.count()
    # The standard library writes what orjson would refuse (integers past 64 bits): a client may too.
    response = post(client, "batch", json.dumps({"batch": batch, **envelope}).encode(), ingest_key)
    assert response.status_code < 500
    if response.status_code == 200:
        answer = response.json()
        assert answer["accepted"] + answer["duplicates"] + len(answer["rejected"]) == len(batch)
        assert Event.objects.count() - before == answer["accepted"]


def deep_object(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def has_lone_surrogate(text: str) -> bool:
    """As a parser will read it: json.dumps escapes a surrogate pair split in two Python
    characters as a pair, which reads back as one whole character."""
    return any(0xD800 <= ord(c) <= 0xDFFF for c in json.loads(json.dumps(text)))


# One valid track call each, whose properties carry one oddity; the reason it must be
# refused with, or None when it must be stored.
oddity = st.one_of(
    st.integers(1, 300).map(lambda n: (deep_object(n), "too_deeply_nested" if 1 + n > MAX_DEPTH else None)),
    st.integers(0, 1500).map(lambda n: ({f"k{i}": i for i in range(n)}, None)),
    (st.integers(min_value=2**64, max_value=10**300) | st.integers(min_value=-(10**300), max_value=-(2**63) - 1))
    .map(lambda n: ({"n": n, "list": [n, -n]}, None)),
    odd_text.map(lambda t: ({"s": t, t: [t]}, "invalid_unicode" if has_lone_surrogate(t) else None)),
)


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(oddities=st.lists(oddity, min_size=1, max_size=6))
def test_deep_wide_huge_and_odd_events_are_each_refused_alone_or_stored(client: Client, ingest_key: str,
                                                                        oddities: list[tuple[Any, str | None]]
                                                                        ) -> None:
    before = Event.objects.count()
    batch = [{"type": "track", "event": "E", "userId": "u", "properties": properties} for properties, _ in oddities]
    response = post(client, "batch", json.dumps({"batch": batch}).encode(), ingest_key)
    assert response.status_code == 200
    answer = response.json()
    expected = [(index, reason) for index, (_, reason) in enumerate(oddities) if reason]
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == expected
    assert answer["accepted"] == len(batch) - len(expected) == Event.objects.count() - before


def test_rejections_are_listed_for_the_workspace_with_their_reasons(client: Client, ingest_key: str,
                                                                     alice_client: Client, bob_client: Client,
                                                                     workspace: Workspace) -> None:
    from django.urls import reverse

    page_url = reverse("integrations:rejected_events", kwargs={"slug": workspace.slug})
    assert "No rejected events" in alice_client.get(page_url).content.decode()
    post(client, "batch", {"batch": [track(0), {"type": "track", "userId": "u1", "messageId": "bad-1"}]}, ingest_key)
    for viewer in (alice_client, bob_client):  # members may look too
        page = viewer.get(page_url).content.decode()
        assert "missing_event" in page and "bad-1" in page and "batch index 1" in page


# --- answers that say what to fix -----------------------------------------------------------


@pytest.mark.parametrize(("body", "says"), [
    (b"", "The body is empty"),
    (b"\xef\xbb\xbf" + orjson.dumps(track(1)), "byte order mark"),
    ('{"type": "track", "event": "Caf\xe9"}'.encode("latin-1"), "not UTF-8 (at byte offset 31)"),
    (b'{"type": "track", "n": NaN}', "The body is not valid JSON: "),
    (b'{"type": "track"', "The body is not valid JSON: "),
])
def test_a_body_that_is_not_json_is_told_where_and_why(client: Client, ingest_key: str, body: bytes,
                                                       says: str) -> None:
    answer = post(client, "track", body, ingest_key)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_json"
    assert says in answer.json()["message"]


def test_encodings_other_than_gzip_are_named_and_a_cut_gzip_is_refused(client: Client, ingest_key: str) -> None:
    whole = gzip.compress(orjson.dumps(track(1)))
    assert post(client, "track", whole, ingest_key, HTTP_CONTENT_ENCODING="x-gzip").status_code == 200
    deflated = post(client, "track", orjson.dumps(track(2)), ingest_key, HTTP_CONTENT_ENCODING="br")
    assert deflated.status_code == 415 and "'br' is not read here" in deflated.json()["message"]
    cut = post(client, "track", gzip.compress(orjson.dumps(track(3)))[:-8], ingest_key,
               HTTP_CONTENT_ENCODING="gzip")
    assert cut.status_code == 400 and cut.json()["error"] == "invalid_gzip" and "cut short" in cut.json()["message"]
    huge = post(client, "track", gzip.compress(b" " * (3 * 1024 * 1024)), ingest_key, HTTP_CONTENT_ENCODING="gzip")
    assert huge.json()["error"] == "event_too_large" and "32 KB per event" in huge.json()["message"]
    assert list(Event.objects.values_list("message_id", flat=True)) == ["m-1"]


def test_each_key_mistake_is_told_apart(client: Client, ingest_key: str) -> None:
    def sent(**headers: Any) -> Any:
        return client.post("/v1/track", data=orjson.dumps(track(1)), content_type="application/json", **headers)

    none = sent()
    assert none.status_code == 401 and none.json()["error"] == "missing_ingest_key"
    assert none["WWW-Authenticate"].startswith("Basic")
    bearer = sent(HTTP_AUTHORIZATION=f"Bearer {ingest_key}")
    assert bearer.json()["error"] == "missing_ingest_key" and "not Basic auth" in bearer.json()["message"]
    segment_key = post(client, "track", track(1), "abcdefghijklmnopqrstuvwxyz012345")
    assert "not a Tributary ingest key (they start with trb_)" in segment_key.json()["message"]
    assert "abcdefghij" not in segment_key.content.decode()
    with_newline = post(client, "track", track(1), ingest_key + "\n")
    assert with_newline.status_code == 200  # a key read from a file keeps its newline


def test_a_wrong_method_names_the_allowed_one_and_an_unknown_path_is_404_whatever_the_method(
        client: Client) -> None:
    got = client.get("/v1/track")
    assert got.status_code == 405 and got["Allow"] == "POST"
    assert client.get("/v1/nothing").status_code == 404
