"""Load for Tributary's ingest API: 100-event /v1/batch bodies over keep-alive connections.

Two shapes: `blast` sends as fast as the server answers (for a time or a number of events),
`paced` sends at a fixed event rate and records when each event left, for latency.
Bodies are built from a byte template, so the generator costs little of the CPU that the
system under test needs (the whole stack shares two cores).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
import orjson

# A track event as an SDK sends it (~330 bytes): timestamp and library context included,
# so normalisation does its full work (clock correction, context merge).
EVENT = (
    b'{"type":"track","event":"Order Completed","userId":"user-%06d","messageId":"%s-%09d",'
    b'"timestamp":"2026-01-05T10:00:00.000Z","properties":{"order_id":"o-%09d","revenue":42.5,'
    b'"currency":"EUR","plan":"pro"},"context":{"library":{"name":"bench","version":"1.0"},'
    b'"ip":"203.0.113.9","userAgent":"bench/1.0"}}'
)
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)


def message_id(prefix: str, number: int) -> str:
    """The emitter's messageId of event `number` of a run; the same text EVENT renders."""
    return f"{prefix}-{number:09d}"


class BatchMaker:
    """Batch bodies with never-repeating messageIds `<prefix>-<number>`, optionally capped."""

    def __init__(self, prefix: str, batch_size: int, total: int | None = None):
        self.prefix = prefix
        self.batch_size = batch_size
        self.total = total
        self.made = 0
        self._prefix = prefix.encode()

    def next(self) -> tuple[range, bytes] | None:
        """The numbers of the next batch's events and its body; None once `total` are made."""
        size = self.batch_size if self.total is None else min(self.batch_size, self.total - self.made)
        if size <= 0:
            return None
        numbers = range(self.made, self.made + size)
        self.made += size
        events = [EVENT % (n % 1_000_000, self._prefix, n, n) for n in numbers]
        return numbers, b'{"batch":[' + b",".join(events) + b'],"sentAt":"2026-01-05T10:00:01.000Z"}'


@dataclass
class Tally:
    """What the ingest API answered."""

    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: dict[int, int] = field(default_factory=dict)  # status -> events in such answers
    errors: int = 0  # events whose request failed without an answer
    latencies: list[float] = field(default_factory=list)  # seconds per request
    sent_at: dict[int, float] = field(default_factory=dict)  # event number -> epoch send time
    started: float = 0.0  # epoch
    finished: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.finished - self.started)


def headers(ingest_key: str) -> dict[str, str]:
    token = base64.b64encode(f"{ingest_key}:".encode()).decode()
    return {"Content-Type": "application/json", "Authorization": f"Basic {token}"}


async def _post(session: aiohttp.ClientSession, url: str, key_headers: dict[str, str], numbers: range,
                body: bytes, tally: Tally, record_send: bool) -> None:
    started = time.perf_counter()
    if record_send:
        now = time.time()
        tally.sent_at.update(dict.fromkeys(numbers, now))
    try:
        async with session.post(url, data=body, headers=key_headers) as response:
            payload = await response.read()
            status = response.status
    except (TimeoutError, aiohttp.ClientError):
        tally.errors += len(numbers)
        return
    tally.requests += 1
    tally.latencies.append(time.perf_counter() - started)
    if status != 200:
        tally.refused[status] = tally.refused.get(status, 0) + len(numbers)
        return
    answer = orjson.loads(payload)
    tally.accepted += int(answer.get("accepted", 0))
    tally.duplicates += int(answer.get("duplicates", 0))


async def _with_session(senders: int, run: Callable[[aiohttp.ClientSession], Awaitable[None]]) -> None:
    connector = aiohttp.TCPConnector(limit=senders, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=REQUEST_TIMEOUT) as session:
        await run(session)


async def blast(web_url: str, ingest_key: str, maker: BatchMaker, *, senders: int,
                seconds: float | None = None) -> Tally:
    """`senders` connections each posting the next batch as soon as the last one is answered,
    until `seconds` pass or the maker runs out."""
    url, key_headers, tally = f"{web_url}/v1/batch", headers(ingest_key), Tally()

    async def sender(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            batch = maker.next()
            if batch is None:
                return
            await _post(session, url, key_headers, batch[0], batch[1], tally, record_send=False)

    async def run(session: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + (seconds if seconds is not None else 10_000.0)
        tally.started = time.time()
        await asyncio.gather(*(sender(session, deadline) for _ in range(senders)))
        tally.finished = time.time()

    await _with_session(senders, run)
    return tally


async def paced(web_url: str, ingest_key: str, maker: BatchMaker, *, rate: float, seconds: float,
                senders: int) -> Tally:
    """One batch every batch_size/rate seconds on a fixed schedule (late batches do not shift
    the ones after them), at most `senders` in flight; records each event's send time."""
    url, key_headers, tally = f"{web_url}/v1/batch", headers(ingest_key), Tally()
    interval = maker.batch_size / rate
    in_flight = asyncio.Semaphore(senders)

    async def one(session: aiohttp.ClientSession, numbers: range, body: bytes) -> None:
        async with in_flight:
            await _post(session, url, key_headers, numbers, body, tally, record_send=True)

    async def run(session: aiohttp.ClientSession) -> None:
        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic()
        tally.started = time.time()
        for tick in itertools.count():
            due = start + tick * interval
            if due - start >= seconds:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            batch = maker.next()
            if batch is None:
                break
            tasks.append(asyncio.create_task(one(session, *batch)))
        await asyncio.gather(*tasks)
        tally.finished = time.time()

    await _with_session(senders, run)
    return tally


# Single calls over raw keep-alive connections ---------------------------------------------

SINGLE_EVENT = (
    b'{"type":"track","event":"Order Completed","userId":"user-%06d","messageId":"%s-%09d",'
    b'"timestamp":"2026-01-05T10:00:00.000Z","properties":{"order_id":"o-%09d","revenue":42.5,'
    b'"currency":"EUR","plan":"pro"},"context":{"library":{"name":"bench","version":"1.0"},'
    b'"ip":"203.0.113.9","userAgent":"bench/1.0"}}'
)


@dataclass
class Requests:
    """What a run of single requests got: answers by status, and the time it took."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def rate(self) -> float:
        return self.ok / max(1e-9, self.finished - self.started)


async def requests_per_second(web_url: str, path: str, ingest_key: str, prefix: str, *, senders: int,
                              seconds: float) -> Requests:
    """`senders` keep-alive connections, each posting one track call at a time to `path` for
    `seconds`. A bare HTTP/1.1 client on asyncio streams with the request's bytes prepared, so
    the generator costs far less per request than the server: aiohttp's own per-request work
    would otherwise cap the figure on these shared cores."""
    host, port = web_url.removeprefix("http://").split(":")
    auth = headers(ingest_key)["Authorization"].encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n").encode() \
        + b"Authorization: " + auth + b"\r\nContent-Length: %d\r\n\r\n"
    result, numbers = Requests(), itertools.count()
    prefix_bytes = prefix.encode()

    async def sender(deadline: float) -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline:
                n = next(numbers)
                body = SINGLE_EVENT % (n % 1_000_000, prefix_bytes, n, n)
                writer.write(head % len(body) + body)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                await reader.readexactly(length)
                if not status_line:
                    result.errors += 1
                    return
                status = int(status_line.split()[1])
                result.statuses[status] = result.statuses.get(status, 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
            result.errors += 1
        finally:
            writer.close()

    deadline = time.monotonic() + seconds
    result.started = time.time()
    await asyncio.gather(*(sender(deadline) for _ in range(senders)))
    result.finished = time.time()
    return result
