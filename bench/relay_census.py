"""Stage by stage: where one ingest request and one delivery batch spend their time.

Runs in this process (after the timed phases, on an idle stack) against the same database,
cache and emulator, calling the relay's own functions one stage at a time and counting
the SQL each stage runs. Complements py-spy: the profiles say which functions are hot under
load, the census says what one request and one batch cost in isolation.

It reaches into the relay's private functions on purpose (a benchmark, not an API user);
if they change, the census says so and the rest of the benchmark is unaffected.
Import only after `django.setup()`.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import orjson
from django.db import connection as db
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from relay_fixtures import BenchWorkspace
from relay_load import BatchMaker, headers

from integrations.ingest import api as ingest_api
from integrations.ingest.keys import ingest_key_authenticate
from integrations.ingest.messages import normalise
from integrations.models import Connection
from integrations.relay import delivery
from integrations.relay.log import Message, events_append
from integrations.segment import client, protocol

T = TypeVar("T")
P = ParamSpec("P")


@dataclass
class Stage:
    name: str
    events: int
    seconds: list[float] = field(default_factory=list)
    queries: int = 0  # per run of the stage
    query_seconds: list[float] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)

    def line(self) -> str:
        wall = statistics.median(self.seconds)
        sql = statistics.median(self.query_seconds) if self.query_seconds else 0.0
        per_event = wall / self.events * 1e6 if self.events else 0.0
        return (f"  {self.name:<34} {wall * 1000:8.2f} ms  {per_event:7.1f} µs/event  "
                f"{self.queries:3d} queries {sql * 1000:7.2f} ms")


def _timed(stage: Stage, call: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    with CaptureQueriesContext(db) as captured:
        started = time.perf_counter()
        result = call(*args, **kwargs)
        stage.seconds.append(time.perf_counter() - started)
    stage.queries = len(captured.captured_queries)
    stage.query_seconds.append(sum(float(q["time"]) for q in captured.captured_queries))
    stage.statements = [q["sql"][:110] for q in captured.captured_queries]
    return result


def ingest_stages(bench: BenchWorkspace, web_host: str, repeats: int) -> list[Stage]:
    """One 100-event batch request: the whole Django request, then each stage on its own."""
    maker = BatchMaker(f"census-{int(time.time())}", 100)
    whole = Stage("whole request (Django test client)", 100)
    auth, limit = Stage("authenticate ingest key", 100), Stage("rate limit (Redis INCR+EXPIRE)", 100)
    parse, norm = Stage("parse JSON body", 100), Stage("normalise 100 events", 100)
    append = Stage("append: lock, dedupe, insert, wake", 100)
    browser = Client(HTTP_HOST=web_host)
    authorization = headers(bench.ingest_key)["Authorization"]
    for _ in range(repeats):
        batch = maker.next()
        assert batch is not None
        _timed(whole, browser.post, "/v1/batch", data=batch[1], content_type="application/json",
               HTTP_AUTHORIZATION=authorization)
    for _ in range(repeats):
        batch = maker.next()
        assert batch is not None
        key = _timed(auth, ingest_key_authenticate, bench.ingest_key)
        assert key is not None
        _timed(limit, lambda k: ingest_api._rate_limit_started(k)(), key)
        body: dict[str, Any] = _timed(parse, orjson.loads, batch[1])
        messages = _timed(norm, _normalise_all, body)
        _timed(append, events_append, workspace_id=bench.workspace_id, messages=messages)
    return [whole, auth, limit, parse, norm, append]


def delivery_stages(bench: BenchWorkspace, repeats: int) -> list[Stage]:
    """One full delivery batch, stage by stage, on a connection workers do not serve."""
    connection = Connection.objects.get(pk=bench.connection_ids[0])
    read, build = Stage("read batch + wire JSON (uuid5, context)", 0), Stage("join batch body", 0)
    decrypt, send = Stage("decrypt write key", 0), Stage("HTTP POST to the emulator", 0)
    advance = Stage("advance position (UPDATE)", 0)
    refused: list[str] = []
    for _ in range(repeats):
        batch, _held = _timed(read, delivery._next_batch, connection)  # the census connection has no filters
        if not batch:
            break
        for stage in (read, build, decrypt, send, advance):
            stage.events = len(batch)
        body = _timed(build, protocol.batch_body, (p.wire for p in batch))  # wire forms are built while reading now
        write_key = _timed(decrypt, connection.write_key)
        answer = _timed(send, client.post, connection.region, write_key, "batch", body)
        if answer.status != 200:
            stored = sum(len(pending.body) for pending in batch)
            refused.append(f"{answer.status} for {len(batch):,} events, {stored:,} bytes stored, "
                           f"{len(body):,} sent: {answer.body[:60]}")
        _timed(advance, delivery._advance, connection, batch[-1].seq)
    if refused:
        print(f"  the emulator refused {len(refused)} of {len(read.seconds)} batches, e.g. {refused[0]}")
    return [read, build, decrypt, send, advance]


def _normalise_all(body: dict[str, Any]) -> list[Message]:
    """What the ingest view does to each event of a batch."""
    now = timezone.now()
    return [normalise(item, received_at=now, sent_at=body.get("sentAt")) for item in body["batch"]]


def fill(bench: BenchWorkspace, batches: int) -> None:
    """A backlog for delivery_stages, appended without the HTTP layer."""
    maker = BatchMaker(f"backlog-{int(time.time())}", 100)
    for _ in range(batches):
        batch = maker.next()
        assert batch is not None
        events_append(workspace_id=bench.workspace_id, messages=_normalise_all(orjson.loads(batch[1])))


def report(bench: BenchWorkspace, web_host: str, repeats: int = 7) -> None:
    print("\nCensus (one request / one batch at a time, idle stack, median of "
          f"{repeats}; SQL time as seen by the client):")
    # Production settings expect collectstatic's folder; the census serves no static file.
    warnings.filterwarnings("ignore", message="No directory at")
    try:
        fill(bench, 60)
        stages = ingest_stages(bench, web_host, repeats) + delivery_stages(bench, repeats)
    except Exception as error:  # the relay's internals moved: say so, keep the other results
        print(f"  census skipped: {type(error).__name__}: {error}")
        return
    for stage in stages:
        if stage.seconds:
            print(stage.line())
    for stage in stages:
        if stage.statements:
            print(f"  SQL of '{stage.name}':")
            for statement in stage.statements:
                print(f"      {statement}")
