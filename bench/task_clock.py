"""The project's Celery app with a clock on every task, for the scaling benches.

    celery --app task_clock worker ...     (bench/ on PYTHONPATH, BENCH_TASK_CLOCK_DIR set)

It is `config.celery_app.app` unchanged, plus two signal handlers: each task a pool process
runs adds one line to `$BENCH_TASK_CLOCK_DIR/<host>-<pid>.tsv`:

    task name, first argument (a connection id for deliver_connection), epoch start,
    wall seconds, CPU seconds of the running thread

so a bench can say how much worker time each connection took (a throttled connection should
take none while it waits) and when a task last ran on a killed node. Without the variable
nothing is written.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any

from celery.signals import task_postrun, task_prerun

from config.celery_app import app

__all__ = ["app", "read_clock"]

_DIRECTORY = os.environ.get("BENCH_TASK_CLOCK_DIR", "")
_started: dict[str, tuple[float, float, float]] = {}


@task_prerun.connect
def _start(task_id: str | None = None, **_: Any) -> None:
    if _DIRECTORY and task_id:
        _started[task_id] = (time.time(), time.perf_counter(), time.thread_time())


@task_postrun.connect
def _stop(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    began = _started.pop(task_id or "", None)
    if not _DIRECTORY or began is None:
        return
    epoch, wall, cpu = began
    first = args[0] if args else ""
    line = (f"{getattr(task, 'name', '?')}\t{first}\t{epoch:.3f}\t{time.perf_counter() - wall:.6f}\t"
            f"{time.thread_time() - cpu:.6f}\n")
    path = os.path.join(_DIRECTORY, f"{socket.gethostname()}-{os.getpid()}.tsv")
    with open(path, "a", encoding="utf-8") as clock:
        clock.write(line)


def read_clock(directory: str, only: str = "") -> list[tuple[str, str, float, float, float]]:
    """Every line written so far (of one file when `only` names it): (task, first argument,
    epoch start, wall s, CPU s)."""
    rows = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".tsv") or (only and name != only):
            continue
        with open(os.path.join(directory, name), encoding="utf-8") as clock:
            for line in clock:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 5:
                    rows.append((parts[0], parts[1], float(parts[2]), float(parts[3]), float(parts[4])))
    return rows
