"""The per-second request counter behind the ingest API's 429, on the shared Redis cache that
production uses (the suite's default cache is per process)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from integrations import ratelimit
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
