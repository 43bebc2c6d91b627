"""The Segment-compatible ingest API: Segment's protocol, louder errors, nothing lost."""
from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest_keys import ingest_key_create
from integrations.models import Event, RejectedEvent


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


def test_historical_events_keep_their_timestamp(client: Client, ingest_key: str) -> None:
    post(client, "track", track(1, timestamp="2024-03-01T09:30:00Z"), ingest_key)
    assert orjson.loads(bytes(Event.objects.get().body))["timestamp"].startswith("2024-03-01T09:30:00")


def test_a_key_over_its_rate_is_told_when_to_retry(client: Client, ingest_key: str, settings: Any) -> None:
    settings.INGEST_REQUESTS_PER_SECOND = 2
    time.sleep(1 - time.time() % 1)  # start of a second, so all three land in one window
    answers = [post(client, "track", track(n), ingest_key) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2]["Retry-After"] == "1" and Event.objects.count() == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
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
