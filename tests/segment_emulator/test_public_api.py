"""The emulator's Segment Public API, over real HTTP, against /work/shared/segment-management.md."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests

from segment_emulator.client import EmulatorClient
from segment_emulator.testing import run_emulator

OWNER = "emu-owner-token-0001"
SOURCE_ADMIN = "emu-admin-token-0001"
READ_ONLY = "emu-read-token-0001"


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorClient]:
    tokens = [f"{OWNER}:owner:us", f"{SOURCE_ADMIN}:source_admin:us", f"{READ_ONLY}:read_only:us"]
    with run_emulator(public_token=tokens, register={"cli-key-us-0001": "us"},
                      source_name=["cli-key-us-0001=From the command line"]) as client:
        yield client


def call(emulator: EmulatorClient, method: str, path: str, token: str = OWNER, region: str = "us",
         **kwargs: Any) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.segment.v1+json"}
    return requests.request(method, emulator.url(region) + path, headers=headers, timeout=10, **kwargs)


def new_source(emulator: EmulatorClient, name: str = "Checkout") -> tuple[str, str]:
    write_key = f"key-{uuid.uuid4().hex[:16]}"
    return emulator.add_source(write_key, name), write_key


def test_the_workspace_answers_to_a_token_of_its_region_only(emulator: EmulatorClient) -> None:
    answer = call(emulator, "GET", "/")
    assert answer.status_code == 200
    assert answer.json()["data"]["workspace"]["name"] == "Emulated Segment (US)"
    assert call(emulator, "GET", "/", region="eu").status_code == 401
    unknown = call(emulator, "GET", "/", token="made-up-token-0001")
    assert unknown.status_code == 401 and unknown.json()["errors"][0]["type"] == "unauthorized"


def test_a_revoked_token_is_refused(emulator: EmulatorClient) -> None:
    emulator.add_public_token("emu-revoke-me-0001")
    assert call(emulator, "GET", "/sources", token="emu-revoke-me-0001").status_code == 200
    assert emulator.revoke_public_token("emu-revoke-me-0001")
    assert call(emulator, "GET", "/sources", token="emu-revoke-me-0001").status_code == 401


def test_sources_carry_their_write_keys_only_for_source_admins(emulator: EmulatorClient) -> None:
    source_id, write_key = new_source(emulator)
    for token, expected in ((OWNER, [write_key]), (SOURCE_ADMIN, [write_key]), (READ_ONLY, [])):
        source = call(emulator, "GET", f"/sources/{source_id}", token=token).json()["data"]["source"]
        assert source["writeKeys"] == expected
        assert source["name"] == "Checkout" and source["enabled"] is True


def test_a_key_named_on_the_command_line_is_a_source_with_that_name(emulator: EmulatorClient) -> None:
    names = [s["name"] for s in call(emulator, "GET", "/sources").json()["data"]["sources"]]
    assert "From the command line" in names


def test_ten_thousand_sources_page_through_opaque_cursors() -> None:
    with run_emulator(public_token=[f"{OWNER}:owner:eu"]) as emulator:
        emulator.add_sources(10_000, region="eu")
        seen: list[str] = []
        cursor = None
        while True:
            params = {"pagination.count": 1000, **({"pagination.cursor": cursor} if cursor else {})}
            data = call(emulator, "GET", "/sources", region="eu", params=params).json()["data"]
            seen += [s["id"] for s in data["sources"]]
            cursor = data["pagination"].get("next")
            if cursor is None:
                break
            assert not cursor.isdigit()
        assert len(seen) == len(set(seen)) == 10_000
        assert data["pagination"]["totalEntries"] == 10_000


def test_a_page_size_past_1000_or_a_forged_cursor_is_refused(emulator: EmulatorClient) -> None:
    assert call(emulator, "GET", "/sources", params={"pagination.count": 1001}).status_code == 422
    assert call(emulator, "GET", "/sources", params={"pagination.cursor": "NTA="}).status_code == 422


def test_a_rate_limit_fault_answers_429_with_ms_before_next(emulator: EmulatorClient) -> None:
    emulator.set_fault(OWNER, scope="public", status=429, retry_after=3, count=1)
    answer = call(emulator, "GET", "/labels")
    assert answer.status_code == 429
    assert answer.json()["errors"][0]["data"]["msBeforeNext"] == 3000
    reset = parsedate_to_datetime(answer.headers["X-RateLimit-Reset"])
    assert timedelta(seconds=1) < reset - datetime.now(UTC) <= timedelta(seconds=4)
    assert call(emulator, "GET", "/labels").status_code == 200
    logged = emulator.requests(kind="public")
    assert [r["status"] for r in logged[-2:]] == [429, 200]
    assert all(OWNER not in str(r) for r in logged)


def test_labels_must_exist_before_a_source_gets_them(emulator: EmulatorClient) -> None:
    source_id, _ = new_source(emulator)
    label = {"key": "tier", "value": f"gold-{uuid.uuid4().hex[:6]}"}
    missing = call(emulator, "POST", f"/sources/{source_id}/labels", json={"labels": [label]})
    assert missing.status_code == 404 and "Label not found" in missing.json()["errors"][0]["message"]
    assert call(emulator, "POST", "/labels", token=SOURCE_ADMIN, json={"label": label}).status_code == 401
    assert call(emulator, "POST", "/labels", json={"label": label}).status_code == 201
    added = call(emulator, "POST", f"/sources/{source_id}/labels", token=SOURCE_ADMIN, json={"labels": [label]})
    assert added.status_code == 200 and label in added.json()["data"]["labels"]
    assert call(emulator, "POST", f"/sources/{source_id}/labels", token=READ_ONLY,
                json={"labels": [label]}).status_code == 401


def test_deleting_a_source_forgets_its_write_key(emulator: EmulatorClient) -> None:
    source_id, write_key = new_source(emulator)
    assert call(emulator, "DELETE", f"/sources/{source_id}", token=READ_ONLY).status_code == 401
    answer = call(emulator, "DELETE", f"/sources/{source_id}")
    assert answer.json() == {"data": {"status": "SUCCESS"}}
    registered = emulator.keys()
    assert write_key not in registered
    assert call(emulator, "GET", f"/sources/{source_id}").status_code == 404


def test_destinations_warehouses_and_schema_settings_of_a_source(emulator: EmulatorClient) -> None:
    source_id, _ = new_source(emulator)
    destinations = call(emulator, "GET", f"/sources/{source_id}/connected-destinations").json()["data"]["destinations"]
    assert [d["enabled"] for d in destinations] == [True, False]
    one = call(emulator, "GET", f"/destinations/{destinations[0]['id']}").json()["data"]["destination"]
    assert one["settings"]["apiSecret"].startswith("••••") and len(one["settings"]["apiSecret"]) == 8
    warehouses = call(emulator, "GET", f"/sources/{source_id}/connected-warehouses").json()["data"]["warehouses"]
    assert warehouses[0]["metadata"]["name"] == "Postgres"
    settings = call(emulator, "GET", f"/sources/{source_id}/settings").json()["data"]
    assert settings["settings"]["identify"]["commonEventOnViolations"] == "OMIT_TRAITS"


def test_delivery_metrics_and_daily_usage_count_what_the_source_sent(emulator: EmulatorClient) -> None:
    source_id, write_key = new_source(emulator)
    emulator.send("batch", {"batch": [{"type": "track", "userId": "u", "event": "A"},
                                      {"type": "track", "event": "no identity"}]}, write_key=write_key)
    emulator.send("track", {"userId": "u", "event": "B"}, write_key=write_key)
    destinations = call(emulator, "GET", f"/sources/{source_id}/connected-destinations").json()["data"]["destinations"]
    now = datetime.now(UTC)
    params = {"sourceId": source_id, "startTime": (now - timedelta(hours=3, minutes=59)).isoformat(),
              "endTime": (now + timedelta(minutes=1)).isoformat(), "granularity": "MINUTE"}
    summary = call(emulator, "GET", f"/destinations/{destinations[0]['id']}/delivery-metrics",
                   params=params).json()["data"]["deliveryMetricsSummary"]
    assert {m["metricName"]: m["total"] for m in summary["metrics"]} == {"successes": 2, "discarded": 1}
    too_long = {**params, "startTime": (now - timedelta(hours=5)).isoformat()}
    assert call(emulator, "GET", f"/destinations/{destinations[0]['id']}/delivery-metrics",
                params=too_long).status_code == 422
    period = now.date().replace(day=1).isoformat()
    rows = call(emulator, "GET", "/usage/api-calls/sources/daily",
                params={"period": period, "pagination.count": 1000}).json()["data"]["dailyPerSourceAPICallsUsage"]
    today = [r for r in rows if r["sourceId"] == source_id and r["timestamp"].startswith(now.date().isoformat())]
    assert today == [{"sourceId": source_id, "apiCalls": "2", "timestamp": f"{now.date().isoformat()}T00:00:00Z"}]
    assert call(emulator, "GET", "/usage/api-calls/sources/daily", params={"period": "2026-12-02"}).status_code == 422
