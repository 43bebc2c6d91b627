"""The Segment emulator, over real HTTP, against the behaviour of /work/shared/segment-api.md."""

from __future__ import annotations

import base64
import gzip
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from segment_emulator.client import EmulatorClient, EmulatorError
from segment_emulator.testing import REPO_ROOT, emulator_command, free_ports, run_emulator

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    with run_emulator() as client:
        yield client


@pytest.fixture(scope="module")
def small_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorClient]:
    """Tiny buffers and a one-second dedupe window, with keys given on the command line."""
    keys_file = tmp_path_factory.mktemp("keys") / "keys.json"
    keys_file.write_text(json.dumps({"file-key-eu-0001": "eu"}))
    with run_emulator(
        max_events=10,
        max_requests=5,
        dedupe_window=1,
        keys_file=keys_file,
        register={"flag-key-us-0001": "us"},
    ) as client:
        yield client


def new_key(emulator: EmulatorClient, region: str | None = "us") -> str:
    """A write key no other test uses, registered in `region` unless it is None."""
    write_key = f"key-{uuid.uuid4().hex[:16]}"
    if region is not None:
        emulator.register_key(write_key, region)
    return write_key


def message_id() -> str:
    return str(uuid.uuid4())


def basic(write_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{write_key}:".encode()).decode()
    return {**JSON, "Authorization": f"Basic {token}"}


def track(**fields: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": "user-1",
        "event": "Order Completed",
        "messageId": message_id(),
        **fields,
    }


def post(
    emulator: EmulatorClient,
    call: str,
    body: Any,
    write_key: str,
    region: str = "us",
    headers: dict[str, str] | None = None,
) -> requests.Response:
    """POST raw bytes (or JSON) with Basic auth, as a Segment library would."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**basic(write_key), **(headers or {})}
    return requests.post(f"{emulator.url(region)}/v1/{call}", data=data, headers=headers, timeout=10)


def last_request(emulator: EmulatorClient, write_key: str) -> dict[str, Any]:
    return emulator.requests(write_key=write_key, limit=1)[-1]


SINGLE_CALLS: dict[str, dict[str, Any]] = {
    "identify": {"userId": "user-1", "traits": {"email": "ada@example.com"}},
    "track": {"userId": "user-1", "event": "Signed Up"},
    "page": {"anonymousId": "anon-1", "name": "Pricing"},
    "screen": {"userId": "user-1", "name": "Home"},
    "group": {"userId": "user-1", "groupId": "acme"},
    "alias": {"previousId": "anon-1", "userId": "user-1"},
}


@pytest.mark.parametrize("call", sorted(SINGLE_CALLS))
def test_every_single_call_is_accepted_with_its_type_implied_by_the_path(
    emulator: EmulatorClient, call: str
) -> None:
    write_key = new_key(emulator)
    sent_id = message_id()

    response = post(emulator, call, {**SINGLE_CALLS[call], "messageId": sent_id}, write_key)

    assert response.status_code == 200
    assert response.json() == {"success": True}
    [event] = emulator.events(write_key=write_key)
    assert event["payload"]["type"] == call
    assert event["payload"]["messageId"] == sent_id
    assert event["path"] == f"/v1/{call}"


def test_a_batch_is_accepted_event_by_event(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    batch = [track(), {"type": "identify", "userId": "user-2", "messageId": message_id()}, {"type": "track"}]

    response = post(emulator, "batch", {"batch": batch}, write_key)

    assert response.json() == {"success": True}
    record = last_request(emulator, write_key)
    assert (record["events"], record["accepted"]) == (3, 2)
    assert record["dropped"] == {"missing_user_or_anonymous_id": 1}
    assert [e["payload"]["type"] for e in emulator.events(write_key=write_key)] == ["track", "identify"]


def test_import_is_the_same_as_batch(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = post(emulator, "import", {"batch": [track(), track()]}, write_key)

    assert response.status_code == 200
    assert emulator.stats(write_key)["accepted"] == 2


def test_batch_context_and_integrations_apply_to_each_event_with_the_event_winning(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)
    body = {
        "batch": [track(context={"ip": "203.0.113.9"}), track()],
        "context": {"ip": "198.51.100.1", "library": {"name": "tributary", "version": "0.1.0"}},
        "integrations": {"All": False},
    }

    post(emulator, "batch", body, write_key)

    first, second = (e["payload"] for e in emulator.events(write_key=write_key))
    assert first["context"] == {"ip": "203.0.113.9", "library": {"name": "tributary", "version": "0.1.0"}}
    assert second["context"]["ip"] == "198.51.100.1"
    assert second["integrations"] == {"All": False}


def test_the_write_key_may_come_in_the_body_instead_of_basic_auth(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = requests.post(
        f"{emulator.us_url}/v1/track", json={**track(), "writeKey": write_key}, timeout=10
    )

    assert response.status_code == 200
    assert emulator.stats(write_key)["accepted"] == 1
    assert "writeKey" not in emulator.events(write_key=write_key)[0]["payload"]


def test_basic_auth_without_the_colon_after_the_key_is_not_a_write_key(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    header = "Basic " + base64.b64encode(write_key.encode()).decode()

    response = requests.post(
        f"{emulator.us_url}/v1/track", json=track(), headers={"Authorization": header}, timeout=10
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_write_key"
    assert emulator.stats(write_key)["accepted"] == 0


def test_a_gzip_body_is_accepted(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    body = gzip.compress(json.dumps({"batch": [track(), track()]}).encode())

    response = post(emulator, "batch", body, write_key, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 200
    assert emulator.stats(write_key)["accepted"] == 2


def test_a_body_that_is_not_gzip_although_it_says_so_is_answered_400(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = post(emulator, "track", track(), write_key, headers={"Content-Encoding": "gzip"})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_content_encoding"


def test_an_unknown_key_is_answered_200_and_its_events_are_dropped(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator, region=None)

    response = post(emulator, "batch", {"batch": [track(), track()]}, write_key)

    assert response.status_code == 200
    assert response.json() == {"success": True}
    stats = emulator.stats(write_key)
    assert (stats["accepted"], stats["droppedByReason"]) == (0, {"unknown_key": 2})


@pytest.mark.parametrize("write_key", ["", "short", " " * 10])
def test_an_empty_or_short_write_key_is_answered_400(emulator: EmulatorClient, write_key: str) -> None:
    response = post(emulator, "track", track(), write_key)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_write_key"


def test_a_key_of_eight_characters_is_long_enough(emulator: EmulatorClient) -> None:
    response = post(emulator, "track", track(), "8-chars!")

    assert response.status_code == 200


def test_invalid_json_is_answered_400(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = post(emulator, "track", b'{"userId": "user-1", "event": ', write_key)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_json"
    assert last_request(emulator, write_key)["status"] == 400


def test_a_body_that_is_not_json_by_its_content_type_is_answered_400(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = post(emulator, "track", track(), write_key, headers={"Content-Type": "text/plain"})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_content_type"


def padded_body(size: int, **fields: Any) -> bytes:
    """A JSON object of exactly `size` bytes, padded through a "pad" property."""
    empty = json.dumps({**fields, "properties": {"pad": ""}}, separators=(",", ":")).encode()
    return json.dumps(
        {**fields, "properties": {"pad": "x" * (size - len(empty))}}, separators=(",", ":")
    ).encode()


def test_a_single_event_of_32_kb_is_accepted_and_one_byte_more_is_answered_400(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)
    fields = {"userId": "user-1", "event": "Big", "messageId": message_id()}

    at_limit = post(emulator, "track", padded_body(32_768, **fields), write_key)
    over_limit = post(
        emulator, "track", padded_body(32_769, **{**fields, "messageId": message_id()}), write_key
    )

    assert at_limit.status_code == 200
    assert over_limit.status_code == 400
    assert over_limit.json()["error"] == "event_too_large"
    assert "32 KB" in over_limit.json()["message"]


def test_a_batch_holding_one_event_over_32_kb_is_answered_400(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    big = json.loads(padded_body(32_769, type="track", userId="user-1", event="Big", messageId=message_id()))
    batch = [track() for _ in range(200)] + [big] + [track() for _ in range(200)]

    response = post(emulator, "batch", {"batch": batch}, write_key)

    assert response.status_code == 400
    assert response.json()["error"] == "event_too_large"
    assert emulator.stats(write_key)["rejectedByReason"] == {"event_too_large": 401}


def batch_body(size: int, events: int) -> bytes:
    """A batch body of exactly `size` bytes made of `events` equally padded track events."""
    items = [{**track(), "properties": {"pad": ""}} for _ in range(events)]
    base = len(json.dumps({"batch": items}, separators=(",", ":")))
    share, rest = divmod(size - base, events)
    for index, item in enumerate(items):
        item["properties"]["pad"] += "x" * (share + (1 if index < rest else 0))
    body = json.dumps({"batch": items}, separators=(",", ":")).encode()
    assert len(body) == size
    return body


def test_a_batch_of_500_kb_is_accepted_and_one_byte_more_is_answered_400(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    at_limit = post(emulator, "batch", batch_body(512_000, events=20), write_key)
    over_limit = post(emulator, "batch", batch_body(512_001, events=20), write_key)

    assert at_limit.status_code == 200
    assert over_limit.status_code == 400
    assert over_limit.json()["error"] == "batch_too_large"
    assert "500 KB" in over_limit.json()["message"]
    assert emulator.stats(write_key)["accepted"] == 20


def test_events_past_2500_in_a_batch_are_answered_200_and_dropped_as_over_the_limit(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)
    batch = [{"type": "track", "userId": "u", "event": "E", "messageId": message_id()} for _ in range(2_501)]

    response = post(emulator, "batch", {"batch": batch}, write_key)

    assert response.status_code == 200
    record = last_request(emulator, write_key)
    assert (record["accepted"], record["dropped"]) == (2_500, {"over_batch_limit": 1})
    assert emulator.events(write_key=write_key, message_id=batch[-1]["messageId"]) == []


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": "identify", "traits": {"name": "Ada"}}, "missing_user_or_anonymous_id"),
        ({"type": "track", "userId": "user-1"}, "missing_event"),
        ({"type": "track", "anonymousId": "anon-1", "event": ""}, "missing_event"),
        ({"type": "group", "userId": "user-1"}, "missing_group_id"),
        ({"type": "alias", "userId": "user-1"}, "missing_previous_id"),
        ({"type": "alias", "previousId": "anon-1", "anonymousId": "anon-1"}, "missing_user_id"),
        ({"type": "purchase", "userId": "user-1"}, "invalid_type"),
        ({"type": "track", "userId": "user-1", "event": "E", "messageId": "m" * 101}, "invalid_message_id"),
    ],
)
def test_an_event_missing_a_required_field_is_answered_200_and_dropped_with_a_reason(
    emulator: EmulatorClient, event: dict[str, Any], reason: str
) -> None:
    write_key = new_key(emulator)

    # With a messageId, so the whole-batch check runs too and must not wave the event through.
    event = {"messageId": message_id(), **event}

    response = post(emulator, "batch", {"batch": [event, track()]}, write_key)

    assert response.status_code == 200
    assert last_request(emulator, write_key)["dropped"] == {reason: 1}
    assert emulator.stats(write_key)["accepted"] == 1


def test_an_alias_needs_no_anonymous_id(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    post(emulator, "alias", {"previousId": "anon-1", "userId": "user-1"}, write_key)

    assert emulator.stats(write_key)["accepted"] == 1


def test_a_message_id_already_accepted_is_dropped_as_a_duplicate_even_for_another_key(
    emulator: EmulatorClient,
) -> None:
    first_key, second_key = new_key(emulator), new_key(emulator)
    repeated = track()

    post(emulator, "track", repeated, first_key)
    post(emulator, "batch", {"batch": [repeated, repeated, track()]}, second_key)

    assert emulator.stats(first_key)["accepted"] == 1
    second = emulator.stats(second_key)
    assert (second["accepted"], second["duplicates"]) == (1, 2)
    assert len(emulator.events(message_id=repeated["messageId"])) == 1


def test_a_message_id_repeated_within_one_batch_is_accepted_once(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    repeated = track()

    post(emulator, "batch", {"batch": [repeated, track(), repeated]}, write_key)

    stats = emulator.stats(write_key)
    assert (stats["accepted"], stats["duplicates"]) == (2, 1)
    assert last_request(emulator, write_key)["messageIds"][0] == repeated["messageId"]


def test_each_event_of_a_mixed_batch_is_judged_by_the_rules_of_its_own_type(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    group_without_group_id = {
        "type": "group",
        "userId": "user-1",
        "event": "Joined",
        "messageId": message_id(),
    }
    track_without_event = {"type": "track", "userId": "user-1", "groupId": "acme", "messageId": message_id()}

    post(emulator, "batch", {"batch": [group_without_group_id, track_without_event]}, write_key)

    assert last_request(emulator, write_key)["dropped"] == {"missing_group_id": 1, "missing_event": 1}
    assert emulator.stats(write_key)["accepted"] == 0


def test_a_batch_item_that_is_not_an_object_is_dropped(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    response = post(emulator, "batch", {"batch": ["Order Completed", track(), None]}, write_key)

    assert response.status_code == 200
    assert last_request(emulator, write_key)["dropped"] == {"not_an_object": 2}
    assert emulator.stats(write_key)["accepted"] == 1


def test_a_message_id_of_a_dropped_event_is_not_remembered(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    unknown_key = new_key(emulator, region=None)
    event = track()

    post(emulator, "track", event, unknown_key)
    post(emulator, "track", event, write_key)

    assert emulator.stats(write_key)["accepted"] == 1


def test_a_message_id_is_accepted_again_once_the_dedupe_window_has_passed(
    small_emulator: EmulatorClient,
) -> None:
    event = track()

    post(small_emulator, "track", event, "flag-key-us-0001")
    post(small_emulator, "track", event, "flag-key-us-0001")
    time.sleep(1.1)
    post(small_emulator, "track", event, "flag-key-us-0001")

    stats = small_emulator.stats("flag-key-us-0001")
    assert (stats["accepted"], stats["duplicates"]) == (2, 1)


def test_an_event_without_a_message_id_is_given_one(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)

    post(emulator, "track", {"userId": "user-1", "event": "Signed Up"}, write_key)

    [event] = emulator.events(write_key=write_key)
    assigned = event["payload"]["messageId"]
    assert assigned.startswith("api-")
    assert last_request(emulator, write_key)["messageIds"] == [assigned]


def test_an_empty_message_id_in_a_batch_is_replaced_by_an_assigned_one(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    kept = track()

    post(emulator, "batch", {"batch": [track(messageId=""), kept]}, write_key)

    first, second = (e["payload"]["messageId"] for e in emulator.events(write_key=write_key))
    assert first.startswith("api-")
    assert second == kept["messageId"]


def test_the_cdn_answers_404_for_a_key_it_does_not_know(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator, region=None)

    response = requests.get(f"{emulator.cdn_url}/v1/projects/{write_key}/settings", timeout=10)

    assert response.status_code == 404
    assert response.text == "Invalid path or write key provided."


@pytest.mark.parametrize(
    ("region", "api_host"), [("us", "api.segment.io/v1"), ("eu", "events.eu1.segmentapis.com/v1")]
)
@pytest.mark.parametrize("port", ["us", "eu"])
def test_the_cdn_settings_name_the_real_segment_host_of_the_key_region(
    emulator: EmulatorClient, region: str, api_host: str, port: str
) -> None:
    write_key = new_key(emulator, region)

    response = requests.get(f"{emulator.url(port)}/v1/projects/{write_key}/settings", timeout=10)

    assert response.status_code == 200
    segment = response.json()["integrations"]["Segment.io"]
    assert (segment["apiKey"], segment["apiHost"]) == (write_key, api_host)


def test_an_unregistered_key_is_unknown_to_the_cdn_and_its_events_are_dropped(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)

    assert emulator.unregister_key(write_key) is True
    settings = requests.get(f"{emulator.cdn_url}/v1/projects/{write_key}/settings", timeout=10)
    tracked = post(emulator, "track", track(), write_key)

    assert settings.status_code == 404
    assert tracked.status_code == 200
    assert emulator.stats(write_key)["droppedByReason"] == {"unknown_key": 1}
    assert emulator.unregister_key(write_key) is False


def test_an_eu_key_sent_to_the_us_endpoint_is_answered_200_and_dropped(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator, "eu")

    response = post(emulator, "track", track(), write_key, region="us")

    assert response.json() == {"success": True}
    assert emulator.stats(write_key)["droppedByReason"] == {"wrong_region": 1}
    assert post(emulator, "track", track(), write_key, region="eu").status_code == 200
    assert emulator.stats(write_key)["accepted"] == 1


def test_a_us_key_sent_to_the_eu_endpoint_is_answered_200_and_dropped(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator, "us")

    response = post(emulator, "batch", {"batch": [track(), track()]}, write_key, region="eu")

    assert response.status_code == 200
    stats = emulator.stats(write_key)
    assert (stats["accepted"], stats["droppedByReason"]) == (0, {"wrong_region": 2})
    assert last_request(emulator, write_key)["region"] == "eu"


def test_a_429_fault_answers_with_retry_after_for_its_duration_then_lets_requests_through(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, status=429, retry_after=5, seconds=1)

    limited = [post(emulator, "track", track(), write_key) for _ in range(2)]
    time.sleep(1.1)
    after = post(emulator, "track", track(), write_key)

    assert [r.status_code for r in limited] == [429, 429]
    assert limited[0].headers["Retry-After"] == "5"
    assert limited[0].headers["X-RateLimit-Reset"] == "1"
    assert after.status_code == 200
    stats = emulator.stats(write_key)
    assert (stats["accepted"], stats["statuses"], stats["rejected"]) == (1, {"429": 2, "200": 1}, 2)


def test_a_5xx_count_fault_fails_exactly_that_many_requests(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, status=503, count=3)
    event = track()

    statuses = [post(emulator, "track", event, write_key).status_code for _ in range(4)]

    assert statuses == [503, 503, 503, 200]
    records = emulator.requests(write_key=write_key)
    assert [r["messageIds"] for r in records] == [[event["messageId"]]] * 4
    assert [r["fault"] for r in records] == ["503", "503", "503", None]
    assert emulator.stats(write_key)["accepted"] == 1


def test_a_latency_fault_delays_the_answer(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, latency_ms=400, count=1)

    started = time.monotonic()
    slow = post(emulator, "track", track(), write_key)
    slow_seconds = time.monotonic() - started
    started = time.monotonic()
    post(emulator, "track", track(), write_key)
    fast_seconds = time.monotonic() - started

    assert slow.status_code == 200
    assert slow_seconds >= 0.4
    assert fast_seconds < 0.3
    assert [r["fault"] for r in emulator.requests(write_key=write_key)] == ["latency 400ms", None]


def test_a_client_that_times_out_on_a_slow_answer_still_had_its_events_accepted(
    emulator: EmulatorClient,
) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, latency_ms=500, count=1)
    event = track()

    with pytest.raises(requests.Timeout):
        requests.post(f"{emulator.us_url}/v1/track", json=event, headers=basic(write_key), timeout=0.1)
    time.sleep(0.6)
    retry = post(emulator, "track", event, write_key)

    assert retry.status_code == 200
    stats = emulator.stats(write_key)
    assert (stats["accepted"], stats["duplicates"]) == (1, 1)


def test_a_reset_fault_closes_the_connection_without_an_answer(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, reset=True, count=1)

    with pytest.raises(requests.ConnectionError):
        post(emulator, "track", track(), write_key)
    after = post(emulator, "track", track(), write_key)

    assert after.status_code == 200
    first = emulator.requests(write_key=write_key)[0]
    assert (first["status"], first["answered"], first["accepted"]) == (None, "connection reset", 0)
    assert emulator.stats(write_key)["statuses"] == {"reset": 1, "200": 1}


def test_a_cdn_fault_leaves_tracking_alone_and_a_tracking_fault_leaves_the_cdn_alone(
    emulator: EmulatorClient,
) -> None:
    cdn_key, tracking_key = new_key(emulator), new_key(emulator)
    emulator.set_fault(cdn_key, scope="cdn", status=500)
    emulator.set_fault(tracking_key, scope="tracking", status=500)

    def settings(write_key: str) -> int:
        return requests.get(f"{emulator.cdn_url}/v1/projects/{write_key}/settings", timeout=10).status_code

    assert (settings(cdn_key), post(emulator, "track", track(), cdn_key).status_code) == (500, 200)
    assert (settings(tracking_key), post(emulator, "track", track(), tracking_key).status_code) == (200, 500)
    assert emulator.clear_faults(cdn_key) == 1
    assert settings(cdn_key) == 200


def test_clearing_all_faults_restores_normal_answers(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    emulator.set_fault(write_key, scope="all", status=502)

    assert post(emulator, "track", track(), write_key).status_code == 502
    assert any(f["writeKey"] == write_key for f in emulator.faults())
    emulator.clear_faults()
    assert emulator.faults() == []
    assert post(emulator, "track", track(), write_key).status_code == 200


def test_the_control_api_refuses_a_fault_that_does_nothing_and_a_short_key(emulator: EmulatorClient) -> None:
    with pytest.raises(EmulatorError, match="status"):
        emulator.set_fault("some-write-key", seconds=5)
    with pytest.raises(EmulatorError, match="8 characters"):
        emulator.register_key("short", "us")
    with pytest.raises(EmulatorError, match="region"):
        emulator.register_key("long-enough-key", "apac")


def test_the_request_log_filters_by_key_message_id_and_cursor(emulator: EmulatorClient) -> None:
    write_key, other_key = new_key(emulator), new_key(emulator)
    post(emulator, "track", track(), write_key)
    cursor = emulator.last_request_id()
    wanted = track()
    post(emulator, "batch", {"batch": [wanted, track(event="")]}, write_key)
    post(emulator, "track", track(), other_key)

    [record] = emulator.requests(write_key=write_key, since=cursor)

    assert record["path"] == "/v1/batch"
    assert (record["status"], record["events"], record["accepted"]) == (200, 2, 1)
    assert record["dropped"] == {"missing_event": 1}
    assert record["messageIds"][0] == wanted["messageId"]
    assert emulator.requests(message_id=wanted["messageId"]) == [record]
    assert len(emulator.requests(write_key=write_key)) == 2


def test_settings_requests_are_logged_apart_from_tracking_requests(emulator: EmulatorClient) -> None:
    write_key = new_key(emulator)
    requests.get(f"{emulator.cdn_url}/v1/projects/{write_key}/settings", timeout=10)

    [record] = emulator.requests(write_key=write_key, kind="settings")

    assert (record["status"], record["kind"]) == (200, "settings")
    stats = emulator.stats(write_key)
    assert (stats["requests"], stats["settingsRequests"]) == (0, 1)


def test_stats_stay_exact_after_the_event_buffer_and_request_log_roll_over(
    small_emulator: EmulatorClient,
) -> None:
    write_key = "file-key-eu-0001"
    batches = [[track() for _ in range(4)] for _ in range(6)]

    for batch in batches:
        post(small_emulator, "batch", {"batch": batch}, write_key, region="eu")

    sent_ids = [e["messageId"] for b in batches for e in b]
    events = small_emulator.events(write_key=write_key)
    assert [e["payload"]["messageId"] for e in events] == sent_ids[-10:]
    newest = small_emulator.events(write_key=write_key, limit=6)
    assert [e["payload"]["messageId"] for e in newest] == sent_ids[-6:]
    assert len(small_emulator.requests(write_key=write_key)) == 5
    stats = small_emulator.stats(write_key)
    assert (stats["requests"], stats["received"], stats["accepted"]) == (6, 24, 24)


def test_reset_forgets_everything_but_the_keys_unless_asked(small_emulator: EmulatorClient) -> None:
    event = track()
    post(small_emulator, "track", event, "flag-key-us-0001")
    small_emulator.set_fault("flag-key-us-0001", status=500)

    small_emulator.reset()

    assert small_emulator.stats()["total"]["requests"] == 0
    assert small_emulator.requests() == small_emulator.events() == small_emulator.faults() == []
    assert post(small_emulator, "track", event, "flag-key-us-0001").status_code == 200
    assert small_emulator.stats("flag-key-us-0001")["accepted"] == 1  # the messageId was forgotten too
    small_emulator.reset(keys=True)
    assert small_emulator.keys() == {}


def test_the_emulator_starts_with_one_command_logs_its_urls_and_stops_cleanly_on_sigterm(
    tmp_path: Path,
) -> None:
    us_port, eu_port = free_ports(2)
    write_key = "secret-write-key-abcd"
    log = tmp_path / "emulator.log"
    options = {"register": {write_key: "eu"}, "log_level": "debug"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            emulator_command(us_port, eu_port, options, cpu=None),
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    try:
        client = EmulatorClient(f"http://127.0.0.1:{eu_port}")
        deadline = time.monotonic() + 15
        while "emulator.started" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.keys() == {write_key: "eu"}
        # Even at debug level, where every request is logged, the key shows masked only.
        client.send("track", track(), write_key=write_key, region="eu")
        requests.get(f"{client.cdn_url}/v1/projects/{write_key}/settings", timeout=10)
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=10)

    text = log.read_text()
    assert returncode == 0
    assert f"us=http://127.0.0.1:{us_port}" in text
    assert f"eu=http://127.0.0.1:{eu_port}" in text
    assert "emulator.request" in text
    assert "emulator.stopped" in text
    assert write_key not in text
    assert "•••• abcd" in text
