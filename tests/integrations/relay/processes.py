"""Real processes for the relay's fault tests: Celery workers and beat started as the Procfile
starts them, and a redis-server of the test's own that it may flush, stop and start again;
and for every end-to-end test, a connection to the Segment emulator and what arrived there.

Each process runs in a session (process group) of its own, so `kill -9` reaches a prefork
worker's pool children too, and closing `Processes` leaves nothing running. Processes talk to
the test's database and to the broker the test process uses at the moment they start, and
only ever over 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis
from django.conf import settings
from django.db import connection

from accounts.audit import Actor
from accounts.models import User, Workspace
from config.celery_app import app
from integrations import services
from integrations.models import Connection
from tests.conftest import mark_checked, new_write_key

REPO_ROOT = Path(__file__).resolve().parents[3]
SETTINGS_MODULE = "config.settings.test"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def wait_for(condition: Callable[[], bool], timeout: float, what: str, *, logs: Callable[[], str] = lambda: "") -> float:
    """Poll until `condition` holds; return the seconds it took, or fail saying what was awaited."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s\n{logs()}")
        time.sleep(0.1)
    return time.monotonic() - started


def emulator_connection(segment: Any, user: User, workspace: Workspace, *, name: str = "Production",
                        checked: bool = False) -> tuple[Connection, str]:
    """A US connection named `name` under a new write key the emulator knows, and that key.

    Delivery waits for the connection's check, which a worker runs against the emulator;
    `checked` skips it, leaving the connection as a passing check would (`mark_checked`).
    """
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=user), workspace=workspace, name=name, region="us",
                                            write_key=key)
    return (mark_checked(connection) if checked else connection), key


def arrived(segment: Any, key: str) -> list[dict[str, Any]]:
    """What the emulator received under `key`, oldest first, without the check's test event."""
    return [e["payload"] for e in segment.events(write_key=key, limit=10_000)
            if e["payload"].get("event") != "Segment Connection Tested"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def database_url() -> str:
    """The database this test runs on (pytest-django's test database), as DATABASE_URL."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        user = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
        return f"postgres://{user}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"
    raise NotImplementedError(f"no DATABASE_URL for {db['ENGINE']}")


@contextmanager
def publishing_to(url: str) -> Iterator[None]:
    """Make this process publish to the Redis at `url`, then back to the configured broker.

    Celery reads CELERY_BROKER_URL from the environment before its own settings, and keeps
    pools for the URL it first used; both are switched. The pools are dropped, not closed:
    kombu shares them between apps, keyed by URL.
    """
    saved = os.environ.get("CELERY_BROKER_URL"), app.conf.get("broker_url"), app.conf.broker_transport_options

    def switch(environment: str | None, setting: Any, options: dict[str, Any]) -> None:
        if environment is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = environment
        app.conf.update(broker_url=setting, broker_transport_options=options)
        app._pool = None  # type: ignore[attr-defined]
        app.amqp._producer_pool = None  # type: ignore[attr-defined]

    switch(url, url, {"visibility_timeout": 3600})
    try:
        yield
    finally:
        switch(*saved)


def broker_environment() -> dict[str, str]:
    """The broker the test process publishes to right now, for a process about to start."""
    url = str(app.conf.broker_url)
    variables = {"CELERY_BROKER_URL": url}
    if url.startswith("filesystem:"):
        # config/settings/test.py keeps the broker under <scratch>/broker/queue; share the scratch.
        scratch = Path(app.conf.broker_transport_options["data_folder_in"]).parent.parent
        variables["TRIBUTARY_TEST_SCRATCH"] = str(scratch)
    return variables


# Port 9 (discard): where a process that must not reach Segment is sent; nothing answers there.
NOWHERE = "http://127.0.0.1:9"


def process_environment(folder: Path, *, segment: Any = None, **overrides: str) -> dict[str, str]:
    """The environment of a real Celery process (or `python -m config.work`) on the test's
    database and broker: this process's, with the test settings, its scratch under `folder`
    (the test's tmp_path), Segment at the `segment` emulator or, without one, at NOWHERE, then
    `overrides`."""
    us, eu, cdn = (segment.us_url, segment.eu_url, segment.cdn_url) if segment is not None else (NOWHERE,) * 3
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "PYTHONPATH": str(REPO_ROOT),
        "TMPDIR": str(folder),
        "DATABASE_URL": database_url(),
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "SEGMENT_API_US": f"{us}/v1",
        "SEGMENT_API_EU": f"{eu}/v1",
        "SEGMENT_CDN": f"{cdn}/v1",
        **broker_environment(),
        **overrides,
    }


class ProcessExited(AssertionError):
    """A process the test needs running has exited."""


class Process:
    """One started process, its group and its log file."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        with log.open("ab") as output:
            self.popen = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """`kill -9` the whole process group: no shutdown code runs, nothing is acknowledged."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=STOP_TIMEOUT)

    def stop(self) -> None:
        """SIGTERM to the leader (Celery's warm shutdown), then SIGKILL for whatever is left."""
        if self.alive:
            # Only the leader: a prefork worker stops its own pool, and pool children sent
            # SIGTERM directly die as if lost, which the leader replaces.
            self.popen.send_signal(signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=STOP_TIMEOUT)
        # Pool children outlive a leader that died first; the group still names them.
        self.kill()

    def running(self) -> bool:
        """True, or ProcessExited with the end of the log."""
        if not self.alive:
            raise ProcessExited(f"{self.name} exited with {self.popen.returncode}\n{self.tail()}")
        return True

    def wait_for_output(self, text: str, timeout: float = START_TIMEOUT) -> None:
        wait_for(lambda: self.running() and text in self.output(), timeout, f"{self.name} printing {text!r}",
                 logs=self.tail)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def lines(self, *parts: str) -> int:
        """How many lines of the log contain every one of `parts`."""
        return sum(all(part in line for part in parts) for line in self.output().splitlines())

    def tail(self, lines: int = 60) -> str:
        text = self.output() if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, signum: int) -> None:
        with suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)


class Processes:
    """Workers and beat for one test, all stopped by `close()`.

    `settings` become environment variables of every process started after they are set (e.g.
    RELAY_LEASE_SECONDS). Each process writes its log, and the scratch folder
    config/settings/test.py makes for it, under `folder` (the test's tmp_path).
    """

    def __init__(self, folder: Path, *, segment: Any) -> None:
        self.folder = folder
        self.segment = segment
        self.settings: dict[str, str] = {}
        self.started: list[Process] = []

    def worker(self, name: str, *, pool: str = "prefork", concurrency: int = 2) -> Process:
        process = self._celery(name, ["worker", "--loglevel", "INFO", "--pool", pool, "--concurrency",
                                      str(concurrency), "--hostname", f"{name}@%h"])
        process.wait_for_output(" ready.")
        return process

    def beat(self) -> Process:
        process = self._celery("beat", ["beat", "--loglevel", "INFO"])
        process.wait_for_output("beat: Starting")
        return process

    def logs(self) -> str:
        return "\n".join(process.tail() for process in self.started)

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop()

    def _celery(self, name: str, arguments: list[str]) -> Process:
        command = [sys.executable, "-m", "celery", "--app", "config", *arguments]
        process = Process(name, command, self._environment(), self.folder / f"{name}.log")
        self.started.append(process)
        return process

    def _environment(self) -> dict[str, str]:
        return process_environment(self.folder, segment=self.segment, LOG_LEVEL="INFO", **self.settings)


class RedisServer:
    """A redis-server of the test's own on a free port: no snapshot, no append-only file, so
    a restart comes back empty, as a Redis that lost its memory would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Process | None = None
        self.client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        self.folder.mkdir(exist_ok=True)
        self.process = Process("redis", [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
            "--dir", str(self.folder), "--daemonize", "no"], dict(os.environ), self.folder / "redis.log")
        wait_for(self._answers, START_TIMEOUT, "redis-server answering PING", logs=self.tail)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.client.connection_pool.disconnect()

    def flushall(self) -> None:
        self.client.flushall()

    def queued_tasks(self, queue: str = "celery") -> list[str]:
        """Names of the tasks waiting in a queue (kombu keeps each message as JSON in a list)."""
        messages: list[bytes] = self.client.lrange(queue, 0, -1)  # type: ignore[assignment]
        return [json.loads(message)["headers"]["task"] for message in messages]

    def tail(self) -> str:
        return self.process.tail() if self.process else ""

    def _answers(self) -> bool:
        if self.process is not None:
            self.process.running()
        try:
            return bool(self.client.ping())
        except redis.ConnectionError:
            return False
