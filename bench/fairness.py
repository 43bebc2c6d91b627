"""Fair across tenants (issue #15, part 3): one noisy workspace must not slow the others.

    .venv/bin/python bench/fairness.py [--quick] [--workspaces 100] [--rate 1000] [--burst 200000]
                                       [--worker-nodes N] [--busy-share 0.6]

The stack of bench/relay.py (a fresh PostgreSQL database, a flushed Redis database as broker and
cache, the web server as production starts it with `python -m config.serve`, the worker as it
starts it with `python -m config.work` (prefork nodes, one per core), beat, the Segment emulator), with `--workspaces` workspaces of one connection each,
made through the services.
For `--seconds`:
  * every workspace sends a steady share of `--rate` events/s in total, `--batch-size` events
    per request, on a fixed schedule (the workspaces staggered across the interval);
  * one connection ("throttled") answers 429 with Retry-After `--retry-after` from the start
    (the emulator's fault API);
  * `--burst-after` seconds in, one workspace ("noisy") also sends `--burst` events as fast as
    the API answers.
`--busy-share` adds another process busy that share of a core for the whole run, as other work on a
shared machine: the target must hold there too, not only on an idle machine.
Then it waits for the others to drain and prints, for the other workspaces, the p50/p99/max
latency from each event's send to the emulator receiving it (matched by the emitter's messageId,
as bench/relay.py measures latency), over the whole phase and while the burst's backlog was
being delivered, next to the target (p99 ≤ 1 s); the worker time each kind of connection took
(every task timed in the pool processes by bench/task_clock.py), above all the throttled one's
while it waited (target: about none); and what each part of the stack used of the CPU.

To measure a patched build, run this file from a copy of the tree: the web server (`python -m
config.serve`, granian) and Celery put their working directory (the tree the bench is in) first
on sys.path, ahead of PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import django
from relay_load import BatchMaker, Tally, _post, blast, headers, message_id
from relay_observe import (
    CpuMeter,
    bench_database_pids,
    describe_shares,
    epoch,
    percentile,
    pids_named,
    process_tree,
    relayed_id,
    wait_delivered,
)
from relay_stack import (
    StackOptions,
    code_revision,
    environment,
    flush_redis,
    migrate,
    recreate_database,
    running_stack,
)
from task_clock import read_clock

from segment_emulator.client import EmulatorClient
from segment_emulator.testing import free_ports, run_emulator

TARGET_P99_SECONDS = 1.0
DELIVER_TASK = "integrations.tasks.deliver_connection"


@dataclass(frozen=True)
class Tenant:
    index: int
    workspace_id: int
    connection_id: int
    ingest_key: str
    write_key: str
    prefix: str  # the steady load's messageIds: <prefix>-<number>


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s, a 50,000-event burst, Retry-After 30")
    parser.add_argument("--workspaces", type=int, default=100)
    parser.add_argument("--rate", type=float, default=1_000.0, help="steady events/s over all workspaces")
    parser.add_argument("--batch-size", type=int, default=10, help="events per steady request")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the steady load")
    parser.add_argument("--control-seconds", type=float, default=30.0, help="first the steady load alone, "
                        "no burst and no 429, for this long (0: skip)")
    parser.add_argument("--burst", type=int, default=200_000, help="events the noisy workspace sends at once")
    parser.add_argument("--burst-after", type=float, default=5.0, help="seconds into the steady load")
    parser.add_argument("--burst-senders", type=int, default=4, help="keep-alive connections of the burst")
    parser.add_argument("--retry-after", type=int, default=60, help="the throttled connection's Retry-After")
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--web-workers", type=int, default=6, help="granian worker processes, one thread each")
    parser.add_argument("--worker-concurrency", type=int, default=4 * (os.cpu_count() or 1),
                        help="Celery prefork processes (the product's default: 4 per core)")
    parser.add_argument("--worker-nodes", type=int, default=0, help="Celery nodes sharing those processes "
                        "(default: the product's, one per core)")
    parser.add_argument("--celery-app", default="task_clock", help="the worker's --app (task_clock is the "
                        "project's app with each task timed)")
    parser.add_argument("--busy-share", type=float, default=0.0, help="beside the stack, another process busy "
                        "this share of every 20 ms, in a session of its own (0.6: 60%% of a core), as other work on "
                        "a shared machine")
    parser.add_argument("--settings", default="config.settings.production")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_scale_bench")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/10")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.burst, args.retry_after = 20.0, min(args.burst, 50_000), min(args.retry_after, 30)
        args.control_seconds = min(args.control_seconds, 15.0)
    return args


# Spins for `share` of every 20 ms and sleeps the rest: a steady slice of one core taken.
_BUSY_LOOP = """
import sys, time
share = float(sys.argv[1])
while True:
    started = time.perf_counter()
    while time.perf_counter() - started < 0.02 * share:
        pass
    time.sleep(0.02 * (1 - share))
"""


@contextmanager
def busy_process(share: float) -> Iterator[None]:
    """Another process on the machine for the length of the block (none when `share` is 0)."""
    if share <= 0:
        yield
        return
    process = subprocess.Popen([sys.executable, "-c", _BUSY_LOOP, str(min(share, 1.0))], start_new_session=True)
    try:
        yield
    finally:
        process.kill()
        process.wait()


def make_tenants(emulator: EmulatorClient, count: int, run_id: str) -> tuple[Any, list[Tenant]]:
    from relay_fixtures import bench_owner, workspace_with, write_key

    owner = bench_owner()
    tenants = []
    for index in range(count):
        key = write_key("Fair", index)
        emulator.register_key(key, "us")
        made = workspace_with(owner, f"Tenant {index:03d}", [key])
        tenants.append(Tenant(index, made.workspace_id, made.connection_ids[0], made.ingest_key, key,
                              f"{run_id}-t{index:03d}"))
    return owner, tenants


async def steady(web_url: str, tenants: list[Tenant], *, rate: float, batch_size: int, seconds: float,
                 tallies: dict[int, Tally]) -> None:
    """Every tenant sends `batch_size` events each `interval`, on a fixed schedule (a late
    request does not shift the next); the tenants' schedules are spread over the interval."""
    interval = batch_size * len(tenants) / rate
    connector = aiohttp.TCPConnector(limit=4 * len(tenants))  # never the client's queue
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def tenant_load(tenant: Tenant, start: float) -> None:
            maker, tally = BatchMaker(tenant.prefix, batch_size), tallies[tenant.index]
            url, key_headers = f"{web_url}/v1/batch", headers(tenant.ingest_key)
            offset = interval * tenant.index / len(tenants)
            pending: list[asyncio.Task[None]] = []
            tally.started = time.time()
            for tick in itertools.count():
                due = start + offset + tick * interval
                if due - start >= seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                batch = maker.next()
                assert batch is not None
                pending.append(asyncio.create_task(_post(session, url, key_headers, batch[0], batch[1], tally,
                                                         record_send=True)))
            await asyncio.gather(*pending)
            tally.finished = time.time()

        start = time.monotonic()
        await asyncio.gather(*(tenant_load(tenant, start) for tenant in tenants))


async def load(args: argparse.Namespace, web_url: str, tenants: list[Tenant], noisy: Tenant,
               tallies: dict[int, Tally]) -> tuple[Tally, float]:
    async def burst() -> tuple[Tally, float]:
        await asyncio.sleep(args.burst_after)
        started = time.time()
        maker = BatchMaker(f"{noisy.prefix}-burst", 100, args.burst)
        return await blast(web_url, noisy.ingest_key, maker, senders=args.burst_senders), started

    _, (burst_tally, burst_started) = await asyncio.gather(
        steady(web_url, tenants, rate=args.rate, batch_size=args.batch_size, seconds=args.seconds, tallies=tallies),
        burst())
    return burst_tally, burst_started


def describe(latencies: list[float]) -> str:
    if not latencies:
        return "no events"
    return (f"{len(latencies):,} events: p50 {percentile(latencies, 0.5) * 1000:,.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:,.0f} ms, max {max(latencies) * 1000:,.0f} ms")


def main() -> None:
    args = parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="tributary-fairness-"))
    (log_dir / "data").mkdir()
    clock_dir = log_dir / "clock"
    clock_dir.mkdir()
    run_id = f"f{os.getpid()}{int(time.time())}"
    started = time.monotonic()
    expected_events = int(args.rate * args.seconds) + args.burst + 10_000
    with run_emulator(max_requests=400_000, max_events=expected_events) as emulator:
        options = StackOptions(
            database_url=args.database_url, broker_url=args.broker_url, us_url=emulator.us_url,
            eu_url=emulator.eu_url, web_port=free_ports(1)[0], web_workers=args.web_workers,
            worker_concurrency=args.worker_concurrency, worker_nodes=args.worker_nodes, log_dir=log_dir,
            settings=args.settings, celery_app=args.celery_app)
        env = environment(options)
        env["BENCH_TASK_CLOCK_DIR"] = str(clock_dir)
        print(f"Code {code_revision()}. Database {args.database_url.rsplit('/', 1)[-1]}, broker {args.broker_url}, "
              f"logs in {log_dir}; load average {_load()}")
        recreate_database(args.database_url)
        flush_redis(args.broker_url)
        migrate(env, log_dir)
        os.environ.update(env)
        django.setup()
        from relay_fixtures import wait_until_checked

        _, tenants = make_tenants(emulator, args.workspaces, run_id)
        noisy, throttled = tenants[0], tenants[1]
        others = tenants[2:]
        with running_stack(options, env) as stack, busy_process(args.busy_share):
            wait_until_checked([t.connection_id for t in tenants], timeout=300)
            meter = CpuMeter({
                "web": lambda: process_tree(stack.web.pid),
                "worker": lambda: process_tree(stack.worker.pid) + process_tree(stack.beat.pid),
                "postgres": lambda: bench_database_pids(args.database_url),
                "redis": lambda: pids_named("redis-server"),
                "emulator": lambda: [int(emulator.health()["pid"])],
                "bench": lambda: [os.getpid()],
            })
            nodes = f"{args.worker_nodes} nodes" if args.worker_nodes else "one node per core"
            print(f"Stack: granian {args.web_workers} workers, Celery prefork {args.worker_concurrency} processes in "
                  f"{nodes} (--app {args.celery_app}), beat; {os.cpu_count()} cores shared by everything")
            print(f"Load: {len(tenants)} workspaces x 1 connection, {args.rate:,.0f} events/s in total "
                  f"({args.rate / len(tenants):,.1f}/s each, {args.batch_size} per request) for {args.seconds:.0f} s; "
                  f"workspace {noisy.index} bursts {args.burst:,} events {args.burst_after:.0f} s in; "
                  f"connection {throttled.connection_id} answers 429 Retry-After {args.retry_after}"
                  f"{f'; another process busy {args.busy_share:.0%} of a core beside' if args.busy_share else ''}")
            control = control_phase(args, stack.web_url, emulator, tenants, others) if args.control_seconds else None
            emulator.set_fault(throttled.write_key, status=429, retry_after=args.retry_after)
            baseline = {t.write_key: int(emulator.stats(t.write_key)["accepted"]) for t in tenants}
            tallies = {t.index: Tally() for t in tenants}
            before = meter.snapshot()
            phase_started = time.time()
            burst_tally, burst_started = asyncio.run(load(args, stack.web_url, tenants, noisy, tallies))
            phase_ended = time.time()
            sent_others = sum(tallies[t.index].accepted for t in others)
            # The others and the burst drain; the throttled connection waits for its Retry-After.
            drain = _wait_each(emulator, baseline, tallies, others, args.drain_timeout)
            burst_drain = wait_delivered(emulator, {noisy.write_key: baseline[noisy.write_key]},
                                         burst_tally.accepted + tallies[noisy.index].accepted,
                                         timeout=args.drain_timeout)
            after = meter.snapshot()
            stack.check_alive()
            throttled_requests = emulator.requests(write_key=throttled.write_key, kind="tracking", limit=1000)
            clock = read_clock(str(clock_dir))
            print()
            report(args, tenants, others, noisy, throttled, tallies, burst_tally, burst_started, burst_drain.last_delivery,
                   phase_started, phase_ended, emulator, clock, throttled_requests, drain, sent_others, control)
            print(f"  cpu over the phase and the drain (cores): {describe_shares(CpuMeter.shares(before, after))}")
            print(f"  load average at the end: {_load()}")
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


def control_phase(args: argparse.Namespace, web_url: str, emulator: EmulatorClient, tenants: list[Tenant],
                  others: list[Tenant]) -> float:
    """The same steady load with no burst and no 429: what the machine gives the others anyway,
    so the noisy phase's figure can be read as the noise's cost. Returns the others' p99."""
    quiet = [replace(t, prefix=f"{t.prefix}c") for t in tenants]
    baseline = {t.write_key: int(emulator.stats(t.write_key)["accepted"]) for t in tenants}
    tallies = {t.index: Tally() for t in quiet}
    asyncio.run(steady(web_url, quiet, rate=args.rate, batch_size=args.batch_size, seconds=args.control_seconds,
                       tallies=tallies))
    _wait_each(emulator, baseline, tallies, quiet, args.drain_timeout)
    latencies, relay, _, _ = _latencies(emulator, [t for t in quiet if t.index >= 2], tallies)
    requests = [x for t in tallies.values() for x in t.latencies]
    print(f"  control, steady load alone for {args.control_seconds:.0f} s: ingest requests p50 "
          f"{percentile(requests, 0.5) * 1000:,.0f} ms, p99 {percentile(requests, 0.99) * 1000:,.0f} ms; the "
          f"{len(others)} others, send → emulator: {describe(latencies)}")
    print(f"    receivedAt → emulator (the relay alone): {describe(relay)}")
    return percentile(relay, 0.99)


def _latencies(emulator: EmulatorClient, tenants: list[Tenant], tallies: dict[int, Tally]
               ) -> tuple[list[float], list[float], list[float], int]:
    """Per accepted event of these tenants: send → emulator receive (end to end, ingest
    included), Tributary's receivedAt → emulator receive (the relay alone), the send time; and
    how many were not found."""
    end_to_end, relay, sent_times, missing = [], [], [], 0
    for tenant in tenants:
        tally = tallies[tenant.index]
        received: dict[str, tuple[float, float]] = {}
        for event in emulator.events(write_key=tenant.write_key, limit=tally.accepted + 100):
            found = relayed_id(event["payload"])
            stamped = event["payload"].get("receivedAt")
            if found is not None and found not in received:
                got = epoch(event["receivedAt"])
                received[found] = (got, got - epoch(stamped.replace("Z", "+00:00")) if stamped else float("nan"))
        for number, sent in tally.sent_at.items():
            hit = received.get(message_id(tenant.prefix, number))
            if hit is None:
                missing += 1
                continue
            end_to_end.append(hit[0] - sent)
            relay.append(hit[1])
            sent_times.append(sent)
    return end_to_end, relay, sent_times, missing


def _wait_each(emulator: EmulatorClient, baseline: dict[str, int], tallies: dict[int, Tally],
               others: list[Tenant], timeout: float) -> bool:
    """Until every other tenant's accepted events reached the emulator; False at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        behind = [t for t in others
                  if int(emulator.stats(t.write_key)["accepted"]) - baseline[t.write_key] < tallies[t.index].accepted]
        if not behind:
            return True
        time.sleep(0.5)
    return False


def report(args: argparse.Namespace, tenants: list[Tenant], others: list[Tenant], noisy: Tenant, throttled: Tenant,
           tallies: dict[int, Tally], burst_tally: Tally, burst_started: float, burst_delivered: float,
           phase_started: float, phase_ended: float, emulator: EmulatorClient,
           clock: list[tuple[str, str, float, float, float]], throttled_requests: list[dict[str, Any]],
           drained: bool, sent_others: int, control: float | None) -> None:
    refused = sum(sum(tallies[t.index].refused.values()) + tallies[t.index].errors for t in tenants)
    print("Results:")
    print(f"  steady load: {sum(t.accepted for t in tallies.values()):,} events accepted in "
          f"{phase_ended - phase_started:.1f} s{f', {refused:,} refused or failed' if refused else ''}; "
          f"request p99 {percentile([x for t in tallies.values() for x in t.latencies], 0.99) * 1000:,.0f} ms")
    print(f"  burst: {burst_tally.accepted:,} accepted in {burst_tally.elapsed:.1f} s "
          f"({burst_tally.accepted / burst_tally.elapsed:,.0f}/s), all delivered "
          f"{burst_delivered - burst_started:.1f} s after it began")
    whole, relay, sent_times, missing = _latencies(emulator, others, tallies)
    window = [burst_started <= sent <= burst_delivered for sent in sent_times]
    during = [x for x, inside in zip(whole, window, strict=True) if inside]
    relay_during = [x for x, inside in zip(relay, window, strict=True) if inside]
    p99, p99_during = percentile(relay, 0.99), percentile(relay_during, 0.99)
    verdict = "met" if max(p99, p99_during) <= TARGET_P99_SECONDS else "**missed**"
    print(f"  the other {len(others)} workspaces, send → emulator, whole phase: {describe(whole)}")
    print(f"  … while the burst's backlog was delivered: {describe(during)}")
    print(f"  receivedAt → emulator (the relay alone), whole phase: {describe(relay)}")
    print(f"  … while the burst's backlog was delivered: {describe(relay_during)}")
    sent_until = burst_started + burst_tally.elapsed
    sending = [x for x, sent in zip(relay, sent_times, strict=True) if burst_started <= sent <= sent_until]
    after_sending = [x for x, sent in zip(relay, sent_times, strict=True) if sent_until < sent <= burst_delivered]
    print(f"  … of which while the burst was being sent ({burst_tally.elapsed:.0f} s): {describe(sending)}")
    print(f"  … and after, while its backlog drained: {describe(after_sending)}")
    print(f"  relay p99 per 5 s of the phase (ms): {_p99_per_window(relay, sent_times, phase_started, 5.0)}")
    if missing or not drained:
        print(f"  {missing:,} of {sent_others:,} accepted events of the others not found at the emulator"
              f"{'' if drained else ' (not drained within the bounded wait)'}")
    # Worker time per connection, from the pool processes' own clocks.
    runs: dict[str, list[tuple[float, float, float]]] = {}
    for task, first, began, wall, cpu in clock:
        if task == DELIVER_TASK and phase_started <= began <= phase_ended + args.drain_timeout:
            runs.setdefault(first, []).append((began, wall, cpu))
    def total(keys: list[str]) -> tuple[int, float, float]:
        found = [r for k in keys for r in runs.get(k, [])]
        return len(found), sum(r[1] for r in found), sum(r[2] for r in found)

    # A run that made a request is a retry when its Retry-After ran out; any other run of the
    # throttled connection after its first 429 is time spent on it while it waits.
    answered = sorted(epoch(r["time"]) for r in throttled_requests if r["status"] == 429)
    throttled_runs = runs.get(str(throttled.connection_id), [])
    retries = [r for r in throttled_runs if any(r[0] - 0.05 <= t <= r[0] + r[1] + 0.05 for t in answered)]
    waiting = [r for r in throttled_runs if answered and r[0] > answered[0] and r not in retries]
    print(f"  throttled connection {throttled.connection_id}: {len(answered)} requests answered 429 in "
          f"{phase_ended - phase_started:.0f} s and the drain (Retry-After {args.retry_after} s); {len(retries)} "
          f"runs made them ({sum(r[1] for r in retries) * 1000:,.0f} ms wall); while it waited: {len(waiting)} runs "
          f"that found it not due, {sum(r[1] for r in waiting) * 1000:,.1f} ms of worker wall time, "
          f"{sum(r[2] for r in waiting) * 1000:,.1f} ms CPU (target: about none)")
    count, wall, cpu = total([str(noisy.connection_id)])
    print(f"  noisy connection {noisy.connection_id}: {count} runs, {wall:,.1f} s worker wall, {cpu:,.1f} s CPU; "
          f"longest run {max((r[1] for r in runs.get(str(noisy.connection_id), [])), default=0):.1f} s")
    count, wall, cpu = total([str(t.connection_id) for t in others])
    print(f"  the other {len(others)} connections: {count:,} runs, {wall:,.1f} s worker wall, {cpu:,.1f} s CPU "
          f"({wall / max(1, count) * 1000:,.1f} ms wall, {cpu / max(1, count) * 1000:,.1f} ms CPU per run)")
    print()
    print("| figure | measured | target |")
    print("|---|---|---|")
    if control is not None:
        print(f"| p99 ingest → delivered, the same {len(others)}, steady load alone (control) | "
              f"{control * 1000:,.0f} ms | |")
    print(f"| p99 ingest → delivered, the other {len(others)}, whole noisy phase | {p99 * 1000:,.0f} ms | ≤ 1,000 ms |")
    print(f"| p99 ingest → delivered, the other {len(others)}, during the burst's delivery | "
          f"{p99_during * 1000:,.0f} ms | ≤ 1,000 ms — {verdict} |")
    print(f"| p99 send → delivered (client's clock, ingest queueing included), whole noisy phase | "
          f"{percentile(whole, 0.99) * 1000:,.0f} ms | |")
    print(f"| worker time on the 429 connection while it waits | {sum(r[1] for r in waiting) * 1000:,.1f} ms in "
          f"{len(waiting)} runs | ≈ 0 |")


def _p99_per_window(latencies: list[float], sent_times: list[float], start: float, width: float) -> str:
    """The p99 of each `width`-second slice of send times, as one line: where in the phase
    the slow events were."""
    slices: dict[int, list[float]] = {}
    for latency, sent in zip(latencies, sent_times, strict=True):
        slices.setdefault(int((sent - start) // width), []).append(latency)
    return " ".join(f"{percentile(slices[k], 0.99) * 1000:,.0f}" for k in sorted(slices))


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


if __name__ == "__main__":
    main()
