"""Sampling profiles of the web and worker processes while a phase runs (`--profile DIR`).

py-spy records each process for a fixed time as collapsed stacks ("frame;frame;… count");
the summary adds them up per group and prints the functions holding the most samples
(self: the innermost frame; total: anywhere on the stack). Web processes (granian's workers)
are sampled for CPU only (between requests their threads wait in granian's Rust code, outside
Python); worker processes with --idle as well, because a connection's delivery is a serial
chain where waiting on the database or the HTTP answer is exactly the time that matters.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

PY_SPY = Path(sys.executable).parent / "py-spy"
RATE = 97  # Hz; prime, so sampling does not beat with periodic work
TOP = 14
# Idle pool processes wait for a task, which --idle records as well; only samples taken
# while a task runs say anything about delivery.
BUSY_MARKERS = {"worker": "trace_task"}


@dataclass
class Recording:
    group: str
    pid: int
    output: Path
    process: subprocess.Popen[bytes]


def available() -> str | None:
    found = str(PY_SPY) if PY_SPY.exists() else shutil.which("py-spy")
    return found


def start(directory: Path, label: str, groups: dict[str, list[int]], seconds: float,
          idle_groups: frozenset[str] = frozenset({"worker"})) -> list[Recording]:
    binary = available()
    if binary is None:
        print("  (py-spy not found: pip install py-spy into the virtualenv to profile)")
        return []
    directory.mkdir(parents=True, exist_ok=True)
    recordings = []
    for group, pids in groups.items():
        for pid in pids:
            output = directory / f"{label}-{group}-{pid}.txt"
            command = [binary, "record", "--pid", str(pid), "--duration", str(max(1, int(seconds))),
                       "--rate", str(RATE), "--format", "raw", "--output", str(output)]
            if group in idle_groups:
                command.append("--idle")
            process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            recordings.append(Recording(group, pid, output, process))
    return recordings


def dump(pid: int) -> str:
    """The project frames of what a process is running now (py-spy dump), innermost last."""
    binary = available()
    if binary is None:
        return "(no py-spy)"
    done = subprocess.run([binary, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=20,
                          check=False)
    frames = [line.strip().split(" (")[0] for line in done.stdout.splitlines()
              if line.startswith("    ") and any(k in line for k in ("integrations/", "psycopg/", "requests/"))]
    return " → ".join(reversed(frames[:6]))


def finish(recordings: list[Recording], timeout: float = 60.0) -> None:
    for recording in recordings:
        try:
            recording.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            recording.process.terminate()  # our own py-spy, by its handle
            recording.process.wait()


def _frame_name(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module.py)`: lines would split a
    function's samples over many rows."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rsplit("/", 2)[-2:]
    return f"{name} ({'/'.join(module)})" if where else name


# Innermost frames that mean "waiting", not working. py-spy's idle detection does not see
# through these (the GIL is released in C), so they are sorted out here by name.
WAITS = {
    "Connection.wait (psycopg/connection.py)": "waiting for PostgreSQL",
    "wait_conn (psycopg/waiting.py)": "connecting to PostgreSQL",
    "SocketIO.readinto (socket.py)": "waiting for an HTTP answer",
    "_worker (futures/thread.py)": "idle thread",
    "Connection._recv (billiard/connection.py)": "idle pool process",
}
# Frames anywhere on the stack that mean "waiting": a granian worker process's main thread
# only waits there for the signal to stop, while granian's own thread serves the requests.
WAITING_IN = {
    "MPServer._spawn_wsgi_worker.<locals>._main (server/mp.py)": "idle server thread (granian)",
}
# A sample without a single Python frame: granian's serving thread at work in Rust (reading
# the request, writing the answer), outside the application.
NO_PYTHON_FRAME = "(no Python frame: granian's Rust side)"


@dataclass
class Tally:
    total: int = 0
    own: Counter[str] = field(default_factory=Counter)  # innermost frame, working samples only
    anywhere: Counter[str] = field(default_factory=Counter)  # any frame, all samples
    waits: Counter[str] = field(default_factory=Counter)


def summarise(recordings: list[Recording]) -> None:
    groups: dict[str, Tally] = {}
    for recording in recordings:
        tally = groups.setdefault(recording.group, Tally())
        try:
            lines = recording.output.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, count_text = line.rpartition(" ")
            frames = [_frame_name(f) for f in stack.split(";")] if stack else [NO_PYTHON_FRAME]
            busy = BUSY_MARKERS.get(recording.group)
            if not count_text.isdigit() or not frames or (busy and not any(busy in f for f in frames)):
                continue
            count = int(count_text)
            tally.total += count
            wait = WAITS.get(frames[-1]) or next((w for f, w in WAITING_IN.items() if f in frames), None)
            if wait:
                tally.waits[wait] += count
                if not busy:
                    continue  # web: a CPU view, where only working samples count
            else:
                tally.own[frames[-1]] += count
            for name in set(frames):
                tally.anywhere[name] += count
    for group, tally in groups.items():
        if tally.total:
            _print(group, tally)


def _print(group: str, tally: Tally) -> None:
    """Web: shares of working samples (where the CPU goes). Worker: shares of all samples of
    a running task (where a delivery's wall time goes, waits included)."""
    waits = ", ".join(f"{what} {count / tally.total:.0%}" for what, count in tally.waits.most_common())
    working = tally.total - sum(tally.waits.values())
    if group in BUSY_MARKERS:
        base, scope = tally.total, "shares of all samples while a task ran"
    else:
        base, scope = max(1, working), "shares of working samples"
    print(f"\n  {group}: {tally.total:,} samples ({waits or 'no waits'}); {scope}")
    print("    by innermost frame, waits left out:")
    for name, count in tally.own.most_common(TOP):
        print(f"      {count / base:6.1%}  {name}")
    print("    by function anywhere on the stack:")
    for name, count in _interesting(tally.anywhere).most_common(TOP):
        print(f"      {count / base:6.1%}  {name}")


def _interesting(anywhere: Counter[str]) -> Counter[str]:
    """Inclusive counts of the project's own functions and of the libraries it calls into
    directly; framework plumbing (threads, granian's server and WSGI glue in granian/server/*.py
    and granian/wsgi.py, Celery's tracer) is left out."""
    keep = ("integrations/", "relay/", "segment/", "emulator/", "accounts/", "orjson", "psycopg/", "requests/",
            "db/models", "backends/", "core/handlers", "middleware", "cache/", "kombu/", "uuid.py")
    return Counter({name: count for name, count in anywhere.items() if any(k in name for k in keep)})
