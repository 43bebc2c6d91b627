"""The production Celery worker: `python -m config.work` (the Procfile's worker) starts several
Celery worker nodes on this machine, one per core by default, shares the pool processes out
between them, and stops them together. Each node is a plain `celery worker`.

Why more than one node: Linux shares the CPU between sessions before it shares it between the
processes of a session (autogroup, on by default where no cgroup weights say otherwise), and a
process manager starts each service in a session of its own. One worker node, its pool
included, then got the same share as the web server's whole group or a single busy process
elsewhere, and while one tenant's burst of ingest held the cores, the other tenants' deliveries
waited: bench/fairness.py, with another process using 60% of a core, measured their p99 at
168 to 479 ms with one node of 8 processes and 70 to 74 ms with two nodes of 4, each in a session of
its own (1.2 to 1.4 s with two nodes sharing one session). Each node here starts a session of its
own, so delivery gets a share per core. Under systemd or in containers the service's cgroup
decides instead: give the worker a larger CPU weight there (README: Running in production).

Environment (command-line options win):
  WORKER_NODES               nodes (default: one per core available to this process; one on
                             the embedded filesystem broker, which is for a single consumer)
  CELERY_WORKER_CONCURRENCY  pool processes in all, shared out between the nodes (default four
                             per core: a delivery run mostly waits, on Segment and on commits)

Other options are passed to every node's `celery worker` (`--loglevel INFO`, `--queues …`).
Nodes are named `<name>1@<host>`, `<name>2@<host>`, … (`--name`, default "worker"), so several
machines can run this on one broker. SIGTERM or SIGINT to this process is passed on once to
every node (Celery's warm shutdown: tasks in flight finish); a node that exits by itself stops
the others and this process exits with its status, for the process manager to restart all. A
node is sent SIGTERM by the kernel if this process dies without passing a signal on.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
from types import FrameType

_PR_SET_PDEATHSIG = 1
_FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


def cores() -> int:
    return len(os.sched_getaffinity(0))


def default_nodes(broker_url: str) -> int:
    raw = os.environ.get("WORKER_NODES", "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise SystemExit(f"WORKER_NODES must be a whole number of worker nodes, such as 2; got {raw!r}.")
        return int(raw)
    return 1 if broker_url.startswith("filesystem://") else cores()


def shares(total: int, nodes: int) -> list[int]:
    """Pool processes per node: `total` shared out as evenly as it goes, one at least each (so
    fewer nodes than asked when there are fewer processes than nodes)."""
    if total < 1 or nodes < 1:
        raise SystemExit("The worker needs at least one node and one pool process: check WORKER_NODES and "
                         "CELERY_WORKER_CONCURRENCY (or --nodes and --concurrency).")
    nodes = min(nodes, total)
    base, extra = divmod(total, nodes)
    return [base + (1 if index < extra else 0) for index in range(nodes)]


def node_commands(*, app: str, name: str, nodes: int, concurrency: int, celery_args: list[str]) -> list[list[str]]:
    return [[sys.executable, "-m", "celery", "--app", app, "worker", "--hostname", f"{name}{number}@%h",
             "--concurrency", str(processes), *celery_args]
            for number, processes in enumerate(shares(concurrency, nodes), start=1)]


def _die_with_parent(parent: int) -> None:
    """In the node, before exec: a session of its own, and SIGTERM when this launcher dies,
    whatever kills it."""
    os.setsid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os._exit(1)


class Nodes:
    """The running nodes: started together, stopped together."""

    def __init__(self, commands: list[list[str]]) -> None:
        parent = os.getpid()
        self.stopping = False
        # S603: our own interpreter running celery, with the options this process was given.
        self.processes = [subprocess.Popen(command, preexec_fn=lambda: _die_with_parent(parent))  # noqa: S603
                          for command in commands]

    def signal_all(self, signum: int) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signum)

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # Passed on once: a second SIGINT would be Celery's cold shutdown, which abandons tasks.
        if not self.stopping:
            self.stopping = True
            self.signal_all(signum)

    def wait(self) -> int:
        """Until every node has exited; the status of the first that exited by itself (0 when
        they were all stopped through here)."""
        status = 0
        running = {process.pid: process for process in self.processes}
        while running:
            try:
                pid, raw = os.wait()
            except ChildProcessError:
                break
            process = running.pop(pid, None)
            if process is None:
                continue
            process.returncode = os.waitstatus_to_exitcode(raw)
            if not self.stopping:
                status = process.returncode if process.returncode > 0 else 1
                print(f"config.work: node {self.processes.index(process) + 1} exited "
                      f"({process.returncode}); stopping the others", file=sys.stderr, flush=True)
                self.stopping = True
                self.signal_all(signal.SIGTERM)
        return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m config.work", description=__doc__.split("\n\n")[0],
                                     epilog="Any other option is passed to each node's `celery worker`.")
    parser.add_argument("--nodes", type=int, default=None, help="Celery worker nodes (default: WORKER_NODES, "
                        "else one per core)")
    parser.add_argument("--concurrency", type=int, default=None, help="pool processes in all (default: "
                        "CELERY_WORKER_CONCURRENCY, else four per core)")
    parser.add_argument("--app", default="config", help="the Celery application (default: config)")
    parser.add_argument("--name", default="worker", help="node names: <name>1@<host>, <name>2@<host>, …")
    args, celery_args = parser.parse_known_args(argv)
    # The broker and the pool size as the nodes will read them (CELERY_BROKER_URL and
    # CELERY_WORKER_CONCURRENCY, four per core unless set); settings that cannot load stop here.
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    try:
        broker_url, concurrency = str(settings.CELERY_BROKER_URL), int(settings.CELERY_WORKER_CONCURRENCY)
    except ImproperlyConfigured as error:
        raise SystemExit(f"config.work: {error}") from None
    nodes = args.nodes if args.nodes is not None else default_nodes(broker_url)
    total = args.concurrency if args.concurrency is not None else concurrency
    commands = node_commands(app=args.app, name=args.name, nodes=nodes, concurrency=total, celery_args=celery_args)
    running = Nodes(commands)
    for signum in _FORWARDED:
        signal.signal(signum, running.on_signal)
    return running.wait()


if __name__ == "__main__":
    sys.exit(main())
