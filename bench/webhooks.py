"""How many signed single-event webhooks a second Tributary receives, stores and relays.

    .venv/bin/python bench/webhooks.py [--seconds 15] [--senders 16] [--quick] [--ceiling P] [--pythonpath DIR]

The same stack as bench/relay.py, built with its helpers: a fresh PostgreSQL database
(`tributary_bench_webhooks`, dropped and re-created), Redis database 12 as broker and cache
(flushed), the web server as production starts it (granian, `python -m config.serve`,
production settings), a Celery worker and beat, and the Segment emulator. One workspace with
one connection and one signed webhook endpoint (chat assistant preset), made through the
services.

Phases:
  1. warm-up (unmeasured);
  2. throughput: `--senders` keep-alive connections each posting the next signed
     `conversation.started` webhook (a fresh webhook-id, signed with HMAC-SHA256 as Standard
     Webhooks says) as soon as the last is answered; requests/s accepted, latency p50/p99;
  3. delivery: wait until the emulator has every accepted event (end-to-end figure);
  4. retries: the same requests again (same webhook-ids, fresh signatures): all must be
     answered 200 as duplicates, and the emulator must not receive a single extra event;
  5. the ingest API's single-event /v1/track at the same load, for comparison;
  6. with `--ceiling P`, the store statement alone from P processes, to one workspace and to
     one each: what the workspace's stream row lock, held through each commit, allows.
Target: ≥ 1,000 requests/s on this 2-core machine (issue #13).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import django
import orjson
import relay_profile
from relay_observe import CpuMeter, bench_database_pids, describe_shares, percentile, pids_named, process_tree
from relay_stack import (
    StackOptions,
    code_revision,
    environment,
    flush_redis,
    migrate,
    recreate_database,
    running_stack,
)

from segment_emulator.testing import free_ports, run_emulator

TIMEOUT = aiohttp.ClientTimeout(total=30)
# A chat assistant's conversation.started, ~300 bytes; %s = webhook number, for unique payloads.
PAYLOAD = (b'{"type":"conversation.started","id":"evt_%d","created_at":"2026-12-02T10:15:00Z",'
           b'"data":{"conversation":{"id":"conv_%d","channel":"web","page_url":"https://shop.example.com/pricing"},'
           b'"visitor":{"id":"vis_%d","user_id":"user-%d"}}}')


@dataclass
class Tally:
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.finished - self.started)

    def describe(self) -> str:
        refused = f", refused {self.refused}" if self.refused else ""
        errors = f", {self.errors} failed" if self.errors else ""
        return (f"{self.requests:,} requests in {self.elapsed:.1f} s = {self.requests / self.elapsed:,.0f} requests/s "
                f"(accepted {self.accepted:,}, duplicates {self.duplicates:,}{refused}{errors}); "
                f"p50 {percentile(self.latencies, 0.5) * 1000:.1f} ms, p99 {percentile(self.latencies, 0.99) * 1000:.1f} ms")


class Signer:
    """Signs as a Standard Webhooks sender: v1,base64(HMAC-SHA256(key, "id.timestamp.body"))."""

    def __init__(self, secret: str, prefix: str) -> None:
        self.key = base64.b64decode(secret.removeprefix("whsec_"))
        self.prefix = prefix

    def request(self, number: int) -> tuple[bytes, dict[str, str]]:
        body = PAYLOAD % (number, number, number, number)
        webhook_id = f"{self.prefix}-{number}"
        timestamp = str(int(time.time()))
        digest = hmac.new(self.key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
        return body, {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": timestamp,
                      "webhook-signature": f"v1,{base64.b64encode(digest).decode()}"}


async def blast(url: str, signer: Signer, *, senders: int, seconds: float | None = None,
                numbers: list[int] | None = None) -> tuple[Tally, int]:
    """Post signed webhooks for `seconds` (fresh numbers) or once for each of `numbers`."""
    tally = Tally()
    counter = iter(numbers) if numbers is not None else None
    next_number = [0]

    def take() -> int | None:
        if counter is not None:
            return next(counter, None)
        next_number[0] += 1
        return next_number[0]

    async def sender(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            number = take()
            if number is None:
                return
            body, headers = signer.request(number)
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                tally.errors += 1
                continue
            tally.requests += 1
            tally.latencies.append(time.perf_counter() - started)
            if status != 200:
                tally.refused[status] = tally.refused.get(status, 0) + 1
                continue
            answer = orjson.loads(payload)
            if answer.get("duplicate"):
                tally.duplicates += 1
            else:
                tally.accepted += int(answer.get("accepted", 0))

    connector = aiohttp.TCPConnector(limit=senders)
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session:
        deadline = time.monotonic() + (seconds if seconds is not None else 10_000.0)
        tally.started = time.time()
        await asyncio.gather(*(sender(session, deadline) for _ in range(senders)))
        tally.finished = time.time()
    return tally, next_number[0]


async def blast_ingest(web_url: str, ingest_key: str, *, senders: int, seconds: float) -> tuple[Tally, int]:
    """The same request rate through the ingest API: one track call per request, Basic auth."""
    tally = Tally()
    auth = base64.b64encode(f"{ingest_key}:".encode()).decode()
    headers = {"content-type": "application/json", "authorization": f"Basic {auth}"}
    counter = [0]

    async def sender(session: aiohttp.ClientSession, deadline: float) -> None:
        while time.monotonic() < deadline:
            counter[0] += 1
            body = (b'{"event":"Conversation Started","userId":"user-%d","anonymousId":"vis_%d",'
                    b'"timestamp":"2026-12-02T10:15:00Z","properties":{"conversation_id":"conv_%d","channel":"web"}}'
                    % (counter[0], counter[0], counter[0]))
            started = time.perf_counter()
            try:
                async with session.post(f"{web_url}/v1/track", data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (TimeoutError, aiohttp.ClientError):
                tally.errors += 1
                continue
            tally.requests += 1
            tally.latencies.append(time.perf_counter() - started)
            if status == 200:
                tally.accepted += 1
            else:
                tally.refused[status] = tally.refused.get(status, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=senders), timeout=TIMEOUT) as session:
        deadline = time.monotonic() + seconds
        tally.started = time.time()
        await asyncio.gather(*(sender(session, deadline) for _ in range(senders)))
        tally.finished = time.time()
    return tally, counter[0]


def describe_cpu(used: dict[str, float], tally: Tally) -> None:
    """Cores used per group of processes, and CPU per request: per process group, and for the
    whole stack with the load generator. Steadier than requests/s on a machine others share,
    and the figure that says what 2 cores allow."""
    print(f"    cpu (cores): {describe_shares(used)}")
    per_group = {name: cores * tally.elapsed / max(1, tally.requests) for name, cores in used.items() if name != "other"}
    ours = sum(per_group.values())
    print(f"    cpu per request: {'  '.join(f'{name} {ms * 1000:.2f}' for name, ms in per_group.items())} ms; "
          f"whole stack {ours * 1000:.2f} ms, so 2 idle cores would allow about {2 / max(ours, 1e-9):,.0f} requests/s")


def ceiling(owner: Any, processes: int, seconds: float) -> str:
    """Webhooks/s of `store.claim_and_append` alone (no HTTP, no signature), from `processes`
    forked processes storing as fast as they can: first all to one workspace, whose stream row
    lock each statement holds through its commit's WAL flush, then each to a workspace of its
    own. The ratio is what the one lock costs at this concurrency."""
    from django.db import connections
    from relay_fixtures import workspace_with

    from accounts.audit import Actor
    from accounts.models import Workspace
    from integrations.webhooks.services import endpoint_create

    endpoints = []
    for number in range(processes):
        made = workspace_with(owner, f"Ceiling {number}", [])
        endpoints.append(endpoint_create(actor=Actor(user=owner), workspace=Workspace.objects.get(pk=made.workspace_id),
                                         name="Ceiling", preset="chat_assistant").endpoint)
    lines = []
    for label, targets in (("one workspace", [endpoints[0]] * processes), ("a workspace each", endpoints)):
        connections.close_all()  # each forked process opens its own
        context = multiprocessing.get_context("fork")
        results = context.Queue()
        tag = f"{label[0]}{time.time():.0f}"
        workers = [context.Process(target=_store_repeatedly, args=(e.pk, e.workspace_id, f"{tag}-{i}", seconds, results))
                   for i, e in enumerate(targets)]
        for worker in workers:
            worker.start()
        counts = [results.get() for _ in workers]
        for worker in workers:
            worker.join()
        stored, cpu = sum(n for n, _ in counts), sum(c for _, c in counts)
        lines.append(f"{label} {stored / seconds:,.0f}/s ({cpu / max(1, stored) * 1e6:.0f} µs client CPU each)")
    return (f"  the store statement alone, {processes} processes: {'; '.join(lines)}; "
            f"load average {os.getloadavg()[0]:.1f}")


def _store_repeatedly(endpoint_id: int, workspace_id: int, tag: str, seconds: float, results: Any) -> None:
    from django.utils import timezone

    from integrations.ingest.messages import Normaliser
    from integrations.models import SignatureVerdict
    from integrations.webhooks.store import claim_and_append

    stored, started, deadline = 0, time.process_time(), time.monotonic() + seconds
    while time.monotonic() < deadline:
        stored += 1
        message = Normaliser(received_at=timezone.now())({"type": "track", "event": "Conversation Started",
                                                          "userId": "user-1", "messageId": f"{tag}-{stored}"})
        claim_and_append(endpoint_id=endpoint_id, workspace_id=workspace_id, webhook_id=f"{tag}-{stored}",
                         verdict=SignatureVerdict.VERIFIED, body=b"{}", messages=[message])
    results.put((stored, time.process_time() - started))


def wait_delivered(emulator, key: str, expected: int, timeout: float) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    """The emulator's accepted count for the key (duplicates ignored), once it reaches `expected`
    or the time is up, and when it stopped growing."""
    deadline = time.monotonic() + timeout
    count, last_change = -1, time.time()
    while time.monotonic() < deadline:
        now = _accepted(emulator, key)
        if now != count:
            count, last_change = now, time.time()
        if count >= expected:
            break
        time.sleep(0.2)
    return count, last_change


def _accepted(emulator, key: str) -> int:  # type: ignore[no-untyped-def]
    """Events the emulator accepted for the key, each messageId counted once."""
    return int(emulator.stats(key)["accepted"])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5-second phases")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--senders", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--web-workers", type=int, default=6, help="granian worker processes, one thread each")
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_bench_webhooks")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--ceiling", type=int, metavar="P", default=0, help="then the store statement alone from P "
                        "processes, all to one workspace and each to its own: one workspace's ceiling")
    parser.add_argument("--pythonpath", default="", help="directory put first on the stack's and this script's "
                        "PYTHONPATH: measure a copy of the tree (another revision) on the same machine")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="then an unmeasured run with the web "
                        "processes under py-spy, summarised function by function")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.warmup = 5.0, 2.0
    return args


def main() -> None:
    args = parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="tributary-bench-webhooks-"))
    (log_dir / "data").mkdir()
    with run_emulator() as emulator:
        options = StackOptions(database_url=args.database_url, broker_url=args.broker_url, us_url=emulator.us_url,
                               eu_url=emulator.eu_url, web_port=free_ports(1)[0], web_workers=args.web_workers,
                               worker_concurrency=args.worker_concurrency, log_dir=log_dir,
                               pythonpath=args.pythonpath)
        env = environment(options)
        print(f"Code {code_revision()}. Database {args.database_url.rsplit('/', 1)[-1]}, broker {args.broker_url}, "
              f"logs in {log_dir}")
        recreate_database(args.database_url)
        flush_redis(args.broker_url)
        migrate(env, log_dir)
        os.environ.update(env)
        if args.pythonpath:
            sys.path.insert(0, args.pythonpath)
        django.setup()
        from relay_fixtures import bench_owner, wait_until_checked, workspace_with, write_key

        from accounts.audit import Actor
        from integrations.webhooks.services import endpoint_create

        owner = bench_owner()
        key = write_key("Webhooks", 1)
        emulator.register_key(key, "us")
        bench = workspace_with(owner, "Bench webhooks", [key])
        from accounts.models import Workspace

        created = endpoint_create(actor=Actor(user=owner), workspace=Workspace.objects.get(pk=bench.workspace_id),
                                  name="Chat assistant", preset="chat_assistant")
        with running_stack(options, env) as stack:
            wait_until_checked(bench.connection_ids)
            url = f"{stack.web_url}/webhooks/in/{created.endpoint.public_id}"
            meter = CpuMeter({
                "web": lambda: process_tree(stack.web.pid),
                "worker": lambda: process_tree(stack.worker.pid) + process_tree(stack.beat.pid),
                "postgres": lambda: bench_database_pids(args.database_url),
                "redis": lambda: pids_named("redis-server"),
                "emulator": lambda: [int(emulator.health()["pid"])],
                "bench": lambda: [os.getpid()],
            })
            print(f"Stack: granian {args.web_workers} workers, Celery prefork {args.worker_concurrency} in one node per "
                  f"core (config.work), beat; "
                  f"{os.cpu_count()} cores shared by everything, the load generator included; {args.senders} senders")
            before_warm = _accepted(emulator, key)
            warm, _ = asyncio.run(blast(url, Signer(created.secret, "warm"), senders=args.senders, seconds=args.warmup))
            print(f"  warm-up: {warm.describe()}")
            # Every phase starts on a drained relay, so no earlier event is counted in it.
            baseline, _ = wait_delivered(emulator, key, before_warm + warm.accepted, args.drain_timeout)
            before = meter.snapshot()
            signer = Signer(created.secret, "run")
            tally, sent = asyncio.run(blast(url, signer, senders=args.senders, seconds=args.seconds))
            used = CpuMeter.shares(before, meter.snapshot())
            print(f"  signed single-event webhooks: {tally.describe()}")
            describe_cpu(used, tally)
            delivered, last = wait_delivered(emulator, key, baseline + tally.accepted, args.drain_timeout)
            delivered -= baseline
            print(f"  delivered to the emulator: {delivered:,} of {tally.accepted:,} accepted "
                  f"(this phase's by {last - tally.started:.1f} s after its first request)")
            retry, _ = asyncio.run(blast(url, signer, senders=args.senders, numbers=list(range(1, min(sent, 2000)))))
            after_retry, _ = wait_delivered(emulator, key, 10**12, 3.0)
            print(f"  retries of {retry.requests:,} accepted webhook-ids: {retry.describe()}; "
                  f"extra events at the emulator: {after_retry - baseline - delivered}")
            wait_delivered(emulator, key, 10**12, 1.0)
            before = meter.snapshot()
            ingest, _ = asyncio.run(blast_ingest(stack.web_url, bench.ingest_key, senders=args.senders,
                                                 seconds=args.seconds))
            used = CpuMeter.shares(before, meter.snapshot())
            print(f"  for comparison, the ingest API's single-event /v1/track, same load: {ingest.describe()}")
            describe_cpu(used, ingest)
            stack.check_alive()
            if args.ceiling:
                print(ceiling(owner, args.ceiling, args.seconds))
            if args.profile:
                web = [pid for pid in process_tree(stack.web.pid) if pid != stack.web.pid]
                args.profile.mkdir(parents=True, exist_ok=True)
                recordings = relay_profile.start(args.profile, "webhooks", {"web": web}, args.seconds)
                asyncio.run(blast(url, Signer(created.secret, "profile"), senders=args.senders, seconds=args.seconds))
                relay_profile.finish(recordings)
                relay_profile.summarise(recordings)
            print(f"\nwebhooks requests/s: {tally.requests / tally.elapsed:,.0f} (target ≥ 1,000); "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
