"""The multi-node path (issue #15, part 5): two web nodes and two worker nodes on one broker.

    .venv/bin/python bench/multinode.py [--quick] [--brokers amqp,redis] [--seconds 20]

For each broker (RabbitMQ on its own vhost, Redis on its own database) it runs, in a child
process of its own (Django reads the broker's URL once per process):
  * a fresh PostgreSQL database, `--workspaces` workspaces with one connection each, made
    through the services, and the Segment emulator;
  * two web "nodes" (granian as production starts it, on two ports) and two worker "nodes"
    (`celery --app task_clock worker -n nodeA@%h` / `nodeB@%h`, prefork), each in a process
    group of its own as it would be a machine of its own, plus one beat, all on one broker;
    the cache (rate limits) is Redis in both runs, as production needs with several web nodes;
  1. throughput: 100-event batches through both web nodes (senders split between them and
     the workspaces) for `--seconds`; events/s accepted, and end to end (first send to the
     emulator acknowledging the last event);
  2. a node lost: the same load, and `--kill-after` seconds in, SIGKILL to worker node A's
     whole process group (its main process and pool, mid-request); then every messageId the API
     accepted must reach the emulator exactly once (0 lost, 0 extra; re-sends the emulator
     dropped as duplicates of a messageId it already had are counted apart, as Segment
     drops them), and the takeover time: from the kill to the first delivery, by node B, of
     the connections node A was delivering when it died;
  3. (Redis run, or `--ceiling`) one workspace's ingest ceiling: many concurrent senders into
     one workspace against the same senders spread over many, workspaces without connections,
     with what PostgreSQL's busy backends waited on (the per-workspace order lock shows as
     Lock:tuple / Lock:transactionid).
The parent prints one table for all brokers.

To measure a patched build, run this file from a copy of the tree: the web server (`python -m
config.serve`, granian) and Celery put their working directory (the tree the bench is in) first
on sys.path, ahead of PYTHONPATH.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
import psycopg
from relay_load import BatchMaker, Tally, blast, message_id
from relay_observe import PgActivity, accepted, epoch, percentile, relayed_id, wait_delivered
from relay_stack import (
    BIN,
    Service,
    StackOptions,
    _start,
    _wait_for_web,
    code_revision,
    environment,
    flush_redis,
    migrate,
    recreate_database,
    start_web,
)

from segment_emulator.client import EmulatorClient
from segment_emulator.testing import free_ports, run_emulator

BROKERS = {
    "amqp": "amqp://guest:guest@127.0.0.1:5672/tributary_scale",
    "redis": "redis://127.0.0.1:6379/15",
}
CACHE_URL = "redis://127.0.0.1:6379/15"
SUMMARY = "MULTINODE-SUMMARY "


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="8 s phases, a 4 s ceiling per run")
    parser.add_argument("--brokers", default="amqp,redis", help="comma-separated: amqp, redis")
    parser.add_argument("--broker", default="", help=argparse.SUPPRESS)  # a child's one broker
    parser.add_argument("--amqp-url", default=BROKERS["amqp"])
    parser.add_argument("--redis-url", default=BROKERS["redis"])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of phases 1 and 2")
    parser.add_argument("--kill-after", type=float, default=0.0, help="seconds into phase 2 (default: 40%%)")
    parser.add_argument("--senders", type=int, default=8, help="keep-alive connections, over both web nodes")
    parser.add_argument("--workspaces", type=int, default=4, help="workspaces with one connection each")
    parser.add_argument("--web-workers", type=int, default=3, help="granian workers per web node")
    parser.add_argument("--worker-concurrency", type=int, default=2, help="prefork processes per worker node")
    parser.add_argument("--ceiling", action="store_true", help="measure the one-workspace ceiling in every run")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0)
    parser.add_argument("--ceiling-senders", default="4,16,48", help="sender counts to try")
    parser.add_argument("--drain-timeout", type=float, default=240.0)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_scale_mn_bench")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.ceiling_seconds = 8.0, 4.0
    if not args.kill_after:
        args.kill_after = args.seconds * 0.4
    return args


@dataclass
class Nodes:
    webs: list[Service]
    web_urls: list[str]
    workers: dict[str, Service]
    beat: Service

    def all(self) -> list[Service]:
        return [*self.webs, *self.workers.values(), self.beat]


@dataclass(frozen=True)
class Tenant:
    workspace_id: int
    connection_id: int
    ingest_key: str
    write_key: str


def purge_broker(url: str) -> None:
    """Empty what a previous run left: the Redis database, or the vhost's Celery queue (made
    first on a machine that has never run this bench)."""
    if url.startswith("redis"):
        flush_redis(url)
        return
    from amqp.exceptions import NotAllowed
    from kombu import Connection

    try:
        connection = Connection(url, connect_timeout=5)
        connection.connect()
    except NotAllowed:
        make_vhost(url)
        connection = Connection(url, connect_timeout=5)
    with connection:
        channel: Any = connection.channel()  # kombu's stubs lack the amqp channel's methods
        with suppress(Exception):
            channel.queue_purge("celery")


def make_vhost(url: str) -> None:
    """The bench's own RabbitMQ vhost, for the URL's user, with rabbitmqctl on this machine."""
    parsed = urlsplit(url)
    vhost, user = unquote(parsed.path.lstrip("/")) or "/", unquote(parsed.username or "guest")
    rabbitmqctl = shutil.which("rabbitmqctl")
    if rabbitmqctl is None:
        raise SystemExit(f"RabbitMQ has no vhost {vhost!r} and rabbitmqctl is not here to make it: run "
                         f"`rabbitmqctl add_vhost {vhost}` and `rabbitmqctl set_permissions -p {vhost} {user} "
                         f"'.*' '.*' '.*'` where RabbitMQ runs, or pass --amqp-url with a vhost that exists.")
    print(f"making RabbitMQ vhost {vhost!r} for {user!r} (rabbitmqctl)", flush=True)
    subprocess.run([rabbitmqctl, "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run([rabbitmqctl, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"], check=True,
                   capture_output=True)


@contextmanager
def running_nodes(options: StackOptions, env: dict[str, str], web_ports: list[int],
                  concurrency: int) -> Iterator[Nodes]:
    with ExitStack() as stack:
        webs, urls = [], []
        for name, port in zip("AB", web_ports, strict=True):
            web = start_web(options, env, name=f"web{name}", port=port)  # as production, on its own port
            stack.callback(web.stop)
            webs.append(web)
            urls.append(f"http://127.0.0.1:{port}")
        workers = {}
        for name in "AB":
            worker = _start(f"worker{name}", [str(BIN / "celery"), "--app", options.celery_app, "worker", "--pool",
                                              "prefork", "--concurrency", str(concurrency), "--loglevel", "INFO",
                                              "--hostname", f"node{name}@%h"], env, options.log_dir)
            stack.callback(worker.stop)
            workers[name] = worker
        beat = _start("beat", [str(BIN / "celery"), "--app", options.celery_app, "beat", "--loglevel", "WARNING",
                               "--schedule", str(options.log_dir / "data" / "celerybeat-schedule")],
                      env, options.log_dir)
        stack.callback(beat.stop)
        for web, url in zip(webs, urls, strict=True):
            _wait_for_web(web, url)
        yield Nodes(webs, urls, workers, beat)


def make_tenants(emulator: EmulatorClient, count: int, label: str, connections: bool) -> list[Tenant]:
    from relay_fixtures import bench_owner, workspace_with, write_key

    from accounts.models import User

    owner = User.objects.filter(email="bench@tributary.localhost").first() or bench_owner()
    tenants = []
    for index in range(count):
        keys = [write_key(label, index)] if connections else []
        for key in keys:
            emulator.register_key(key, "us")
        made = workspace_with(owner, f"{label} {index}", keys)
        tenants.append(Tenant(made.workspace_id, made.connection_ids[0] if keys else 0, made.ingest_key,
                              keys[0] if keys else ""))
    return tenants


async def spread_load(urls: list[str], tenants: list[Tenant], prefix: str, *, senders: int,
                      seconds: float, batch_size: int = 100) -> tuple[dict[int, BatchMaker], list[Tally]]:
    """`senders` keep-alive connections, dealt round-robin over the web nodes and the tenants."""
    makers = {i: BatchMaker(f"{prefix}-w{i}", batch_size) for i in range(len(tenants))}
    jobs = []
    for n in range(senders):
        tenant = n % len(tenants)
        url = urls[n % len(urls)] if len(tenants) % len(urls) else urls[(n // len(tenants)) % len(urls)]
        jobs.append(blast(url, tenants[tenant].ingest_key, makers[tenant], senders=1, seconds=seconds))
    return makers, list(await asyncio.gather(*jobs))


def combine(tallies: list[Tally]) -> tuple[int, float, int]:
    accepted_total = sum(t.accepted for t in tallies)
    elapsed = max(t.finished for t in tallies) - min(t.started for t in tallies)
    failed = sum(sum(t.refused.values()) + t.errors for t in tallies)
    return accepted_total, elapsed, failed


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    broker = args.broker
    url = args.amqp_url if broker == "amqp" else args.redis_url
    log_dir = Path(tempfile.mkdtemp(prefix=f"tributary-multinode-{broker}-"))
    (log_dir / "data").mkdir()
    clock_dir = log_dir / "clock"
    clock_dir.mkdir()
    summary: dict[str, Any] = {"broker": broker, "url": url.replace("guest:guest@", "")}
    run_id = f"m{broker}{os.getpid()}{int(time.time())}"
    with run_emulator(max_requests=200_000, max_events=1_500_000) as emulator:
        web_ports = free_ports(2)
        options = StackOptions(
            database_url=args.database_url, broker_url=url, us_url=emulator.us_url, eu_url=emulator.eu_url,
            web_port=web_ports[0], web_workers=args.web_workers,
            worker_concurrency=args.worker_concurrency, log_dir=log_dir, celery_app="task_clock")
        env = environment(options)
        env["CACHE_URL"] = CACHE_URL  # environment() uses the broker's URL; an amqp URL is no cache
        env["BENCH_TASK_CLOCK_DIR"] = str(clock_dir)
        print(f"[{broker}] code {code_revision()}; broker {summary['url']}, logs in {log_dir}; "
              f"load average {_load()}", flush=True)
        recreate_database(args.database_url)
        purge_broker(url)
        flush_redis(CACHE_URL)
        migrate(env, log_dir)
        os.environ.update(env)
        django.setup()
        from relay_fixtures import wait_until_checked

        tenants = make_tenants(emulator, args.workspaces, "Node", connections=True)
        with running_nodes(options, env, web_ports, args.worker_concurrency) as nodes:
            wait_until_checked([t.connection_id for t in tenants], timeout=180)
            print(f"[{broker}] 2 web nodes x {args.web_workers} granian workers (:{web_ports[0]}, :{web_ports[1]}), "
                  f"2 worker nodes x {args.worker_concurrency} prefork (nodeA, nodeB), 1 beat; "
                  f"{len(tenants)} workspaces x 1 connection", flush=True)
            summary.update(throughput(args, emulator, nodes, tenants, f"{run_id}-tp"))
            summary.update(node_lost(args, emulator, nodes, tenants, f"{run_id}-kill"))
            if args.ceiling or broker == "redis":
                summary["ceiling"] = ceiling(args, emulator, nodes, run_id)
            for name, service in [("webA", nodes.webs[0]), ("webB", nodes.webs[1]), ("beat", nodes.beat),
                                  ("workerB", nodes.workers["B"])]:
                if service.process.poll() is not None:
                    summary.setdefault("exited", []).append(name)
    summary["load"] = _load()
    return summary


def throughput(args: argparse.Namespace, emulator: EmulatorClient, nodes: Nodes, tenants: list[Tenant],
               prefix: str) -> dict[str, Any]:
    keys = [t.write_key for t in tenants]
    baseline = accepted(emulator, keys)
    makers, tallies = asyncio.run(spread_load(nodes.web_urls, tenants, prefix, senders=args.senders,
                                              seconds=args.seconds))
    total, elapsed, failed = combine(tallies)
    started = min(t.started for t in tallies)
    drain = _wait_per_key(emulator, baseline, tenants, makers, args.drain_timeout)
    end_to_end = drain.total / max(1e-9, drain.last_delivery - started)
    latencies = [x for t in tallies for x in t.latencies]
    print(f"[{args.broker}] throughput: accepted {total:,} in {elapsed:.1f} s = {total / elapsed:,.0f} events/s "
          f"(request p50 {percentile(latencies, 0.5) * 1000:.0f} ms){f', {failed:,} failed' if failed else ''}; "
          f"delivered {drain.total:,} by {drain.last_delivery - started:.1f} s = {end_to_end:,.0f} events/s end to end",
          flush=True)
    by_node = _runs_by_node(nodes, started)
    print(f"[{args.broker}]   delivery runs by node: {by_node}", flush=True)
    return {"ingest_rate": total / elapsed, "e2e_rate": end_to_end, "tp_failed": failed,
            "tp_drained": drain.total >= total}


def node_lost(args: argparse.Namespace, emulator: EmulatorClient, nodes: Nodes, tenants: list[Tenant],
              prefix: str) -> dict[str, Any]:
    keys = [t.write_key for t in tenants]
    baseline = accepted(emulator, keys)
    duplicates_before = {k: int(emulator.stats(k)["duplicates"]) for k in keys}
    cursor = emulator.last_request_id()
    victim = nodes.workers["A"]
    killed: dict[str, Any] = {}

    async def load_and_kill() -> tuple[dict[int, BatchMaker], list[Tally]]:
        async def kill() -> None:
            await asyncio.sleep(args.kill_after)
            killed["leased"] = _leased_by(args.database_url, victim)
            killed["at"] = time.time()
            os.killpg(victim.pid, signal.SIGKILL)

        (makers, tallies), _ = await asyncio.gather(
            spread_load(nodes.web_urls, tenants, prefix, senders=args.senders, seconds=args.seconds), kill())
        return makers, tallies

    makers, tallies = asyncio.run(load_and_kill())
    victim.process.wait()
    total, elapsed, failed = combine(tallies)
    drain = _wait_per_key(emulator, baseline, tenants, makers, args.drain_timeout)
    # Exactly once: the emitter's messageIds found at the emulator, each counted.
    seen: Counter[str] = Counter()
    for tenant in tenants:
        made = makers[tenants.index(tenant)].made
        for event in emulator.events(write_key=tenant.write_key, limit=made + 1_000):
            found = relayed_id(event["payload"])
            if found is not None and found.startswith(f"{prefix}-"):
                seen[found] += 1
    failed_ids = failed  # events in refused or failed requests: the sender was told, not counted
    sent_ids = {message_id(f"{prefix}-w{i}", n) for i, maker in makers.items() for n in range(maker.made)}
    lost = len(sent_ids - set(seen)) - failed_ids
    twice = sum(1 for count in seen.values() if count > 1)
    extra = len(set(seen) - sent_ids)
    resent = sum(int(emulator.stats(k)["duplicates"]) - duplicates_before[k] for k in keys)
    takeover, per_connection = _takeover(emulator, tenants, killed, cursor)
    print(f"[{args.broker}] worker node A killed (SIGKILL to its process group) {args.kill_after:.0f} s in; it held "
          f"leases on connections {killed['leased'] or 'none'}", flush=True)
    print(f"[{args.broker}] node lost: accepted {total:,} in {elapsed:.1f} s{f', {failed:,} failed' if failed else ''}; "
          f"found at the emulator {len(seen):,} distinct messageIds; lost {lost:,}, delivered twice {twice:,}, "
          f"unknown {extra:,}; re-sends the emulator dropped as duplicates: {resent:,}; drained: "
          f"{drain.total >= total}", flush=True)
    print(f"[{args.broker}]   delivery resumed after the kill, per connection: {per_connection}; takeover "
          f"{takeover:.1f} s", flush=True)
    return {"kill_accepted": total, "lost": lost, "twice": twice, "unknown": extra, "resent": resent,
            "takeover": takeover, "leased_at_kill": killed["leased"]}


def _wait_per_key(emulator: EmulatorClient, baseline: dict[str, int], tenants: list[Tenant],
                  makers: dict[int, BatchMaker], timeout: float) -> Any:
    """Until each connection has as many new events as its workspace was sent (or the wait ends)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = wait_delivered(emulator, baseline, 0, timeout=0.01)
        if all(last.delivered[t.write_key] >= makers[i].made for i, t in enumerate(tenants)):
            break
        time.sleep(0.5)
    return wait_delivered(emulator, baseline, 0, timeout=0.01) if last is None else last


def _leased_by(database_url: str, victim: Service) -> list[int]:
    """Connections whose lease is held by one of the victim node's processes right now."""
    from relay_observe import process_tree

    pids = {str(pid) for pid in process_tree(victim.pid)}
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute("SELECT id, lease_owner FROM integrations_connection "
                                  "WHERE lease_until > now()").fetchall()
    return sorted(pk for pk, owner in rows if owner and owner.split(":")[1] in pids)


def _takeover(emulator: EmulatorClient, tenants: list[Tenant], killed: dict[str, Any],
              cursor: int) -> tuple[float, dict[int, str]]:
    """Per connection, from the kill to its first accepted batch after it; the takeover is the
    longest of those among the connections the dead node held."""
    per: dict[int, str] = {}
    gaps = []
    for tenant in tenants:
        requests = emulator.requests(write_key=tenant.write_key, kind="tracking", since=cursor, limit=100_000)
        after = sorted(epoch(r["time"]) for r in requests if r["accepted"] and epoch(r["time"]) >= killed["at"])
        gap = (after[0] - killed["at"]) if after else float("inf")
        per[tenant.connection_id] = f"{gap:.1f} s"
        if tenant.connection_id in killed["leased"]:
            gaps.append(gap)
    return max(gaps, default=0.0), per


def _runs_by_node(nodes: Nodes, since: float) -> dict[str, int]:
    """Delivery runs since `since` per worker node, from the task clock's files (<host>-<pid>.tsv)."""
    from relay_observe import process_tree
    from task_clock import read_clock

    directory = os.environ["BENCH_TASK_CLOCK_DIR"]
    pool = {str(pid): name for name, worker in nodes.workers.items() for pid in process_tree(worker.pid)}
    counts: Counter[str] = Counter()
    for file in os.listdir(directory):
        node = pool.get(file.removesuffix(".tsv").rsplit("-", 1)[-1], "?")
        for task, _, began, _, _ in read_clock(directory, only=file):
            if task.endswith("deliver_connection") and began >= since:
                counts[f"node{node}"] += 1
    return dict(sorted(counts.items()))


def ceiling(args: argparse.Namespace, emulator: EmulatorClient, nodes: Nodes, run_id: str) -> list[dict[str, Any]]:
    """One workspace against the same senders over as many workspaces, no connections (ingest only)."""
    senders_list = [int(s) for s in args.ceiling_senders.split(",")]
    many = make_tenants(emulator, max(senders_list), "Ceiling", connections=False)
    rows = []
    for senders in senders_list:
        for label, tenants in (("1 workspace", many[:1]), (f"{senders} workspaces", many[:senders])):
            with PgActivity(args.database_url) as activity:
                _, tallies = asyncio.run(spread_load(nodes.web_urls, tenants, f"{run_id}-c{senders}{len(tenants)}",
                                                     senders=senders, seconds=args.ceiling_seconds))
            total, elapsed, failed = combine(tallies)
            latencies = [x for t in tallies for x in t.latencies]
            waits = sum(count for (state, _), count in activity.seen.items() if state.startswith("Lock"))
            busy = sum(activity.seen.values())
            row = {"senders": senders, "layout": label, "rate": total / elapsed,
                   "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
                   "lock_waiting": waits / max(1, activity.samples), "busy": busy / max(1, activity.samples),
                   "failed": failed}
            rows.append(row)
            print(f"[{args.broker}] ceiling, {senders} senders into {label}: {row['rate']:,.0f} events/s, request "
                  f"p50 {row['p50_ms']:.0f} ms p99 {row['p99_ms']:.0f} ms; backends waiting on a lock "
                  f"{row['lock_waiting']:.2f} of {row['busy']:.2f} busy on average"
                  f"{f'; {failed:,} failed' if failed else ''}", flush=True)
    rows.append({"alone_ms": _append_alone(args.database_url, many[0].workspace_id)})
    print(f"[{args.broker}] one 100-event append statement alone (nothing else in that workspace): "
          f"p50 {rows[-1]['alone_ms']:.1f} ms", flush=True)
    return rows


def _append_alone(database_url: str, workspace_id: int, count: int = 30) -> float:
    """The workspace lock is held from reserving seqs to commit: time whole appends, one at a
    time, as an upper bound on that hold (the ceiling is about 100 events / this)."""
    from django.db import connection as db
    from django.utils import timezone

    from integrations.ingest.messages import normalise
    from integrations.relay.log import events_append

    del database_url
    maker = BatchMaker(f"alone{os.getpid()}{int(time.time())}", 100)
    times = []
    for _ in range(count):
        batch = maker.next()
        assert batch is not None
        body = json.loads(batch[1])
        now = timezone.now()
        messages = [normalise(item, received_at=now, sent_at=body["sentAt"]) for item in body["batch"]]
        began = time.perf_counter()
        events_append(workspace_id=workspace_id, messages=messages)
        times.append(time.perf_counter() - began)
        time.sleep(0.02)
    db.close()
    return percentile(times, 0.5) * 1000


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    args = parse_args()
    if args.broker:
        summary = run_one(args)
        print(SUMMARY + json.dumps(summary), flush=True)
        return
    started = time.monotonic()
    summaries = []
    for broker in args.brokers.split(","):
        command = [sys.executable, __file__, *sys.argv[1:], "--broker", broker.strip()]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(SUMMARY):
                summaries.append(json.loads(line[len(SUMMARY):]))
            else:
                print(line, end="", flush=True)
        process.wait()
        if process.returncode:
            print(f"[{broker}] exited with {process.returncode}")
    print_table(summaries)
    print(f"\nTotal {time.monotonic() - started:.0f} s; load average {_load()}.")


def print_table(summaries: list[dict[str, Any]]) -> None:
    print("\n| broker | ingest events/s (2 web nodes) | end to end events/s | node killed: lost / twice "
          "| re-sends deduped | takeover |")
    print("|---|---|---|---|---|---|")
    for s in summaries:
        print(f"| {s['broker']} | {s['ingest_rate']:,.0f} | {s['e2e_rate']:,.0f} | {s['lost']:,} / {s['twice']:,} "
              f"(of {s['kill_accepted']:,}) — target 0 | {s['resent']:,} | {s['takeover']:.1f} s |")
    for s in summaries:
        if "ceiling" not in s:
            continue
        print(f"\nOne workspace's ingest ceiling ({s['broker']} run; 2 web nodes):\n")
        print("| senders | into | events/s | request p50 / p99 | backends waiting on a lock |")
        print("|---|---|---|---|---|")
        for row in s["ceiling"]:
            if "rate" in row:
                print(f"| {row['senders']} | {row['layout']} | {row['rate']:,.0f} | {row['p50_ms']:.0f} / "
                      f"{row['p99_ms']:.0f} ms | {row['lock_waiting']:.2f} of {row['busy']:.2f} |")
            else:
                print(f"\nOne 100-event append alone: p50 {row['alone_ms']:.1f} ms; the workspace's lock covers "
                      "only part of it, so even appends fully serialised would take at least about "
                      f"{100 / max(1e-6, row['alone_ms'] / 1000):,.0f} events/s into one workspace in 100-event "
                      "requests.")


if __name__ == "__main__":
    main()
