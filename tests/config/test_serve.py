"""The production web server (config/serve.py): real granian on a free port, a Segment-style
request whose ingest key is the Basic-auth user name, an access log that records the request
without it, and an oversized body refused without being read."""
from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
import requests
from django.conf import settings
from granian.log import log_request_builder

from accounts.audit import Actor
from accounts.models import User, Workspace
from config.celery_app import app
from config.serve import ACCESS_FORMAT, SecretFreeAccess, server_options
from integrations.ingest.keys import ingest_key_create
from integrations.models import Connection
from integrations.services import connection_create
from integrations.webhooks.services import endpoint_create
from tests.conftest import new_write_key
from tests.integrations.relay.processes import (
    REPO_ROOT,
    broker_environment,
    database_url,
    free_port,
    wait_for,
)

pytestmark = pytest.mark.django_db(transaction=True)

START_TIMEOUT = 60.0


class WebServer:
    def __init__(self, process: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.process, self.log, self.port = process, log, port
        self.url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def answers(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the web server exited with {self.process.returncode}\n{self.output()}")
        try:
            # The listener accepts before the worker has loaded Django: wait for its answer.
            requests.get(f"{self.url}/account/login/", timeout=(2, START_TIMEOUT))
        except requests.ConnectionError:
            return False
        return True


@contextmanager
def web_server(tmp_path: Path, *, access_log: bool = True) -> Iterator[WebServer]:
    """`python -m config.serve`, as the Procfile runs it, with one worker and the test's database
    (and its access log, off by default in production, on unless `access_log` is False)."""
    port = free_port()
    log = tmp_path / f"web-{port}.log"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": str(REPO_ROOT),
        "DATABASE_URL": database_url(),
        "FIELD_ENCRYPTION_KEYS": ",".join(settings.FIELD_ENCRYPTION_KEYS),
        "WEB_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "1",
        "WEB_ACCESS_LOG": "true" if access_log else "false",
        **broker_environment(),
    }
    with log.open("wb") as output:
        process = subprocess.Popen([sys.executable, "-m", "config.serve"], cwd=REPO_ROOT, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    server = WebServer(process, log, port)
    try:
        wait_for(server.answers, START_TIMEOUT, "the web server answering", logs=server.output)
        yield server
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def send_like_a_segment_library(server: WebServer, ingest_key: str) -> requests.Response:
    """What analytics-python sends: the key as the Basic-auth user name, an empty password.
    A query string with a secret in it too, as a careless caller might add."""
    return requests.post(f"{server.url}/v1/track?writeKey=query{ingest_key}", auth=(ingest_key, ""),
                         json={"userId": "u1", "event": "Signed Up"}, timeout=10)


def access_line(server: WebServer, marker: str) -> str:
    wait_for(lambda: marker in server.output(), 10, f"an access-log line with {marker!r}", logs=server.output)
    return next(line for line in server.output().splitlines() if marker in line)


def test_the_access_log_records_a_request_without_its_ingest_key(tmp_path: Path) -> None:
    ingest_key = f"secretkey123{secrets.token_hex(12)}"
    with web_server(tmp_path) as server:
        answer = send_like_a_segment_library(server, ingest_key)
        assert answer.status_code == 401  # no such key: the request was still served, and logged
        reset = requests.get(f"{server.url}/account/password/reset/MQ/c9x1ab-{ingest_key}/", timeout=10)
        line = access_line(server, 'path="/v1/track"')
        reset_line = access_line(server, "path=\"/account/password/reset/MQ/")

    assert "granian.access remote=127.0.0.1 method=POST" in line
    assert "status=401 duration_ms=" in line
    assert f"status={reset.status_code}" in reset_line and "[redacted]" in reset_line
    # Nowhere in what the process printed: access log, server log, Django's own request logs.
    assert ingest_key not in server.output()


def test_a_body_over_the_limit_is_refused_before_it_is_sent(tmp_path: Path, alice: User, workspace: Workspace) -> None:
    """A webhook declaring 2 MB is answered 413 on its headers alone: the server hands the
    application the request before its body, and the body is never read (nor sent here)."""
    created = endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat", preset="chat_assistant")
    with (web_server(tmp_path, access_log=False) as server,
          socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock):
        sock.sendall(b"POST /webhooks/in/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (created.endpoint.public_id.encode(), 2 * 1024 * 1024))
        answer = _read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert b"body_too_large" in answer
    assert "granian.access" not in server.output()  # no access log unless WEB_ACCESS_LOG asks for one


def test_a_requests_wake_ups_are_sent_once_answered_without_waiting_for_another_request(
        tmp_path: Path, alice: User, workspace: Workspace) -> None:
    """The ingest API holds the wake-ups of a request until its answer is sent, and sends them
    when the server closes the answer. One request and then silence: its connection's delivery
    task must reach the broker, not wait for the same process's next request (or the sweeper's
    10 s), as it did while granian was handed a list it writes without closing."""
    connection = connection_create(actor=Actor(user=alice), workspace=workspace, name="Production", region="us",
                                   write_key=new_write_key())
    Connection.objects.filter(pk=connection.pk).update(wake_queued_at=None)
    _, ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Server")
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge(app.conf.task_default_queue)  # type: ignore[attr-defined]
    queued: list[int] = []
    with web_server(tmp_path, access_log=False) as server:
        answer = requests.post(f"{server.url}/v1/track", auth=(ingest_key, ""), timeout=10,
                               json={"userId": "u1", "event": "Experiment Viewed"})
        assert answer.status_code == 200, answer.text
        wait_for(lambda: connection.pk in _deliveries_queued(queued), 5, "the delivery task on the broker",
                 logs=server.output)


def _deliveries_queued(seen: list[int]) -> list[int]:
    """Connection ids of the delivery tasks taken off the default queue so far (into `seen`)."""
    with app.connection_for_read() as broker:
        queue = broker.SimpleQueue(app.conf.task_default_queue)
        try:
            while True:
                try:
                    message = queue.get(block=False)
                except queue.Empty:
                    break
                message.ack()
                if message.headers.get("task") == "integrations.tasks.deliver_connection":
                    seen.append(int(message.payload[0][0]))
        finally:
            queue.close()
    return seen


def _read_answer(sock: socket.socket) -> bytes:
    """One HTTP answer, read up to its Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _access_record(fmt: str, *, path: str, query: str, headers: dict[str, str]) -> logging.LogRecord:
    """The record granian's access logger makes for one request in format `fmt`."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("granian.access")
    handler, level, propagate = Keep(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        request = {"addr_remote": "10.0.0.9", "path": path, "qs": query, "method": "POST", "scheme": "http",
                   "protocol": "HTTP/1.1", "headers": lambda name: headers.get(name)}
        log_request_builder(fmt)(1_700_000_000.0, 0.0, request, 200)  # type: ignore[no-untyped-call]
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    (record,) = records
    return record


def test_a_format_asking_for_headers_or_the_query_string_gets_dashes() -> None:
    """An operator's format naming the Authorization header and the query string: granian would
    print the key; through the filter the shipped logging config applies, it prints "-"."""
    ingest_key = f"secretkey123{secrets.token_hex(12)}"
    greedy = '%(path)s %(query_string)s %(header{authorization})s %(status)s'
    record = _access_record(greedy, path=f"/webhooks/in/wh_abc/{ingest_key}", query=f"writeKey={ingest_key}",
                            headers={"authorization": f"Basic {ingest_key}"})
    assert ingest_key in record.getMessage()  # why the filter exists

    assert SecretFreeAccess().filter(record) is True
    assert record.getMessage() == "/webhooks/in/wh_abc/[redacted] - - 200"


def test_the_shipped_format_formats_through_the_filter() -> None:
    record = _access_record(ACCESS_FORMAT, path="/v1/batch", query="", headers={})
    SecretFreeAccess().filter(record)
    message = record.getMessage()
    assert "granian.access remote=10.0.0.9 method=POST path=\"/v1/batch\" status=200 duration_ms=" in message


def test_the_server_settings_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The values the README promises, and a clear error for a malformed WEB_BIND."""
    monkeypatch.delenv("WEB_BIND", raising=False)
    monkeypatch.delenv("WEB_ACCESS_LOG", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    monkeypatch.setenv("PORT", "8123")
    done = subprocess.run(
        [sys.executable, "-c", "from config.serve import *; o = server_options(bind=default_bind(), "
         "workers=default_workers()); print(o['interface'], o['workers'], o['blocking_threads'], o['address'], "
         "o['port'], o['log_access'], o['websockets'], o['respawn_failed_workers'])"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
        timeout=60, check=True)
    assert done.stdout.split() == ["wsgi", "5", "1", "0.0.0.0", "8123", "False", "False", "True"]
    monkeypatch.setenv("WEB_ACCESS_LOG", "true")
    assert server_options(bind="127.0.0.1:8000", workers=1)["log_access"] is True

    with pytest.raises(SystemExit, match="WEB_BIND must be host:port"):
        server_options(bind="8000", workers=1)
    assert server_options(bind="[::]:8000", workers=1)["address"] == "::"
