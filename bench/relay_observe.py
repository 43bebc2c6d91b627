"""Reading results back: what the emulator acknowledged and when, and who used the CPU.

The emulator's counters are exact (they do not roll over), so "delivered" is always the
growth of a write key's `accepted` counter, which excludes duplicates: a relay re-sending a
batch cannot inflate it. Times come from the emulator's request log (epoch, milliseconds),
taken on the same machine and clock as the senders' `time.time()`.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import psycopg

from segment_emulator.client import EmulatorClient

POLL_SECONDS = 0.1


def accepted(emulator: EmulatorClient, keys: Iterable[str]) -> dict[str, int]:
    return {key: int(emulator.stats(key)["accepted"]) for key in keys}


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class Drain:
    delivered: dict[str, int]  # per write key, since the baseline
    last_delivery: float  # epoch of the newest accepting request of any of the keys
    drained: bool  # every key reached what was expected of it

    @property
    def total(self) -> int:
        return sum(self.delivered.values())


def wait_delivered(emulator: EmulatorClient, baseline: dict[str, int], expected: int, *,
                   timeout: float, stall: float = 30.0) -> Drain:
    """Wait until each key has `expected` more accepted events than at `baseline`; give up
    after `timeout` s, or after `stall` s without progress (a stuck relay)."""
    deadline = time.monotonic() + timeout
    last_total, last_progress = -1, time.monotonic()
    while True:
        now_accepted = accepted(emulator, baseline)
        delivered = {key: now_accepted[key] - baseline[key] for key in baseline}
        drained = all(count >= expected for count in delivered.values())
        total = sum(delivered.values())
        if total != last_total:
            last_total, last_progress = total, time.monotonic()
        if drained or time.monotonic() > deadline or time.monotonic() - last_progress > stall:
            return Drain(delivered, last_delivery(emulator, baseline), drained)
        time.sleep(POLL_SECONDS)


def last_delivery(emulator: EmulatorClient, keys: Iterable[str]) -> float:
    newest = 0.0
    for key in keys:
        for request in emulator.requests(write_key=key, kind="tracking", limit=50):
            if request["accepted"]:
                newest = max(newest, epoch(request["time"]))
    return newest


def receive_times(emulator: EmulatorClient, write_key: str, limit: int,
                  emitter_id: Callable[[dict[str, Any]], str | None]) -> dict[str, float]:
    """When the emulator received each of the newest `limit` events of a key, by the
    emitter's messageId (`emitter_id` finds it in a delivered payload)."""
    received: dict[str, float] = {}
    for event in emulator.events(write_key=write_key, limit=limit):
        found = emitter_id(event["payload"])
        if found is not None and found not in received:  # first delivery counts
            received[found] = epoch(event["receivedAt"])
    return received


def relayed_id(payload: dict[str, Any]) -> str | None:
    """Tributary keeps the emitter's messageId in context.tributary.messageId."""
    tributary = (payload.get("context") or {}).get("tributary") or {}
    value = tributary.get("messageId")
    return value if isinstance(value, str) else None


def direct_id(payload: dict[str, Any]) -> str | None:
    value = payload.get("messageId")
    return value if isinstance(value, str) else None


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


# CPU -------------------------------------------------------------------------------------

def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_seconds(pid: int) -> float:
    fields = _stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (granian's worker processes, Celery's pool processes)."""
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def pids_named(*names: str) -> list[int]:
    """Processes whose command name is one of `names` (PostgreSQL backends, Redis)."""
    found = []
    for pid in _all_pids():
        try:
            command = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if command in names:
            found.append(pid)
    return found


def machine_busy_seconds() -> float:
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per group of processes between two snapshots; "other" is whatever else ran
    on the machine (other people's jobs skew a shared 2-core box, and this shows it).

    Counted per process: one that started in between counts from zero, one that ended in
    between is lost to "other" (PostgreSQL backends come and go with CONN_MAX_AGE).
    """

    def __init__(self, groups: dict[str, Callable[[], list[int]]]):
        self.groups = groups

    def snapshot(self) -> dict[str, Any]:
        taken: dict[str, Any] = {name: {pid: _cpu_seconds(pid) for pid in pids()} for name, pids in self.groups.items()}
        taken["machine"] = machine_busy_seconds()
        taken["wall"] = time.monotonic()
        return taken

    @staticmethod
    def shares(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        """Cores used per group over the interval (1.0 = one core fully busy)."""
        wall = max(1e-9, after["wall"] - before["wall"])
        used = {}
        for name, pids in after.items():
            if isinstance(pids, dict):
                old = before.get(name, {})
                used[name] = sum(max(0.0, cpu - old.get(pid, 0.0)) for pid, cpu in pids.items()) / wall
        used["other"] = max(0.0, (after["machine"] - before["machine"]) / wall - sum(used.values()))
        return used


class Sampler:
    """Runs `_run` on a daemon thread for the length of a `with` block; `_run` polls until
    `_stop` is set."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        raise NotImplementedError


class PgActivity(Sampler):
    """Samples what the bench database's busy backends are doing, every 50 ms, in a thread.

    A backend "idle in transaction" is waiting for its client (Python) while holding its
    transaction open, and any row lock with it; "Lock:…" is waiting for another's lock;
    "running" has no wait event (on CPU, or about to be).
    """

    QUERY = """
        SELECT CASE WHEN state = 'idle in transaction' THEN 'client, in transaction'
                    WHEN wait_event IS NULL THEN 'running'
                    ELSE wait_event_type || ':' || wait_event END,
               left(regexp_replace(query, '\\s+', ' ', 'g'), 72)
        FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND state IN ('active', 'idle in transaction')
    """

    def __init__(self, database_url: str, interval: float = 0.05):
        self.database_url, self.interval = database_url, interval
        self.samples = 0
        self.seen: Counter[tuple[str, str]] = Counter()
        super().__init__()

    def _run(self) -> None:
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self._stop.wait(self.interval):
                rows = connection.execute(self.QUERY).fetchall()
                self.samples += 1
                self.seen.update((state, query) for state, query in rows)

    def describe(self, top: int = 5) -> str:
        if not self.samples:
            return "no samples"
        busiest = self.seen.most_common(top)
        return "; ".join(f"{count / self.samples:.1f} {state} «{query}»" for (state, query), count in busiest)


def bench_database_pids(database_url: str) -> list[int]:
    """Backends of the bench database plus PostgreSQL's own background processes (WAL
    writer, checkpointer): not other people's test databases on the same server."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                                  "OR backend_type <> 'client backend'").fetchall()
    return [int(pid) for (pid,) in rows]


def describe_shares(shares: dict[str, float]) -> str:
    return "  ".join(f"{name} {value * 100:.0f}%" for name, value in shares.items())


@dataclass
class Stall:
    connection_id: int
    seconds: float
    backlog: int  # events behind the log's end when the stall ended
    states: Counter[str]  # what the connection row looked like while stalled


class DeliveryWatch(Sampler):
    """Polls connections every 50 ms and keeps the longest stretch in which one had a backlog
    but its position did not move, with the row's state meanwhile (lease held, wake-up flag
    set, waiting for a retry). A stall that ends only when the sweeper runs (every 5 s) is a
    lost wake-up, and it is what a p99 latency in seconds is made of."""

    QUERY = """
        SELECT c.id, c.delivered_seq, s.last_seq,
               coalesce(c.lease_until > now(), false), (c.wake_queued_at is not null),
               coalesce(c.next_attempt_at > now(), false)
        FROM integrations_connection c JOIN integrations_eventstream s USING (workspace_id)
        WHERE c.id = ANY(%s)
    """

    PROBE_AFTER_SECONDS = 1.5

    def __init__(self, database_url: str, connection_ids: list[int], interval: float = 0.05,
                 probe: Callable[[], str] | None = None):
        self.database_url, self.connection_ids, self.interval = database_url, connection_ids, interval
        self.longest: Stall | None = None
        # Called once, in the middle of the first long stall: what were the workers doing?
        self.probe, self.probed = probe, ""
        super().__init__()

    def _run(self) -> None:
        # connection id -> (position, monotonic time it was first seen stuck there, states seen)
        stuck: dict[int, tuple[int, float, Counter[str]]] = {}
        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while not self._stop.wait(self.interval):
                now = time.monotonic()
                rows = connection.execute(self.QUERY, [self.connection_ids]).fetchall()
                for pk, position, end, leased, wake, waiting in rows:
                    state = (f"lease {'held' if leased else 'free'}, wake flag {'set' if wake else 'clear'}"
                             f"{', retry pending' if waiting else ''}")
                    seen = stuck.get(pk)
                    if seen is not None and seen[0] == position and position < end:
                        seen[2][state] += 1
                        self._keep(Stall(pk, now - seen[1], end - position, seen[2]))
                        if self.probe is not None and not self.probed and now - seen[1] > self.PROBE_AFTER_SECONDS:
                            self.probed = self.probe()
                    else:
                        stuck[pk] = (position, now, Counter([state])) if position < end else (position, now, Counter())

    def _keep(self, stall: Stall) -> None:
        if self.longest is None or stall.seconds > self.longest.seconds:
            self.longest = stall

    def describe(self) -> str:
        stall = self.longest
        if stall is None:
            return "no delivery stall"
        states = ", ".join(f"{state}: {count} polls" for state, count in stall.states.most_common(3))
        probed = f"\n      during it: {self.probed}" if self.probed else ""
        return (f"longest delivery stall {stall.seconds:.2f} s (connection {stall.connection_id}, "
                f"{stall.backlog:,} events behind; polled states: {states}){probed}")
