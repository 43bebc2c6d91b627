"""Counting requests in fixed windows (a second, a minute), shared by every web process, and
telling which address a request comes from.

On Redis (CACHE_URL=redis://…) a hit is one round trip: INCR and EXPIRE written together on
a connection each thread keeps, the two commands packed by hand, replies read by redis-py's
parser (about 50 µs of CPU, where redis-py's pipeline takes about 190 and Django's cache API
three round trips). Reading a count without adding to it is one GET. Any other cache backend
(the per-process default in development) goes through Django's cache API.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache

# A window's counter outlives it by this many seconds (then Redis or the cache drops it).
WINDOW_TTL_SECONDS = 5
_lock = threading.Lock()
_client: redis.Redis | None = None
_connections = threading.local()  # one Redis connection per thread, for hits


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
    key = counter.encode()
    command = b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n" % (
        len(key), key, len(key), key, len(str(ttl)), ttl)
    return int(_round_trip(client, command, replies=2)[0])


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


def _counter(name: str, window: int) -> str:
    return f"tributary:rate:{name}:{int(time.time()) // window}"


def _round_trip(client: redis.Redis, command: bytes, *, replies: int) -> list[Any]:
    """Write packed commands on this thread's connection and read their replies; once more on
    a new connection if that one has failed (Redis restarted, an idle connection dropped). The
    commands are idempotent enough for that: at worst one hit is counted twice."""
    for attempt in (1, 2):
        owner, connection = getattr(_connections, "pair", (None, None))
        if connection is None or owner is not client:
            connection = client.connection_pool.make_connection()
            _connections.pair = (client, connection)
        try:
            connection.send_packed_command([command], check_health=False)
            return [connection.read_response() for _ in range(replies)]
        except BaseException as error:  # the replies not read would answer the next command
            connection.disconnect()
            _connections.pair = (None, None)
            if attempt == 2 or not isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError):
                raise
    raise AssertionError("unreachable")


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
