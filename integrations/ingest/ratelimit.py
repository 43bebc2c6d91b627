"""Counting requests in fixed windows (a second, a minute), shared by every web process, and
telling which address a request comes from.

On Redis (CACHE_URL=redis://…) a hit is one round trip: INCR and EXPIRE written together on
a connection each thread keeps, the two commands packed by hand, replies read by redis-py's
parser (about 50 µs of CPU, where redis-py's pipeline takes about 190 and Django's cache API
three round trips). Reading a count without adding to it is one GET. Any other cache backend
(the per-process default in development) goes through Django's cache API.

`hit_started` sends the hit and reads its reply when asked: the ingest API counts a request
before decoding its events and reads the count after, so Redis answers while the events are
decoded instead of the request waiting for it (at light load each hop to another process costs
a few hundred microseconds here).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
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
    client = _redis()
    if client is None:
        counter = _counter(name, window)
        ttl = window - 1 + WINDOW_TTL_SECONDS
        cache.add(counter, 0, timeout=ttl)
        try:
            return int(cache.incr(counter))
        except ValueError:  # expired between add and incr
            return 1
    return int(_round_trip(client, _hit_command(name, window), replies=2)[0])


def _hit_command(name: str, window: int) -> bytes:
    """INCR and EXPIRE of the window's counter, packed."""
    key = _counter(name, window).encode()
    ttl = window - 1 + WINDOW_TTL_SECONDS
    return b"*2\r\n$4\r\nINCR\r\n$%d\r\n%s\r\n*3\r\n$6\r\nEXPIRE\r\n$%d\r\n%s\r\n$%d\r\n%d\r\n" % (
        len(key), key, len(key), key, len(str(ttl)), ttl)


def hit_started(name: str, *, window: int = 1) -> Callable[[], int]:
    """Count one hit for `name` now; the returned function gives the window's total, reading
    Redis's reply only then. A reply never read is discarded before this thread's next command."""
    client = _redis()
    if client is None:
        counted = hits(name, window=window)
        return lambda: counted
    command = _hit_command(name, window)
    sent_on: Any = _sent(client, command)
    _connections.unread = 2

    def total() -> int:
        current: Any = getattr(_connections, "pair", (None, None))[1]
        if getattr(_connections, "unread", False) and current is sent_on:
            try:
                replies = [sent_on.read_response() for _ in range(2)]
            except BaseException as error:
                _forget(sent_on)
                if not isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError):
                    raise
                return int(_round_trip(client, command, replies=2)[0])  # at worst counted twice
            _connections.unread = 0
            return int(replies[0])
        return int(_round_trip(client, command, replies=2)[0])  # its connection was replaced meanwhile

    return total


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
        connection = _sent(client, command)
        try:
            return [connection.read_response() for _ in range(replies)]
        except BaseException as error:  # the replies not read would answer the next command
            _forget(connection)
            if attempt == 2 or not isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError):
                raise
    raise AssertionError("unreachable")


def _sent(client: redis.Redis, command: bytes) -> Any:
    """This thread's connection with `command` written on it (on a new connection if writing
    fails once). Replies a caller left unread are not read now: the connection is replaced."""
    for attempt in (1, 2):
        owner, connection = getattr(_connections, "pair", (None, None))
        if connection is not None and getattr(_connections, "unread", False):
            _forget(connection)
            connection = None
        if connection is None or owner is not client:
            connection = client.connection_pool.make_connection()
            _connections.pair = (client, connection)
        try:
            connection.send_packed_command([command], check_health=False)
            return connection
        except BaseException as error:
            _forget(connection)
            if attempt == 2 or not isinstance(error, redis.ConnectionError | redis.TimeoutError | OSError):
                raise
    raise AssertionError("unreachable")


def _forget(connection: Any) -> None:
    connection.disconnect()
    _connections.pair, _connections.unread = (None, None), 0


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
