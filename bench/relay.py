"""How fast Tributary relays events to Segment, next to Segment's own Python library.

    .venv/bin/python bench/relay.py [--quick] [--seconds 20] [--senders 8] [--profile DIR]

Everything runs on 127.0.0.1, as production would: a fresh PostgreSQL database
(`tributary_bench`, dropped and re-created), Redis database 13 as broker and cache (flushed),
the web server as production starts it (granian, `python -m config.serve`, production
settings), a Celery worker (prefork) and beat, and the Segment emulator standing in for
Segment. The benchmark makes a user and its workspaces through the normal services, each with
its own ingest key: "ingest" and "spread1-4" without connections, "one" with one connection,
"three" with three, "census" with one the census drives by hand.

Phases, each on an idle, drained relay:
  1. ingest: 100-event batches from several keep-alive senders, as fast as answered; then
     the same load over four workspaces, to show what the per-workspace append lock costs;
  2. end to end, 1 and 3 connections: the same load, then wait until the emulator has
     acknowledged every accepted event once per connection; events/s is events (times
     connections) over first send to last acknowledgement;
  3. latency: a steady 2,000 events/s; per event, the emulator's receive time minus the send
     time, matched by the emitter's messageId (context.tributary.messageId after the relay);
  4. burst: 100,000 events as fast as possible; lost = accepted by Tributary minus delivered
     to the emulator once drained (bounded wait);
  5. delivery alone: the same number appended while the connection is disabled, then timed
     from enabling it until the emulator has them all;
  6. the official library (segment-analytics-python 2.4.0, default settings) sending straight
     to the emulator: delivered events/s, latency at 2,000 events/s, drops of a 100k burst;
  7. the same library sending through Tributary's ingest API;
  8. answer time: one sender posting a 100-event batch at a time, 10 a second (light load, as
     one library's consumer thread sends): the p50 of the time to a 200, stored and committed;
  9. single calls: /v1/track requests/s, one event per request over keep-alive connections,
     next to a trivial view answering {"success": true} through the same server and the same
     path through Django, and a view that only appends one event as /v1/track does, the
     floor of a durable store (bench/relay_wsgi.py); the three alternate in the same run.
Delivered counts are the emulator's exact per-key counters, which ignore duplicates. Each
phase also prints the CPU each part of the stack used, what PostgreSQL's busy backends were
doing, and the longest time a connection had a backlog but did not move (with a snapshot
of the broker queue and the workers if that passes 1.5 s).

`--profile DIR` adds an unmeasured run under py-spy and a stage-by-stage census of one
request and one delivery batch. `--pythonpath/--settings/--wsgi/--celery-app` run the stack
from other entry points, to measure a proposed change from outside the tree first.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
import orjson
import psycopg
import redis
import relay_filters
import relay_official as official
import relay_plans
import relay_profile
from django.db import connection as db_connection
from relay_load import BatchMaker, Requests, Tally, blast, message_id, paced, requests_per_second
from relay_observe import (
    CpuMeter,
    DeliveryWatch,
    Drain,
    PgActivity,
    accepted,
    bench_database_pids,
    describe_shares,
    direct_id,
    percentile,
    pids_named,
    process_tree,
    receive_times,
    relayed_id,
    wait_delivered,
)
from relay_report import Results, print_table
from relay_stack import (
    Stack,
    StackOptions,
    code_revision,
    environment,
    flush_redis,
    migrate,
    recreate_database,
    running_stack,
)

from segment_emulator.client import EmulatorClient
from segment_emulator.testing import free_ports, run_emulator

LIBRARY_KEY = "benchOfficialLibraryDirect0001"
TRIVIAL_PATH = "/bench/trivial"  # relay_wsgi.TRIVIAL_PATH (importing it would load Django too early)
STORE_PATH = "/bench/store"  # relay_wsgi.STORE_PATH: one event appended, nothing else
# The single-call phase's views, measured in turn: the floor of any view, the floor of a
# durable store, and the ingest API.
SINGLE_PATHS = {"trivial": TRIVIAL_PATH, "store": STORE_PATH, "track": "/v1/track"}


@dataclass
class Bench:
    args: argparse.Namespace
    emulator: EmulatorClient
    stack: Stack
    owner: Any  # accounts.models.User, who made the workspaces
    workspaces: dict[str, Any]  # name -> relay_fixtures.BenchWorkspace
    meter: CpuMeter
    results: Results = field(default_factory=Results)
    run_id: str = field(default_factory=lambda: f"r{os.getpid()}{int(time.time())}")

    # Helpers -----------------------------------------------------------------------------

    def prefix(self, phase: str) -> str:
        return f"{self.run_id}-{phase}"

    def settle(self, name: str) -> None:
        """Start every phase on a drained relay, so no earlier backlog is counted in it."""
        from relay_fixtures import log_end

        from integrations.models import Connection

        bench = self.workspaces[name]
        deadline = time.monotonic() + self.args.drain_timeout
        while time.monotonic() < deadline:
            end = log_end(bench.workspace_id)
            if not Connection.objects.filter(pk__in=bench.connection_ids, delivered_seq__lt=end).exists():
                break
            time.sleep(0.2)
        else:
            self.results.notes.append(f"workspace {name!r} still had a backlog when a phase started")
        self.analyze()

    def analyze(self) -> None:
        """Production runs autovacuum, which keeps the planner's statistics current; this server
        may not (autovacuum=off here), and a never-analysed event table gets a plan that sorts
        the whole backlog for every batch read. --no-analyze shows that."""
        if not self.args.no_analyze:
            with db_connection.cursor() as cursor:
                cursor.execute("ANALYZE integrations_event")

    def blast(self, name: str, phase: str, *, seconds: float | None = None, total: int | None = None,
              batch_size: int | None = None, via: str = "") -> Tally:
        """Batches as fast as answered, to the ingest API (or to `via`/v1/batch: the floor)."""
        maker = BatchMaker(self.prefix(phase), batch_size or self.args.batch_size, total)
        ingest_key = self.workspaces[name].ingest_key
        return asyncio.run(blast(f"{self.stack.web_url}{via}", ingest_key, maker, senders=self.args.senders,
                                 seconds=seconds))

    @contextmanager
    def observed(self, label: str) -> Iterator[list[str]]:
        """Who used the CPU and what the database's busy backends did meanwhile: lines to print
        after the phase's own result."""
        lines: list[str] = []
        before = self.meter.snapshot()
        with PgActivity(self.args.database_url) as activity:
            yield lines
        lines.append(f"    cpu ({label}, cores): {describe_shares(CpuMeter.shares(before, self.meter.snapshot()))}")
        lines.append(f"    db ({label}, busy backends on average): {activity.describe()}")

    @staticmethod
    def describe_tally(tally: Tally) -> str:
        refused = f", refused {tally.refused}" if tally.refused else ""
        errors = f", {tally.errors:,} events in failed requests" if tally.errors else ""
        return (f"accepted {tally.accepted:,} in {tally.elapsed:.1f} s = {tally.accepted / tally.elapsed:,.0f}/s; "
                f"request p50 {percentile(tally.latencies, 0.5) * 1000:.0f} ms, "
                f"p99 {percentile(tally.latencies, 0.99) * 1000:.0f} ms{refused}{errors}")

    def probe_workers(self) -> str:
        """What is queued on the broker and what each Celery pool process is doing, right now."""
        client = redis.Redis.from_url(self.args.broker_url)
        try:
            queued = Counter(_task_label(raw) for raw in client.lrange("celery", 0, -1))
        finally:
            client.close()
        tasks = ", ".join(f"{label} x{count}" for label, count in queued.most_common(8))
        doing = [f"pid {pid}: {relay_profile.dump(pid) or 'idle'}" for pid in _children(self.stack.worker.pid)]
        return f"broker queue {sum(queued.values())} tasks ({tasks or 'empty'}); pool: {'; '.join(doing)}"

    # Phases --------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Load code, open database connections, fill caches in every process; not measured."""
        self.settle("one")
        baseline = accepted(self.emulator, self.workspaces["one"].write_keys)
        tally = self.blast("one", "warmup", seconds=self.args.warmup)
        wait_delivered(self.emulator, baseline, tally.accepted, timeout=self.args.drain_timeout)
        print(f"  warm-up: {self.describe_tally(tally)}")

    def ingest(self) -> None:
        self.settle("ingest")
        with self.observed("ingest") as observations:
            tally = self.blast("ingest", "ingest", seconds=self.args.seconds)
        print(f"  ingest, workspace without connections: {self.describe_tally(tally)}", *observations, sep="\n")
        self.results.set("ingest", tally.accepted / tally.elapsed)

    def ingest_spread(self) -> None:
        """The same load spread over four workspaces: each workspace appends under its own lock,
        so the gap to the one-workspace figure is what that lock costs."""
        names = [name for name in self.workspaces if name.startswith("spread")]
        senders = max(1, self.args.senders // len(names))

        async def together() -> list[Tally]:
            makers = [BatchMaker(self.prefix(f"ingest-{name}"), self.args.batch_size) for name in names]
            return await asyncio.gather(*(
                blast(self.stack.web_url, self.workspaces[name].ingest_key, maker, senders=senders,
                      seconds=self.args.seconds) for name, maker in zip(names, makers, strict=True)))

        with self.observed("ingest, 4 workspaces") as observations:
            tallies = asyncio.run(together())
        total = sum(t.accepted for t in tallies)
        elapsed = max(t.finished for t in tallies) - min(t.started for t in tallies)
        latencies = [latency for t in tallies for latency in t.latencies]
        print(f"  ingest, same load over {len(names)} workspaces ({senders} senders each): accepted {total:,} in "
              f"{elapsed:.1f} s = {total / elapsed:,.0f}/s; request p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms", *observations, sep="\n")
        self.results.set("ingest_spread", total / elapsed)

    def end_to_end(self, name: str, label: str, *, batch_size: int | None = None, figure: str = "",
                   via: str = "") -> None:
        self.settle(name)
        bench = self.workspaces[name]
        baseline, cursor = accepted(self.emulator, bench.write_keys), self.emulator.last_request_id()
        with self.observed("sending and draining") as observations, \
                DeliveryWatch(self.args.database_url, bench.connection_ids) as watch:
            tally = self.blast(name, f"e2e{len(bench.write_keys)}-{batch_size or self.args.batch_size}{'-floor' if via else ''}",
                               seconds=self.args.seconds, batch_size=batch_size, via=via)
            drain = wait_delivered(self.emulator, baseline, tally.accepted, timeout=self.args.drain_timeout)
        observations.append(f"    {watch.describe()}")
        rate = self._delivery_rate(drain, tally.started)
        print(f"  end to end, {label}: ingest {self.describe_tally(tally)}")
        print(f"    delivered {drain.total:,} source events by {drain.last_delivery - tally.started:.1f} s "
              f"= {rate:,.0f} source events/s ({rate / len(bench.write_keys):,.0f} events/s per connection)"
              f"{'' if drain.drained else '  NOT DRAINED within the bounded wait'}", *observations, sep="\n")
        self.print_refusals(bench.write_keys, cursor)
        self.results.set(figure or f"e2e_{name}", rate)

    def _delivery_rate(self, drain: Drain, started: float) -> float:
        return drain.total / max(1e-9, drain.last_delivery - started) if drain.total else 0.0

    def print_refusals(self, keys: list[str], since: int) -> None:
        """Requests the emulator answered with anything but 200 since a request-log cursor: each
        is a batch sent again (split in two for a 400), a cost the throughput figures include."""
        for key in keys:
            answered = self.emulator.requests(write_key=key, since=since, kind="tracking", limit=100_000)
            refused = Counter(f"{r['status']} {r['error'] or r['fault'] or ''}".strip()
                              for r in answered if r["status"] != 200)
            if refused:
                print(f"    emulator, key …{key[-4:]}: {sum(refused.values()):,} of {len(answered):,} batch "
                      f"requests refused: {dict(refused)}")

    def latency(self) -> None:
        self.settle("one")
        bench = self.workspaces["one"]
        baseline = accepted(self.emulator, bench.write_keys)
        prefix = self.prefix("latency")
        maker = BatchMaker(prefix, self.args.batch_size)
        with self.observed("steady load") as observations, \
                DeliveryWatch(self.args.database_url, bench.connection_ids, probe=self.probe_workers) as watch:
            tally = asyncio.run(paced(self.stack.web_url, bench.ingest_key, maker, rate=self.args.latency_rate,
                                      seconds=self.args.latency_seconds, senders=self.args.senders))
            wait_delivered(self.emulator, baseline, tally.accepted, timeout=self.args.drain_timeout)
        observations.append(f"    {watch.describe()}")
        received = receive_times(self.emulator, bench.write_keys[0], tally.accepted + 100, relayed_id)
        sent = {message_id(prefix, n): t for n, t in tally.sent_at.items()}
        latencies = [received[m] - t for m, t in sent.items() if m in received]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(f"  latency at {self.args.latency_rate:,.0f} events/s: sent {len(sent):,} "
              f"({tally.accepted / tally.elapsed:,.0f}/s accepted), matched {len(latencies):,}; "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {max(latencies, default=0) * 1000:.0f} ms",
              *observations, sep="\n")
        self.results.set("p50", p50)
        self.results.set("p99", p99)

    def burst(self) -> None:
        self.settle("one")
        bench = self.workspaces["one"]
        baseline, cursor = accepted(self.emulator, bench.write_keys), self.emulator.last_request_id()
        with self.observed("burst and drain") as observations, \
                DeliveryWatch(self.args.database_url, bench.connection_ids) as watch:
            tally = self.blast("one", "burst", total=self.args.burst)
            drain = wait_delivered(self.emulator, baseline, tally.accepted, timeout=self.args.drain_timeout)
        observations.append(f"    {watch.describe()}")
        lost = tally.accepted - drain.total
        not_taken = self.args.burst - tally.accepted - tally.duplicates
        print(f"  burst of {self.args.burst:,}: ingest {self.describe_tally(tally)}; delivered {drain.total:,} "
              f"by {drain.last_delivery - tally.started:.1f} s; lost {lost:,}; "
              f"not accepted by the API {not_taken:,} (the sender was told)", *observations, sep="\n")
        self.print_refusals(bench.write_keys, cursor)
        self.results.set("lost", lost)

    def drain(self) -> None:
        """Delivery on its own: a backlog appended while the connection was disabled, then the
        connection enabled (which wakes it) and timed until the emulator has every event."""
        from relay_fixtures import fill_backlog, set_enabled

        self.settle("one")
        bench = self.workspaces["one"]
        connection_id = bench.connection_ids[0]
        set_enabled(self.owner, connection_id, False)
        fill_backlog(bench.workspace_id, self.args.burst, self.prefix("drain"))
        self.analyze()
        baseline, cursor = accepted(self.emulator, bench.write_keys), self.emulator.last_request_id()
        with self.observed("draining") as observations, \
                DeliveryWatch(self.args.database_url, bench.connection_ids) as watch:
            started = time.time()
            set_enabled(self.owner, connection_id, True)
            drain = wait_delivered(self.emulator, baseline, self.args.burst, timeout=self.args.drain_timeout)
        observations.append(f"    {watch.describe()}")
        rate = self._delivery_rate(drain, started)
        print(f"  delivery alone, backlog of {self.args.burst:,} on 1 connection: delivered {drain.total:,} by "
              f"{drain.last_delivery - started:.1f} s = {rate:,.0f} events/s"
              f"{'' if drain.drained else '  NOT DRAINED within the bounded wait'}", *observations, sep="\n")
        self.print_refusals(bench.write_keys, cursor)
        self.results.set("drain", rate)

    def official_direct(self) -> None:
        """The library as Segment ships it, sending straight to the emulator: how fast it
        delivers, how late, and how much of a burst it drops."""
        self.emulator.register_key(LIBRARY_KEY, "us")
        host = self.emulator.us_url

        baseline = accepted(self.emulator, [LIBRARY_KEY])
        client = official.Official(host, LIBRARY_KEY)
        run = official.sustained(client, self.prefix("lib-sustained"), self.args.seconds)
        emptied = client.close(self.args.drain_timeout)
        drain = wait_delivered(self.emulator, baseline, run.tracked - run.dropped, timeout=5)
        rate = self._delivery_rate(drain, run.started)
        print(f"  official library → emulator, sustained: delivered {drain.total:,} of {run.tracked:,} = "
              f"{rate:,.0f}/s{'' if emptied else ' (queue not emptied)'}")
        self.results.set("lib_rate", rate)
        self._official_latency(host)
        self.results.set("lib_lost", self._official_burst("lib-burst", host, LIBRARY_KEY, [LIBRARY_KEY], "→ emulator"))

    def _official_latency(self, host: str) -> None:
        client = official.Official(host, LIBRARY_KEY)
        run = official.paced(client, self.prefix("lib-latency"), self.args.latency_rate, self.args.latency_seconds)
        client.close(self.args.drain_timeout)
        received = receive_times(self.emulator, LIBRARY_KEY, run.tracked + 100, direct_id)
        latencies = [received[m] - t for m, t in run.sent_at.items() if m in received]
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        print(f"  official library → emulator, {self.args.latency_rate:,.0f} events/s: matched "
              f"{len(latencies):,} of {run.tracked:,}; p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")
        self.results.set("lib_p50", p50)
        self.results.set("lib_p99", p99)

    def _official_burst(self, phase: str, host: str, key: str, delivered_to: list[str], route: str) -> int:
        """`--burst` track() calls as fast as possible; the events that never reached the
        emulator (after a bounded wait for the library and, via Tributary, the relay)."""
        baseline = accepted(self.emulator, delivered_to)
        client = official.Official(host, key)
        run = official.burst(client, self.prefix(phase), self.args.burst)
        client.close(self.args.drain_timeout)
        drain = wait_delivered(self.emulator, baseline, self.args.burst - run.dropped,
                               timeout=self.args.drain_timeout, stall=5)
        lost: int = self.args.burst - drain.total
        print(f"  official library {route}, burst of {self.args.burst:,}: delivered {drain.total:,}, "
              f"lost {lost:,} (the library logged {run.dropped:,} queue-full drops)"
              f"{f'; library errors: {run.errors}' if run.errors else ''}")
        return lost

    def official_through_tributary(self) -> None:
        """The same library with `host` set to Tributary: what an SDK user gets by switching.
        Then its floor: the library pointed at a view that only parses its batches and stores
        them (bench/relay_wsgi.py), relayed as the others are."""
        bench = self.workspaces["one"]
        self.results.set("lib_via_rate", self._official_relayed(self.stack.web_url, "lib-via-sustained",
                                                                "Tributary"))
        self.results.set("lib_store_rate", self._official_relayed(f"{self.stack.web_url}{STORE_PATH}",
                                                                  "lib-store-sustained",
                                                                  f"{STORE_PATH} (only parsed and stored)"))
        self.settle("one")
        lost = self._official_burst("lib-via-burst", self.stack.web_url, bench.ingest_key, bench.write_keys,
                                    "→ Tributary → emulator")
        self.results.set("lib_via_lost", lost)

    def _official_relayed(self, host: str, phase: str, route: str) -> float:
        """The official library sending to `host` for `--seconds`: events/s delivered end to end."""
        bench = self.workspaces["one"]
        self.settle("one")
        baseline = accepted(self.emulator, bench.write_keys)
        client = official.Official(host, bench.ingest_key)
        run = official.sustained(client, self.prefix(phase), self.args.seconds)
        client.close(self.args.drain_timeout)
        drain = wait_delivered(self.emulator, baseline, run.tracked - run.dropped, timeout=self.args.drain_timeout)
        rate = self._delivery_rate(drain, run.started)
        print(f"  official library → {route} → emulator, sustained: {run.tracked:,} tracked, "
              f"{drain.total:,} delivered = {rate:,.0f}/s end to end")
        return rate

    def answer_time(self) -> None:
        """What an SDK waits for each batch (official libraries send the next only after it):
        one sender, 100-event batches at 1,000 events/s, on the workspace with a connection."""
        self.settle("one")
        bench = self.workspaces["one"]
        maker = BatchMaker(self.prefix("answer"), 100)
        with self.observed("answer time") as observations:
            tally = asyncio.run(paced(self.stack.web_url, bench.ingest_key, maker, rate=1_000.0,
                                      seconds=self.args.answer_seconds, senders=1))
        p50, p99 = percentile(tally.latencies, 0.5), percentile(tally.latencies, 0.99)
        floor = self.commit_floor()
        print(f"  answer time of a 100-event batch, one sender at 10 batches/s: {tally.requests:,} requests, "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; a one-row commit alone: p50 {floor * 1000:.1f} ms",
              *observations, sep="\n")
        self.results.set("answer_p50", p50)
        self.results.set("commit_p50", floor)

    def commit_floor(self, count: int = 50) -> float:
        """What the disk charges every answer right now: the p50 of a one-row UPDATE committed
        alone (its WAL flush), on the bench database, 20 ms apart. Nothing stored before a 2xx
        can answer faster; on these shared machines it swings from under 1 ms to tens."""
        workspace_id = self.workspaces["ingest"].workspace_id
        times = []
        with psycopg.connect(self.args.database_url, autocommit=True) as connection:
            for _ in range(count):
                started = time.perf_counter()
                connection.execute("UPDATE accounts_workspace SET name = name WHERE id = %s",
                                   [workspace_id])
                times.append(time.perf_counter() - started)
                time.sleep(0.02)
        return percentile(times, 0.5)

    def single_calls(self) -> None:
        """/v1/track one event per request against the trivial view, in alternating slices so
        both see the same machine; requests/s and the web's CPU per request of each."""
        bench = self.workspaces["ingest"]
        totals: dict[str, list[float]] = {label: [0.0, 0.0, 0.0] for label in SINGLE_PATHS}
        slices = 4 if self.args.quick else 6
        with self.observed("single calls, both views") as observations:
            self._single_call_slices(bench, totals, slices)
        rates = {}
        for label, (ok, elapsed, web_seconds) in totals.items():
            rates[label] = ok / max(1e-9, elapsed)
            print(f"  single calls, {label} ({SINGLE_PATHS[label]}), "
                  f"{self.args.senders} keep-alive connections: {ok:,.0f} answered 200 in {elapsed:.1f} s = "
                  f"{rates[label]:,.0f} requests/s; web CPU {web_seconds / max(1, ok) * 1e6:,.0f} µs per request")
            self.results.set(f"{label}_cpu", web_seconds / max(1, ok))
        print(*observations, sep="\n")
        self.results.set("track_rps", rates["track"])
        self.results.set("trivial_rps", rates["trivial"])
        self.results.set("store_rps", rates["store"])

    def _single_call_slices(self, bench: Any, totals: dict[str, list[float]], slices: int) -> None:
        for round_ in range(slices):
            for label, path in SINGLE_PATHS.items():
                before = self.meter.snapshot()
                run: Requests = asyncio.run(requests_per_second(
                    self.stack.web_url, path, bench.ingest_key, self.prefix(f"single-{label}-{round_}"),
                    senders=self.args.senders, seconds=self.args.seconds / slices))
                web = CpuMeter.shares(before, self.meter.snapshot()).get("web", 0.0)
                if run.answered != run.ok or run.errors:
                    refused = {k: v for k, v in run.statuses.items() if k != 200}
                    print(f"    {label}: {refused or ''} {run.errors or ''} not answered 200")
                elapsed = run.finished - run.started
                totals[label][0] += run.ok
                totals[label][1] += elapsed
                totals[label][2] += web * elapsed

    def profile(self, directory: Path) -> None:
        """An extra, unmeasured end-to-end run under py-spy, then the census."""
        seconds = min(self.args.seconds, 15.0)
        groups = {"web": _children(self.stack.web.pid), "worker": _children(self.stack.worker.pid)}
        print(f"\nProfile: {seconds:.0f} s of end-to-end load on one connection, py-spy at "
              f"{relay_profile.RATE} Hz; raw stacks in {directory}")
        self.settle("one")
        baseline = accepted(self.emulator, self.workspaces["one"].write_keys)
        recordings = relay_profile.start(directory, "e2e1", groups, seconds)
        tally = self.blast("one", "profile", seconds=seconds)
        relay_profile.finish(recordings)
        wait_delivered(self.emulator, baseline, tally.accepted, timeout=self.args.drain_timeout)
        relay_profile.summarise(recordings)
        try:
            import relay_census
        except ImportError as error:  # the relay is being edited: keep what was measured
            print(f"\nCensus skipped: {error}")
            return
        relay_census.report(self.workspaces["census"], "127.0.0.1")


def _children(pid: int) -> list[int]:
    return [p for p in process_tree(pid) if p != pid]


def _task_label(raw: bytes | str) -> str:
    """`deliver_connection(1)` from a Celery message on the Redis list (protocol 2, JSON)."""
    message = orjson.loads(raw)
    task = str(message.get("headers", {}).get("task", "?")).rsplit(".", 1)[-1]
    args = orjson.loads(base64.b64decode(message.get("body", ""))) if message.get("body") else [[]]
    return f"{task}{tuple(args[0])}"


# Report ----------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short phases and a 30k burst (about 3 minutes)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each throughput phase")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load first")
    parser.add_argument("--senders", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--batch-size", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument("--large-batch-size", type=int, default=500, help="events per request of the second "
                        "one-connection end-to-end run (per-request costs spread over more events)")
    parser.add_argument("--latency-rate", type=float, default=2_000.0, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="length of the latency phase")
    parser.add_argument("--answer-seconds", type=float, default=10.0, help="length of the answer-time phase")
    parser.add_argument("--burst", type=int, default=100_000, help="events in the burst")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="longest wait for a backlog")
    parser.add_argument("--phases", default="", help="comma-separated phases to run instead of all (e.g. "
                        "answer_time,single_calls; the official library's are official_direct and "
                        "official_through_tributary)")
    parser.add_argument("--web-workers", type=int, default=6, help="granian worker processes, one thread each")
    parser.add_argument("--worker-concurrency", type=int, default=3, help="Celery prefork processes")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_bench")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--no-analyze", action="store_true", help="never ANALYZE the event table (as on a "
                        "server without autovacuum)")
    parser.add_argument("--skip-official", action="store_true", help="leave out the official library")
    parser.add_argument("--filters", type=int, default=0, metavar="N", help="also run the one-connection end "
                        "to end without and with N destination filters (1-4), alternating, and print both figures")
    parser.add_argument("--plan", type=int, default=0, metavar="N", help="also run the one-connection end to "
                        "end without, and with an N-rule tracking plan plus 3 filters (50 for issue #12), "
                        "alternating, and print both figures")
    parser.add_argument("--pythonpath", default="", help="directory put first on the stack's PYTHONPATH, "
                        "for the three options below (measuring a patched build)")
    parser.add_argument("--settings", default="config.settings.production", help="DJANGO_SETTINGS_MODULE")
    parser.add_argument("--wsgi", default="config.wsgi", help="the web server's application module "
                        "(bench/relay_wsgi.py serves it, next to the trivial view)")
    parser.add_argument("--celery-app", default="config", help="the worker's and beat's --app")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="then profile a run with py-spy, and "
                        "time one request and one batch stage by stage")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup, args.latency_seconds, args.answer_seconds = 6.0, 2.0, 8.0, 5.0
        args.burst, args.drain_timeout = min(args.burst, 30_000), min(args.drain_timeout, 90.0)
    return args


def main() -> None:
    args = parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="tributary-bench-"))
    (log_dir / "data").mkdir()
    started = time.monotonic()
    # A longer request log than the default, so every phase's refused requests can be listed.
    with run_emulator(max_requests=200_000) as emulator:
        options = StackOptions(
            database_url=args.database_url, broker_url=args.broker_url, us_url=emulator.us_url,
            eu_url=emulator.eu_url, web_port=free_ports(1)[0], web_workers=args.web_workers,
            worker_concurrency=args.worker_concurrency, log_dir=log_dir, settings=args.settings, wsgi=args.wsgi,
            celery_app=args.celery_app, pythonpath=args.pythonpath)
        env = environment(options)
        print(f"Code {code_revision()}. Setting up: database {args.database_url.rsplit('/', 1)[-1]}, "
              f"broker {args.broker_url}, logs in {log_dir}")
        recreate_database(args.database_url)
        flush_redis(args.broker_url)
        migrate(env, log_dir)
        os.environ.update(env)
        if args.pythonpath:
            sys.path.insert(0, args.pythonpath)
        django.setup()
        from relay_fixtures import make_workspaces, wait_until_checked

        owner, workspaces = make_workspaces(emulator)
        with running_stack(options, env) as stack:
            wait_until_checked([pk for bench in workspaces.values() for pk in bench.connection_ids])
            meter = CpuMeter({
                "web": lambda: process_tree(stack.web.pid),
                "worker": lambda: process_tree(stack.worker.pid) + process_tree(stack.beat.pid),
                "postgres": lambda: bench_database_pids(args.database_url),
                "redis": lambda: pids_named("redis-server"),
                "emulator": lambda: [int(emulator.health()["pid"])],
                "bench": lambda: [os.getpid()],
            })
            print(f"Stack: granian {args.web_workers} workers, Celery prefork "
                  f"{args.worker_concurrency} in one node per core (config.work), beat; {os.cpu_count()} cores shared by everything, this "
                  "load generator included")
            bench = Bench(args, emulator, stack, owner, workspaces, meter)
            _run_phases(bench)
            stack.check_alive()
            print_table(bench.results)
            if args.profile:
                bench.profile(args.profile)
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


def _run_phases(bench: Bench) -> None:
    print("Phases:")
    if bench.args.phases:
        bench.warm_up()
        for phase in bench.args.phases.split(","):
            if phase.strip() == "plan":  # --phases plan --plan 50: only the tracking-plan comparison
                relay_plans.compare(bench)
                continue
            getattr(bench, phase.strip())()
        bench.stack.check_alive()
        return
    bench.warm_up()
    bench.ingest()
    bench.ingest_spread()
    bench.end_to_end("one", "1 connection")
    bench.end_to_end("one", f"1 connection, to {STORE_PATH} (only parsed and stored)", via=STORE_PATH,
                     figure="e2e_store")
    bench.end_to_end("three", "3 connections")
    if bench.args.filters:
        relay_filters.compare(bench)
    if bench.args.plan:
        relay_plans.compare(bench)
    bench.end_to_end("one", f"1 connection, {bench.args.large_batch_size}-event requests",
                     batch_size=bench.args.large_batch_size, figure="e2e_one_large")
    bench.latency()
    bench.answer_time()
    bench.single_calls()
    bench.burst()
    bench.drain()
    if not bench.args.skip_official:
        bench.official_direct()
        bench.official_through_tributary()
    bench.stack.check_alive()


if __name__ == "__main__":
    main()
