"""Counting requests in fixed windows (a second, a minute), shared by every web process, and
telling which address a request comes from.

On Redis (CACHE_URL=redis://…) a hit is one round trip: INCR and EXPIRE pipelined, on a
client kept for the life of the process; reading a count without adding to it is one GET.
Django's cache API would take three (add, exists, incr) and build a new client object for
each, which at ingest rates costs more than the events' own validation. Any other cache
backend (the per-process default in development) goes through Django's cache API.
"""
from __future__ import annotations

import ipaddress
import threading
import time

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest

# A window's counter outlives it by this many seconds (then Redis or the cache drops it).
WINDOW_TTL_SECONDS = 5
_lock = threading.Lock()
_client: redis.Redis | None = None


def hits_this_second(name: str) -> int:
    """Count one hit for `name` in the current one-second window; return the window's total."""
    return hits(name, window=1)


def hits(name: str, *, window: int) -> int:
    """Count one hit for `name` in the current window of `window` seconds; return its total."""
    counter = _counter(name, window)
    ttl = window - 1 + WINDOW_TTL_SECONDS
    client = _redis()
    if client is None:
        cache.add(counter, 0, timeout=ttl)
        try:
            return int(cache.incr(counter))
        except ValueError:  # expired between add and incr
            return 1
    pipeline = client.pipeline(transaction=False)
    pipeline.incr(counter)
    pipeline.expire(counter, ttl)
    count, _ = pipeline.execute()
    return int(count)


def hits_so_far(name: str, *, window: int) -> int:
    """The hits counted for `name` in the current window, without counting one."""
    counter = _counter(name, window)
    client = _redis()
    if client is None:
        return int(cache.get(counter, 0))
    return int(client.get(counter) or 0)


def seconds_left(window: int) -> int:
    """Whole seconds until the current window of `window` seconds ends (at least 1)."""
    return max(1, window - int(time.time()) % window)


def client_address(request: HttpRequest) -> str:
    """The address a request comes from, for limits per client.

    REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT says that many proxies of ours stand in
    front and each appends the address it was reached from to X-Forwarded-For: then the client
    is that many entries from the right. Entries further left are whatever the client wrote,
    so a forged header can neither dodge a limit nor pin it on another address.
    """
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if hop.strip()]
    if not hops:
        return remote
    # Fewer entries than proxies: the request joined the chain part-way, and the first entry
    # is the one our first proxy on its path wrote.
    candidate = hops[-proxies] if len(hops) >= proxies else hops[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


def _counter(name: str, window: int) -> str:
    return f"tributary:rate:{name}:{int(time.time()) // window}"


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
