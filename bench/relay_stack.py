"""The system under test for bench/relay.py: a fresh PostgreSQL database, a flushed Redis
database, the web server as production runs it (granian, `python -m config.serve`), a Celery
worker and beat, all on 127.0.0.1, all stopped on exit.

Each service is started in its own session (process group), so stopping it also stops the
children it forked (granian's worker processes, Celery's pool processes) and nothing else on
the machine.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
import requests

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
STOP_SECONDS = 15.0


@dataclass(frozen=True)
class StackOptions:
    database_url: str
    broker_url: str
    us_url: str  # emulator listeners, hosts without /v1
    eu_url: str
    web_port: int
    web_workers: int  # granian worker processes, one thread each (as config.serve runs them)
    worker_concurrency: int  # pool processes in all
    log_dir: Path
    worker_nodes: int = 0  # Celery nodes sharing them (0: config.work's default, one per core)
    # What to run: the project's own entry points unless an experiment swaps in a patched
    # build (modules found on `pythonpath`), so a proposed change is measured before it lands.
    settings: str = "config.settings.production"
    wsgi: str = "config.wsgi"
    celery_app: str = "config"
    pythonpath: str = ""


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}:\n"
                               + _tail(self.log))

    def stop(self) -> None:
        """SIGTERM to the service's process group, SIGKILL if it is still there after a while."""
        if self.process.poll() is not None:
            return
        _signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    web: Service
    worker: Service
    beat: Service
    web_url: str

    def check_alive(self) -> None:
        for service in (self.web, self.worker, self.beat):
            service.check_alive()


def environment(options: StackOptions) -> dict[str, str]:
    """Production settings, pointed at the bench database, broker and emulator.

    The secrets are random per run: nothing of the bench outlives it. The cache is Redis,
    as in production, so the ingest rate limit costs what it costs there (two round trips).
    """
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": options.settings,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "FIELD_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "DATABASE_URL": options.database_url,
        "CELERY_BROKER_URL": options.broker_url,
        "CACHE_URL": options.broker_url,
        # The benchmark measures capacity, not the per-key limit: keep it out of the way.
        "INGEST_REQUESTS_PER_SECOND": "1000000",
        "SEGMENT_API_US": f"{options.us_url}/v1",
        "SEGMENT_API_EU": f"{options.eu_url}/v1",
        "SEGMENT_CDN": f"{options.us_url}/v1",
        "TRIBUTARY_DATA_DIR": str(options.log_dir / "data"),
        "LOG_LEVEL": "INFO",
        # relay_wsgi (in bench/) serves Tributary's application, named here, and the trivial view.
        "BENCH_WSGI_MODULE": options.wsgi,
        "PYTHONPATH": os.pathsep.join(p for p in (_patched_build(options), str(REPO_ROOT),
                                                  str(REPO_ROOT / "bench"), os.environ.get("PYTHONPATH", ""))
                                      if p),
    })
    return env


def code_revision() -> str:
    """Which code was measured: the relay is edited while benchmarks run."""
    def git(*command: str) -> str:
        done = subprocess.run(["git", *command], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=False)
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{git('rev-parse', '--short', 'HEAD') or 'unknown'}{' + uncommitted changes' if dirty else ''}"


def recreate_database(database_url: str) -> None:
    """Drop and create the bench database; refuses any name without "bench" in it."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if "bench" not in name or not name.replace("_", "").isalnum():
        raise SystemExit(f"refusing to drop database {name!r}: its name must contain 'bench'")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def flush_redis(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    try:
        client.flushdb()
    finally:
        client.close()


def migrate(env: dict[str, str], log_dir: Path) -> None:
    log = log_dir / "migrate.log"
    with log.open("wb") as output:
        done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO_ROOT, env=env,
                              stdout=output, stderr=subprocess.STDOUT, timeout=300, check=False)
    if done.returncode:
        raise SystemExit(f"migrate failed; see {log}:\n{_tail(log)}")


@contextmanager
def running_stack(options: StackOptions, env: dict[str, str]) -> Iterator[Stack]:
    """Start the web server, a Celery worker and beat; stop all three when the block ends."""
    with ExitStack() as stack:
        web = start_web(options, env)
        stack.callback(web.stop)
        worker = _start("worker", _worker_command(options), env, options.log_dir, cwd=_code_directory(options))
        stack.callback(worker.stop)
        # The sweeper is the relay's safety net against lost wake-ups; production runs it.
        beat = _start("beat", [str(BIN / "celery"), "--app", options.celery_app, "beat", "--loglevel", "WARNING",
                               "--schedule", str(options.log_dir / "data" / "celerybeat-schedule")],
                      env, options.log_dir)
        stack.callback(beat.stop)
        web_url = f"http://127.0.0.1:{options.web_port}"
        _wait_for_web(web, web_url)
        yield Stack(web=web, worker=worker, beat=beat, web_url=web_url)


def start_web(options: StackOptions, env: dict[str, str], *, name: str = "web",
              port: int | None = None) -> Service:
    """The web server as production starts it, on `port` (default: options.web_port)."""
    return _start(name, _web_command(options, port), env, options.log_dir, cwd=_code_directory(options))


def _web_command(options: StackOptions, port: int | None = None) -> list[str]:
    # Production's server and settings (granian's WSGI interface, one thread per worker
    # process, the secret-free access log on stdout) with the bench's own address, worker count
    # and application: relay_wsgi (bench/, on PYTHONPATH) serves Tributary's application, which
    # BENCH_WSGI_MODULE names, and the trivial view.
    return [str(BIN / "python"), "-m", "config.serve", "--bind", f"127.0.0.1:{port or options.web_port}",
            "--workers", str(options.web_workers), "--application", "relay_wsgi:application"]


def _worker_command(options: StackOptions) -> list[str]:
    # Production's worker (config.work: one Celery node per core, the pool processes shared out
    # between them), with the bench's application and process count.
    command = [str(BIN / "python"), "-m", "config.work", "--app", options.celery_app, "--name", "bench",
               "--concurrency", str(options.worker_concurrency), "--pool", "prefork", "--loglevel", "INFO"]
    return command + (["--nodes", str(options.worker_nodes)] if options.worker_nodes else [])


def _patched_build(options: StackOptions) -> str:
    """--pythonpath as an absolute path: the services do not run in the bench's directory."""
    return str(Path(options.pythonpath).resolve()) if options.pythonpath else ""


def _code_directory(options: StackOptions) -> Path:
    """Where the web server runs: the first directory on its PYTHONPATH. `python -m` and granian
    (loading the application) both put their working directory first on sys.path, ahead of
    PYTHONPATH, so anywhere else a patched build's modules would be shadowed by this tree's."""
    return Path(_patched_build(options) or REPO_ROOT)


def _start(name: str, command: list[str], env: dict[str, str], log_dir: Path,
           cwd: Path = REPO_ROOT) -> Service:
    log = log_dir / f"{name}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return Service(name, process, log)


def _wait_for_web(web: Service, url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        web.check_alive()
        try:
            # Any answer will do (a GET is a 405): the workers have loaded Django.
            requests.get(f"{url}/v1/batch", timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"the web server did not answer within {timeout:.0f} s; see {web.log}")


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signum)  # the service's own group: it was started in a new session


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
