"""The counters behind the ingest API's 429s (requests a second per key, failed
authentications a minute per address) on the shared Redis cache that production uses (the
suite's default cache is per process), and whose address a request is counted against."""
from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from django.test import Client, RequestFactory

from accounts.audit import Actor
from accounts.http import client_address
from accounts.models import User, Workspace
from integrations.ingest import ratelimit
from integrations.ingest.keys import ingest_key_create
from tests.integrations.relay.processes import RedisServer


@pytest.fixture
def redis_cache(tmp_path: Path, settings: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[redis.Redis]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}}
    monkeypatch.setattr(ratelimit, "_client", None)
    try:
        yield server.client
    finally:
        server.stop()


def test_hits_are_counted_in_redis_per_second_and_expire(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)  # the start of a second, so all hits share a window
    counts = [ratelimit.hits_this_second("ingest:7") for _ in range(3)]
    assert counts == [1, 2, 3]
    keys = redis_cache.keys("tributary:rate:ingest:7:*")
    assert len(keys) == 1 and 0 < redis_cache.ttl(keys[0]) <= ratelimit.WINDOW_TTL_SECONDS


def test_every_process_counts_against_the_same_window(redis_cache: redis.Redis,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    assert ratelimit.hits_this_second("ingest:8") == 1
    monkeypatch.setattr(ratelimit, "_client", None)  # as another web process, with its own client
    assert ratelimit.hits_this_second("ingest:8") == 2
    assert ratelimit.hits_this_second("ingest:9") == 1


def test_a_redis_connection_that_was_dropped_is_replaced(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    assert ratelimit.hits_this_second("ingest:10") == 1
    assert redis_cache.client_kill_filter(_type="normal", skipme=True) >= 1  # as a restart or a proxy would
    assert ratelimit.hits_this_second("ingest:10") == 2
    assert ratelimit.hits_this_second("ingest:10") == 3


def test_an_error_reply_leaves_no_reply_unread(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    redis_cache.set(f"tributary:rate:ingest:11:{int(time.time())}", "not a number")
    with pytest.raises(redis.ResponseError):
        ratelimit.hits_this_second("ingest:11")
    assert ratelimit.hits_this_second("ingest:12") == 1


def test_a_hit_started_is_counted_at_once_and_its_total_read_later(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    total = ratelimit.hit_started("ingest:13")
    (key,) = redis_cache.keys("tributary:rate:ingest:13:*")
    assert wait_for_value(redis_cache, key) == b"1"  # counted before the total is asked for
    assert total() == 1
    assert ratelimit.hits_this_second("ingest:13") == 2  # the connection carries on in step


def test_a_total_never_read_leaves_no_reply_for_the_next_command(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    ratelimit.hit_started("ingest:14")  # a request refused before it read its count
    assert ratelimit.hits_this_second("ingest:15") == 1  # not ingest:14's reply
    later = ratelimit.hit_started("ingest:14")
    assert ratelimit.hits_this_second("ingest:15") == 2
    assert later() == 3  # its connection was replaced: sent again, so counted twice at worst


def test_a_hit_started_survives_a_dropped_connection(redis_cache: redis.Redis) -> None:
    time.sleep(1 - time.time() % 1 + 0.01)
    assert ratelimit.hits_this_second("ingest:16") == 1
    assert redis_cache.client_kill_filter(_type="normal", skipme=True) >= 1
    total = ratelimit.hit_started("ingest:16")
    assert total() in (2, 3)  # written on the dead connection or not, it is counted


def wait_for_value(client: redis.Redis, key: Any) -> Any:
    deadline = time.monotonic() + 5
    while (value := client.get(key)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return value


def test_a_minute_window_is_read_without_counting_and_outlives_its_minute_briefly(redis_cache: redis.Redis) -> None:
    assert ratelimit.hits_so_far("auth:203.0.113.9", window=60) == 0
    assert [ratelimit.hits("auth:203.0.113.9", window=60) for _ in range(3)] == [1, 2, 3]
    assert ratelimit.hits_so_far("auth:203.0.113.9", window=60) == 3
    (key,) = redis_cache.keys("tributary:rate:auth:203.0.113.9:*")
    assert 60 < redis_cache.ttl(key) <= 60 - 1 + ratelimit.WINDOW_TTL_SECONDS


def redis_calls(client: redis.Redis, command: str) -> int:
    stats: dict[str, Any] = client.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_sender_already_served_pays_no_round_trip_for_the_guessing_limit(
        redis_cache: redis.Redis, client: Client, alice: User, workspace: Workspace) -> None:
    key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]
    auth = {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    body = orjson.dumps({"type": "track", "event": "E", "userId": "u"})

    def send(**headers: Any) -> int:
        return client.post("/v1/track", data=body, content_type="application/json", **headers).status_code

    gets = redis_calls(redis_cache, "get")
    assert send(**auth) == 200  # a key this process has not served: one read of the failure count
    assert redis_calls(redis_cache, "get") == gets + 1
    assert [send(**auth) for _ in range(3)] == [200, 200, 200]
    assert redis_calls(redis_cache, "get") == gets + 1  # served before: no read at all
    incrs = redis_calls(redis_cache, "incr")
    assert send(HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"trb_guessed:").decode()) == 401
    assert redis_calls(redis_cache, "get") == gets + 2 and redis_calls(redis_cache, "incr") == incrs + 1


@pytest.mark.parametrize(("proxies", "remote", "forwarded", "address"), [
    (0, "203.0.113.9", "198.51.100.1", "203.0.113.9"),  # trust nothing: the header is the client's word
    (1, "10.0.0.1", "192.0.2.66, 198.51.100.1", "198.51.100.1"),  # the entry our proxy appended
    (2, "10.0.0.2", "192.0.2.66, 198.51.100.1, 10.0.0.1", "198.51.100.1"),
    (2, "10.0.0.2", "198.51.100.1", "198.51.100.1"),  # joined the chain at the second proxy
    (1, "10.0.0.1", "", "10.0.0.1"),  # no header: the proxy's own request
    (1, "10.0.0.1", "192.0.2.66, not-an-address", "10.0.0.1"),
    (1, "10.0.0.1", "2001:DB8::1", "2001:db8::1"),
])
def test_the_client_address_trusts_only_the_configured_proxies(settings: Any, proxies: int, remote: str,
                                                               forwarded: str, address: str) -> None:
    settings.TRUSTED_PROXY_COUNT = proxies
    request = RequestFactory().get("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_address(request) == address
