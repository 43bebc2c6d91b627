"""`python -m config.work`, the Procfile's worker: Celery worker nodes sharing the pool processes,
each a session of its own, stopped together. Real `celery worker` nodes on the test's broker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from config import work
from tests.integrations.relay.processes import REPO_ROOT, process_environment, wait_for

START_TIMEOUT = 90.0  # two cold workers on a busy two-core machine
STOP_TIMEOUT = 30.0


def test_the_pool_processes_are_shared_out_between_the_nodes() -> None:
    assert work.shares(8, 2) == [4, 4]
    assert work.shares(5, 2) == [3, 2]
    assert work.shares(2, 4) == [1, 1]  # never a node without a process
    with pytest.raises(SystemExit, match="at least one node and one pool process"):
        work.shares(0, 2)


def test_each_node_is_a_named_celery_worker_with_the_options_passed_on() -> None:
    commands = work.node_commands(app="config", name="worker", nodes=2, concurrency=5,
                                  celery_args=["--loglevel", "INFO", "--queues", "q"])
    assert [command[command.index("--hostname") + 1] for command in commands] == ["worker1@%h", "worker2@%h"]
    assert [command[command.index("--concurrency") + 1] for command in commands] == ["3", "2"]
    for command in commands:
        assert command[:6] == [sys.executable, "-m", "celery", "--app", "config", "worker"]
        assert command[-4:] == ["--loglevel", "INFO", "--queues", "q"]


def test_one_node_per_core_except_on_the_embedded_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORKER_NODES", raising=False)
    monkeypatch.setattr(work, "cores", lambda: 3)
    assert work.default_nodes("redis://127.0.0.1:6379/0") == 3
    assert work.default_nodes("amqp://guest:guest@127.0.0.1:5672//") == 3
    assert work.default_nodes("filesystem://") == 1
    monkeypatch.setenv("WORKER_NODES", "2")
    assert work.default_nodes("filesystem://") == 2
    monkeypatch.setenv("WORKER_NODES", "two")
    with pytest.raises(SystemExit, match="WORKER_NODES must be a whole number of worker nodes, such as 2; got 'two'"):
        work.default_nodes("redis://127.0.0.1:6379/0")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
                if int(fields[1]) == pid:
                    found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[0] != "Z"


class Launcher:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, name: str) -> None:
        self.process, self.log, self.name = process, log, name
        self.seen: set[int] = set()  # every node found, to clean up after a launcher that died

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def nodes(self) -> list[int]:
        found = children(self.process.pid)
        self.seen.update(found)
        return found


@contextmanager
def launcher(tmp_path: Path, *arguments: str) -> Iterator[Launcher]:
    """`python -m config.work` with the test settings, its nodes on a queue of their own (no other
    test's tasks), in a session of its own as a process manager starts it."""
    queue = f"work-{uuid.uuid4().hex[:8]}"
    env = process_environment(tmp_path)  # no emulator: nothing reaches the network
    env.pop("WORKER_NODES", None)
    log = tmp_path / "work.log"
    command = [sys.executable, "-m", "config.work", *arguments, "--name", queue, "--loglevel", "INFO",
               "--pool", "prefork", "--queues", queue, "--without-mingle", "--without-gossip"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    started = Launcher(process, log, queue)
    try:
        wait_for(lambda: process.poll() is None and len(started.nodes()) >= 1, START_TIMEOUT,
                 "the launcher starting its nodes", logs=started.output)
        yield started
    finally:
        started.nodes()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        for pid in [process.pid, *started.seen]:
            with suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        process.wait(timeout=10)


def ready(started: Launcher, count: int) -> bool:
    return started.process.poll() is None and started.output().count(" ready.") >= count


def test_two_nodes_start_in_sessions_of_their_own_and_stop_together_on_sigterm(tmp_path: Path) -> None:
    with launcher(tmp_path, "--nodes", "2", "--concurrency", "2") as started:
        wait_for(lambda: ready(started, 2), START_TIMEOUT, "both nodes ready", logs=started.output)
        output = started.output()
        assert f"{started.name}1@" in output and f"{started.name}2@" in output
        nodes = started.nodes()
        assert len(nodes) == 2
        # A session each: the kernel shares the CPU between sessions (config/work.py).
        assert {os.getsid(pid) for pid in nodes} == set(nodes)
        assert all(os.getsid(pid) != os.getsid(started.process.pid) for pid in nodes)

        started.process.send_signal(signal.SIGTERM)
        assert started.process.wait(timeout=STOP_TIMEOUT) == 0
        wait_for(lambda: not any(alive(pid) for pid in nodes), 10, "the nodes gone", logs=started.output)
        # Celery's warm shutdown, once: a second signal would have been its cold shutdown.
        assert "Cold shutdown" not in started.output()


def test_a_node_that_dies_stops_the_others_and_the_launcher_fails(tmp_path: Path) -> None:
    with launcher(tmp_path, "--nodes", "2", "--concurrency", "2") as started:
        wait_for(lambda: ready(started, 2), START_TIMEOUT, "both nodes ready", logs=started.output)
        first, second = sorted(started.nodes())
        os.killpg(first, signal.SIGKILL)  # the node and its pool, as the OOM killer might
        assert started.process.wait(timeout=STOP_TIMEOUT) == 1
        wait_for(lambda: not alive(second), 10, "the other node gone", logs=started.output)
        assert "exited (-9); stopping the others" in started.output()


def test_the_nodes_stop_when_the_launcher_is_killed(tmp_path: Path) -> None:
    with launcher(tmp_path, "--nodes", "2", "--concurrency", "2") as started:
        wait_for(lambda: ready(started, 2), START_TIMEOUT, "both nodes ready", logs=started.output)
        nodes = started.nodes()
        started.process.kill()
        started.process.wait(timeout=10)
        wait_for(lambda: not any(alive(pid) for pid in nodes), STOP_TIMEOUT, "the nodes gone after the launcher",
                 logs=started.output)


def test_settings_that_cannot_load_stop_the_launcher_before_any_node(tmp_path: Path) -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.production", "PYTHONPATH": str(REPO_ROOT)}
    env.pop("DJANGO_SECRET_KEY", None)
    done = subprocess.run([sys.executable, "-m", "config.work"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode != 0
    assert "Set the DJANGO_SECRET_KEY environment variable" in done.stderr
    assert "Traceback" not in done.stderr
    assert "ready." not in done.stdout + done.stderr


def test_no_nodes_or_no_processes_is_refused_with_what_to_fix() -> None:
    for option in ("--nodes", "--concurrency"):
        done = subprocess.run([sys.executable, "-m", "config.work", option, "0"], cwd=REPO_ROOT,
                              env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                              timeout=60, stdin=subprocess.DEVNULL)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "The worker needs at least one node and one pool process" in done.stderr
