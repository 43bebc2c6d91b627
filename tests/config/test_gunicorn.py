"""The shipped gunicorn settings: real gunicorn on a free port, a Segment-style request whose
ingest key is the Basic-auth user name, and an access log that records the request without it."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from django.conf import settings

from tests.integrations.relay.processes import (
    REPO_ROOT,
    broker_environment,
    database_url,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

GUNICORN = str(Path(sys.executable).parent / "gunicorn")
CONFIG = str(REPO_ROOT / "config" / "gunicorn.conf.py")
START_TIMEOUT = 60.0


class Gunicorn:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, url: str) -> None:
        self.process, self.log, self.url = process, log, url

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}\n{self.output()}")
        try:
            # The listener accepts before the worker has loaded Django: wait for its answer.
            requests.get(f"{self.url}/account/login/", timeout=(2, START_TIMEOUT))
        except requests.ConnectionError:
            return False
        return True


@contextmanager
def gunicorn(tmp_path: Path, *options: str) -> Iterator[Gunicorn]:
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": database_url(),
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        **broker_environment(),
    }
    command = [GUNICORN, *options, "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Gunicorn(process, log, f"http://127.0.0.1:{port}")
    try:
        wait_for(server.answers, START_TIMEOUT, "gunicorn answering", logs=server.output)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def send_like_a_segment_library(server: Gunicorn, ingest_key: str) -> requests.Response:
    """What analytics-python sends: the key as the Basic-auth user name, an empty password.
    A query string with a secret in it too, as a careless caller might add."""
    return requests.post(f"{server.url}/v1/track?writeKey=query{ingest_key}", auth=(ingest_key, ""),
                         json={"userId": "u1", "event": "Signed Up"}, timeout=10)


def access_line(server: Gunicorn, marker: str) -> str:
    wait_for(lambda: marker in server.output(), 10, f"an access-log line with {marker!r}", logs=server.output)
    return next(line for line in server.output().splitlines() if marker in line)


def test_the_access_log_records_a_request_without_its_ingest_key(tmp_path: Path) -> None:
    ingest_key = f"secretkey123{secrets.token_hex(12)}"
    with gunicorn(tmp_path, "--config", CONFIG) as server:
        answer = send_like_a_segment_library(server, ingest_key)
        assert answer.status_code == 401  # no such key: the request was still served, and logged
        reset = requests.get(f"{server.url}/account/password/reset/MQ/c9x1ab-{ingest_key}/", timeout=10)
        line = access_line(server, 'path="/v1/track"')
        reset_line = access_line(server, "path=\"/account/password/reset/MQ/")

    assert "gunicorn.access remote=127.0.0.1 method=POST" in line
    assert f"status=401 bytes={len(answer.content)} duration_ms=" in line
    assert f"status={reset.status_code}" in reset_line and "[redacted]" in reset_line
    # Nowhere in what the process printed: access log, error log, Django's own request logs.
    assert ingest_key not in server.output()


def test_gunicorns_default_access_log_would_have_printed_the_key(tmp_path: Path) -> None:
    """Why the settings exist: the same request under gunicorn's defaults leaks the key."""
    ingest_key = f"secretkey123{secrets.token_hex(12)}"
    with gunicorn(tmp_path, "--access-logfile", "-") as server:
        send_like_a_segment_library(server, ingest_key)
        line = access_line(server, "\"POST /v1/track")
    assert ingest_key in line


def test_the_settings_file_sets_production_defaults() -> None:
    """The values the README promises, read back through gunicorn's own loader."""
    code = (f"import sys; sys.argv = ['gunicorn', '--config', {CONFIG!r}, 'config.wsgi']; "
            "from gunicorn.app.wsgiapp import WSGIApplication; c = WSGIApplication().cfg; "
            "print(c.worker_class_str, c.threads, c.keepalive, c.workers, c.accesslog, c.bind, c.logger_class.__name__)")
    env = {"PATH": os.environ["PATH"], "WEB_CONCURRENCY": "5", "PORT": "8123"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["gthread", "1", "75", "5", "-", "['0.0.0.0:8123']", "SecretFreeLogger"]
