"""Counting requests in fixed one-second windows, shared by every web process.

On Redis (CACHE_URL=redis://…) a hit is one round trip: INCR and EXPIRE pipelined, on a
client kept for the life of the process. Django's cache API would take three (add, exists,
incr) and build a new client object for each, which at ingest rates costs more than the
events' own validation. Any other cache backend (the per-process default in development)
goes through Django's cache API.
"""
from __future__ import annotations

import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache

WINDOW_TTL_SECONDS = 5
_lock = threading.Lock()
_client: redis.Redis | None = None


def hits_this_second(name: str) -> int:
    """Count one hit for `name` in the current one-second window; return the window's total."""
    counter = f"tributary:rate:{name}:{int(time.time())}"
    client = _redis()
    if client is None:
        cache.add(counter, 0, timeout=WINDOW_TTL_SECONDS)
        try:
            return int(cache.incr(counter))
        except ValueError:  # expired between add and incr
            return 1
    pipeline = client.pipeline(transaction=False)
    pipeline.incr(counter)
    pipeline.expire(counter, WINDOW_TTL_SECONDS)
    count, _ = pipeline.execute()
    return int(count)


def _redis() -> redis.Redis | None:
    global _client
    config = settings.CACHES["default"]
    if config["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
        return None
    if _client is None:
        with _lock:
            if _client is None:
                location = config["LOCATION"]
                url = location[0] if isinstance(location, list | tuple) else location
                _client = redis.Redis.from_url(url)
    return _client
