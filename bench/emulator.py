"""How many events per second the Segment emulator accepts on one core.

    .venv/bin/python bench/emulator.py [--seconds 10] [--senders 8] [--batch-size 500]

The emulator runs as a subprocess pinned to one core (taskset), this load generator on
another. Senders post 500-event /v1/batch bodies of ~300-byte track events with unique
messageIds over keep-alive connections. Events/s is read back from the emulator's own
counters, so only what it accepted counts. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from segment_emulator.client import EmulatorClient
from segment_emulator.testing import run_emulator

WRITE_KEY = "bench-write-key-000000000001"
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode(),
}
# One track event, ~300 bytes once filled in: user, messageId and order id vary per event.
EVENT = (
    b'{"type":"track","event":"Order Completed","userId":"user-%06d","messageId":"%s-%010d",'
    b'"timestamp":"2026-01-05T10:00:00.000Z","properties":{"order_id":"o-%010d","revenue":42.5,'
    b'"currency":"EUR","plan":"pro"},"context":{"library":{"name":"tributary","version":"0.1.0"},'
    b'"ip":"203.0.113.9","userAgent":"tributary-relay/0.1"}}'
)


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    failures: int = 0


class BatchMaker:
    """Batch bodies with never-repeating messageIds, built from a byte template (cheap)."""

    def __init__(self, size: int):
        self.size = size
        self.run = f"bench{os.getpid()}-{int(time.time())}".encode()
        self.numbers = itertools.count()

    def body(self) -> bytes:
        run, numbers = self.run, self.numbers
        events = [EVENT % (n % 1_000_000, run, n, n) for n in itertools.islice(numbers, self.size)]
        return b'{"batch":[' + b",".join(events) + b'],"sentAt":"2026-01-05T10:00:01.000Z"}'


async def sender(
    session: aiohttp.ClientSession, url: str, maker: BatchMaker, deadline: float, tally: Tally
) -> None:
    while time.monotonic() < deadline:
        body = maker.body()
        started = time.perf_counter()
        async with session.post(url, data=body, headers=HEADERS) as response:
            await response.read()
            if response.status != 200:
                tally.failures += 1
        tally.latencies.append(time.perf_counter() - started)


async def load(url: str, senders: int, batch_size: int, seconds: float) -> tuple[Tally, float]:
    maker, tally = BatchMaker(batch_size), Tally()
    connector = aiohttp.TCPConnector(limit=senders)
    # A stuck emulator must not keep the benchmark from ending.
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(*(sender(session, url, maker, deadline, tally) for _ in range(senders)))
        return tally, time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU time a process has used (Linux), to see through a busy machine."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(core: int) -> float | None:
    """CPU time spent on one core by anything (Linux), to spot other processes competing."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{core} "):
                ticks = [int(value) for value in line.split()[1:]]
                idle = ticks[3] + ticks[4]
                return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None
    return None


def resident_megabytes(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@dataclass
class Measurement:
    elapsed: float
    stats: dict[str, int]  # emulator counters over the run (after minus before)
    tally: Tally
    cpu: dict[str, float | None]  # seconds of CPU: emulator, its core, this load generator


def measure(emulator: EmulatorClient, args: argparse.Namespace) -> Measurement:
    url = f"{emulator.us_url}/v1/batch"
    asyncio.run(load(url, args.senders, args.batch_size, args.warmup))  # warm connections and caches
    pid = int(emulator.health()["pid"])

    def snapshot() -> tuple[dict[str, int], dict[str, float | None]]:
        cpu = {
            "emulator": cpu_seconds(pid),
            "core": core_busy_seconds(args.emulator_cpu),
            "load": cpu_seconds(os.getpid()),
        }
        return emulator.stats(WRITE_KEY), cpu

    stats_before, cpu_before = snapshot()
    tally, elapsed = asyncio.run(load(url, args.senders, args.batch_size, args.seconds))
    stats_after, cpu_after = snapshot()
    stats = {k: stats_after[k] - stats_before[k] for k in ("accepted", "received", "requests")}
    cpu = {k: _minus(cpu_after[k], cpu_before[k]) for k in cpu_before}
    return Measurement(elapsed, stats, tally, cpu)


def _minus(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def report(run: Measurement, args: argparse.Namespace, rss: float | None) -> None:
    accepted, elapsed, tally = run.stats["accepted"], run.elapsed, run.tally
    print(f"emulator accepted {accepted:,} events in {elapsed:.1f} s, pinned to core {args.emulator_cpu}")
    print(f"  events/s accepted : {accepted / elapsed:,.0f}")
    print(
        f"  requests/s        : {run.stats['requests'] / elapsed:,.1f}  "
        f"({args.batch_size}-event batches, {args.senders} senders)"
    )
    print(
        f"  latency p50 / p99 : {percentile(tally.latencies, 0.5) * 1000:.1f} ms / "
        f"{percentile(tally.latencies, 0.99) * 1000:.1f} ms"
    )
    print(
        f"  not accepted      : {run.stats['received'] - accepted} events, {tally.failures} non-200 answers"
    )
    emulator_cpu, core_cpu, load_cpu = run.cpu["emulator"], run.cpu["core"], run.cpu["load"]
    if emulator_cpu:
        print(
            f"  per emulator CPU-s: {accepted / emulator_cpu:,.0f} events  "
            f"(emulator {emulator_cpu / elapsed:.0%} of its core busy)"
        )
    if emulator_cpu is not None and core_cpu is not None and load_cpu is not None:
        others = max(0.0, core_cpu - emulator_cpu) / elapsed
        print(
            f"  contention        : other processes took {others:.0%} of the emulator's core; "
            f"load generator {load_cpu / elapsed:.0%} busy"
        )
    if rss is not None:
        print(f"  emulator memory   : {rss:,.0f} MB resident")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="measured run length")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured run first")
    parser.add_argument("--senders", type=int, default=8, help="concurrent keep-alive connections")
    parser.add_argument("--batch-size", type=int, default=500, help="events per /v1/batch request")
    parser.add_argument("--emulator-cpu", type=int, default=0, help="core the emulator is pinned to")
    parser.add_argument("--load-cpu", type=int, default=1, help="core this load generator is pinned to")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {args.load_cpu})
    with run_emulator(cpu=args.emulator_cpu, register={WRITE_KEY: "us"}) as emulator:
        run = measure(emulator, args)
        report(run, args, resident_megabytes(int(emulator.health()["pid"])))


if __name__ == "__main__":
    main()
