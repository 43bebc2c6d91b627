"""The lean path: POST /v1/* answered by the WSGI application in front of Django's middleware
(config.wsgi, which the web server (config.serve), the Procfile, `make run`'s runserver and the bench all serve)."""
from __future__ import annotations

import base64
import logging
import time
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg
import pytest
from django import db
from django.core import signals
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.db import close_old_connections
from django.http import HttpResponse
from django.test import RequestFactory

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations.ingest import api
from integrations.ingest.keys import ingest_key_create
from integrations.models import Event
from integrations.relay import wake


@pytest.fixture(autouse=True)
def fresh_counters() -> Iterable[None]:
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def ingest_key(alice: User, workspace: Workspace) -> str:
    return ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]


class Answer:
    def __init__(self, app: Any, environ: dict[str, Any]) -> None:
        self.status, self.headers = "", dict[str, str]()

        def start_response(status: str, headers: list[tuple[str, str]]) -> None:
            self.status, self.headers = status, dict(headers)

        # As Django's test client does: the test's transaction must outlive the request.
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        try:
            response = app(environ, start_response)
            try:
                self.body = b"".join(response)
            finally:
                if hasattr(response, "close"):
                    response.close()  # as a WSGI server does: Django's request_finished
        finally:
            signals.request_started.connect(close_old_connections)
            signals.request_finished.connect(close_old_connections)

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    def json(self) -> Any:
        return orjson.loads(self.body)


def environ(path: str, body: Any = None, key: str | None = None, method: str = "post", **extra: Any) -> dict[str, Any]:
    if key is not None:
        extra["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    factory = RequestFactory()
    if method == "get":
        return factory.get(path, **extra).environ
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return factory.post(path, data=data, content_type="application/json", **extra).environ


class Middleware:
    """Records whether Django's middleware stack saw a request."""

    seen: list[str] = []

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: Any) -> Any:
        Middleware.seen.append(request.path)
        return self.get_response(request)


@pytest.fixture
def app(settings: Any) -> Any:
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, f"{__name__}.Middleware"]
    Middleware.seen = []
    return api.wsgi_application(WSGIHandler())


def batch(*ids: str) -> dict[str, Any]:
    return {"batch": [{"type": "track", "event": "Signed Up", "userId": "u1", "messageId": m} for m in ids]}


def test_a_batch_is_stored_and_answered_without_the_middleware(app: Any, ingest_key: str,
                                                              workspace: Workspace) -> None:
    answer = Answer(app, environ("/v1/batch", batch("a", "b"), ingest_key))
    assert answer.code == 200 and answer.json() == {"success": True, "accepted": 2, "duplicates": 0, "rejected": []}
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Content-Length"] == str(len(answer.body))  # keep-alive needs it
    assert answer.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware's, applied by hand
    assert Middleware.seen == []
    assert list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("message_id", flat=True)) \
        == ["a", "b"]


def test_refusals_are_the_views_own(app: Any, ingest_key: str) -> None:
    answer = Answer(app, environ("/v1/track", {"type": "track", "userId": "u1"}, ingest_key))
    assert answer.code == 400 and answer.json()["error"] == "missing_event"
    answer = Answer(app, environ("/v1/batch", batch("a"), "tk_notakey"))
    assert answer.code == 401 and answer.json()["error"] == "invalid_ingest_key"
    answer = Answer(app, environ("/v1/nothing", batch("a"), ingest_key))
    assert answer.code == 404 and answer.json()["error"] == "unknown_call"
    assert Middleware.seen == []


def test_everything_else_goes_through_django(app: Any, ingest_key: str) -> None:
    answer = Answer(app, environ("/v1/batch", method="get"))
    assert answer.code == 405 and answer.json()["error"] == "method_not_allowed"
    answer = Answer(app, environ("/healthz", method="get"))
    assert answer.code == 200
    assert Middleware.seen == ["/v1/batch", "/healthz"]


def test_a_host_not_allowed_is_a_400(app: Any, ingest_key: str, workspace: Workspace) -> None:
    answer = Answer(app, environ("/v1/batch", batch("a"), ingest_key, HTTP_HOST="evil.example"))
    assert answer.code == 400 and answer.json()["error"] == "unknown_host"
    assert "Host header" in answer.json()["message"]
    assert not Event.objects.exists()


def test_a_body_past_what_the_server_reads_says_how_large_a_batch_may_be(app: Any, ingest_key: str,
                                                                        settings: Any) -> None:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    answer = Answer(app, environ("/v1/batch", b" " * (1024 * 1024 + 1), ingest_key))
    assert answer.code == 400 and answer.json()["error"] == "batch_too_large"
    assert answer.json()["message"].startswith("The body is larger than this server reads (1,024 KB)")


@pytest.mark.parametrize("path", ["/v1/batch", "/webhooks/in/wh_x/token"])
def test_a_chunked_body_without_a_length_is_asked_for_its_length(app: Any, ingest_key: str, path: str) -> None:
    from integrations.webhooks.views import wsgi_application as webhooks_first

    request = environ(path, batch("a"), ingest_key, HTTP_TRANSFER_ENCODING="chunked")
    del request["CONTENT_LENGTH"]
    answer = Answer(webhooks_first(app, api.serve), request)  # as config.wsgi puts them
    assert answer.code == 411 and answer.json()["error"] == "length_required"
    assert "Content-Length" in answer.json()["message"]
    assert not Event.objects.exists()


def test_plain_http_is_redirected_when_the_site_requires_https(app: Any, ingest_key: str, settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT, settings.SECURE_HSTS_SECONDS = True, 3600
    answer = Answer(app, environ("/v1/batch", batch("a"), ingest_key))
    assert answer.code == 301 and answer.headers["Location"] == "https://testserver/v1/batch"
    answer = Answer(app, environ("/v1/batch", batch("b"), ingest_key, secure=True))
    assert answer.code == 200
    assert answer.headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_a_server_error_is_a_json_500_that_is_logged(app: Any, ingest_key: str, monkeypatch: pytest.MonkeyPatch,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(**kwargs: Any) -> Any:
        raise RuntimeError("database gone")

    monkeypatch.setattr(api, "events_append", broken)
    with caplog.at_level(logging.ERROR, logger="integrations.ingest.api"):
        answer = Answer(app, environ("/v1/batch", batch("a"), ingest_key))
    assert answer.code == 500 and answer.json()["error"] == "server_error"
    assert "Send the request again" in answer.json()["message"]
    assert [r.message for r in caplog.records] == ["ingest.server_error"]


def test_the_served_application_takes_the_lean_path(ingest_key: str, workspace: Workspace, settings: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """What the web server (config.serve), the Procfile and runserver (WSGI_APPLICATION) load."""
    from config import wsgi

    assert settings.WSGI_APPLICATION == "config.wsgi.application"
    served: list[str] = []
    real_serve = api.serve

    def serve(environ: dict[str, Any], start_response: Any, view: Any, *args: Any) -> Any:
        served.append(environ["PATH_INFO"])
        return real_serve(environ, start_response, view, *args)

    monkeypatch.setattr(api, "serve", serve)
    answer = Answer(wsgi.application, environ("/v1/batch", batch("a"), ingest_key))
    assert answer.code == 200 and answer.json()["accepted"] == 1
    assert Answer(wsgi.application, environ("/healthz", method="get")).code == 200
    assert served == ["/v1/batch"]
    assert Event.objects.filter(workspace=workspace).count() == 1


def test_each_call_sends_djangos_request_signals(app: Any, ingest_key: str) -> None:
    """request_started closes a stale database connection, request_finished returns it."""
    sent: list[str] = []

    def started(**kwargs: Any) -> None:
        sent.append("started")

    def finished(**kwargs: Any) -> None:
        sent.append("finished")

    signals.request_started.connect(started)
    signals.request_finished.connect(finished)
    try:
        Answer(app, environ("/v1/batch", batch("a"), ingest_key))
    finally:
        signals.request_started.disconnect(started)
        signals.request_finished.disconnect(finished)
    assert sent == ["started", "finished"]


def recorded_wake_ups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    woken: list[int] = []

    def record(workspace_id: int) -> int:
        woken.append(workspace_id)
        return 1

    monkeypatch.setattr(wake, "_wake", record)
    return woken


def test_the_connections_are_woken_once_the_answer_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender waits for the answer only: the wake-up (a write, its commit, the broker) runs
    when the server closes the answer, after writing it."""
    woken = recorded_wake_ups(monkeypatch)

    def appending(request: Any) -> HttpResponse:
        wake.connections_wake(workspace_id=7)
        wake.connections_wake(workspace_id=7)
        return HttpResponse(b"{}", content_type="application/json")

    statuses: list[str] = []
    response = api.serve(environ("/v1/batch", batch("a")), lambda status, headers: statuses.append(status),
                         appending)
    assert statuses == ["200 OK"] and b"".join(response) == b"{}"
    assert woken == []
    response.close()  # type: ignore[attr-defined]  # as a WSGI server does once the body is written
    assert woken == [7]
    wake.connections_wake(workspace_id=8)  # outside a request: at once
    assert woken == [7, 8]


def test_connections_an_append_woke_are_queued_once_the_answer_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    """On PostgreSQL the append's statement flags the connections; only the broker is left for
    after the answer."""
    queued: list[int] = []

    def queue_delivery(connection_id: int, *, countdown: float | None = None) -> bool:
        queued.append(connection_id)
        return True

    monkeypatch.setattr(wake, "queue_delivery", queue_delivery)

    def appending(request: Any) -> HttpResponse:
        wake.connections_queue([5, 6])
        return HttpResponse(b"{}", content_type="application/json")

    response = api.serve(environ("/v1/batch", batch("a")), lambda status, headers: None, appending)
    assert b"".join(response) == b"{}" and queued == []
    response.close()  # type: ignore[attr-defined]
    assert queued == [5, 6]
    wake.connections_queue([9])  # outside a request: at once
    assert queued == [5, 6, 9]


def test_wake_ups_a_server_never_released_are_woken_by_the_next_request(monkeypatch: pytest.MonkeyPatch) -> None:
    woken = recorded_wake_ups(monkeypatch)
    wake.wakes_held()
    wake.connections_wake(workspace_id=3)
    wake.wakes_held()  # the next request starts without the last one's close()
    assert woken == [3]
    wake.wakes_release()
    assert woken == [3]


def test_a_failing_wake_up_is_logged_not_raised(monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    def broken(workspace_id: int) -> int:
        raise RuntimeError("database gone")

    monkeypatch.setattr(wake, "_wake", broken)
    wake.wakes_held()
    wake.connections_wake(workspace_id=4)
    with caplog.at_level(logging.ERROR, logger="integrations.relay.wake"):
        assert wake.wakes_release() == 0
    assert [r.message for r in caplog.records] == ["relay.wake_failed"]


def serve_as_a_server(environ: dict[str, Any]) -> tuple[str, bytes]:
    """One request as the web server serves it, Django's request signals included."""
    statuses: list[str] = []
    response = api.serve(environ, lambda status, headers: statuses.append(status), api.ingest,
                         environ["PATH_INFO"][len("/v1/"):])
    try:
        return statuses[0], b"".join(response)
    finally:
        if hasattr(response, "close"):  # as PEP 3333 asks of a server (a list has none)
            response.close()


@pytest.mark.django_db(transaction=True)
def test_a_database_connection_kept_between_requests_serves_the_next_one(
        ingest_key: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    # As `make run` keeps it (runserver's threads, CONN_MAX_AGE): on SQLite the check before
    # each request used to ask the connection for a socket it does not have, and answer 500.
    monkeypatch.setitem(db.connection.settings_dict, "CONN_MAX_AGE", None)
    db.connection.close()
    try:
        for message_id in ("a", "b", "c"):
            status, body = serve_as_a_server(environ("/v1/batch", batch(message_id), ingest_key))
            assert (status, orjson.loads(body)["accepted"]) == ("200 OK", 1)
            assert db.connection.connection is not None  # kept for the next request
        assert list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("message_id", flat=True)) \
            == ["a", "b", "c"]
    finally:
        db.connection.close()


@pytest.mark.skipif(db.connection.vendor != "postgresql", reason="terminates a PostgreSQL backend")
@pytest.mark.django_db(transaction=True)
def test_a_database_connection_the_server_closed_is_replaced_without_a_round_trip_per_request(
        ingest_key: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(db.connection.settings_dict, "CONN_MAX_AGE", None)  # kept between requests
    monkeypatch.setitem(db.connection.settings_dict, "CONN_HEALTH_CHECKS", True)
    db.connection.close()
    checks: list[bool] = []
    real_is_usable = db.connection.is_usable

    def is_usable() -> bool:
        checks.append(real_is_usable())
        return checks[-1]

    monkeypatch.setattr(db.connection, "is_usable", is_usable)
    try:
        assert serve_as_a_server(environ("/v1/batch", batch("a"), ingest_key))[0] == "200 OK"
        assert serve_as_a_server(environ("/v1/batch", batch("b"), ingest_key))[0] == "200 OK"
        assert checks == []  # a healthy connection: no SELECT 1
        backend = db.connection.connection.info.backend_pid
        with psycopg.connect(conninfo(db.connection.settings_dict), autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [backend])
            # pg_terminate_backend only signals: wait until the backend has gone (its socket is
            # closed), or the next request may find it still open and fail its statement.
            deadline = time.monotonic() + 30
            while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone():
                assert time.monotonic() < deadline, "the terminated backend did not exit"
                time.sleep(0.02)
        status, body = serve_as_a_server(environ("/v1/batch", batch("c"), ingest_key))
        assert status == "200 OK" and orjson.loads(body)["accepted"] == 1
        assert checks == [False]  # the socket had something to read: checked, found closed, replaced
        assert db.connection.connection.info.backend_pid != backend
        assert list(Event.objects.filter(workspace=workspace).order_by("seq").values_list("message_id", flat=True)) \
            == ["a", "b", "c"]
    finally:
        db.connection.close()


def conninfo(settings_dict: dict[str, Any]) -> str:
    return psycopg.conninfo.make_conninfo(
        dbname=settings_dict["NAME"], user=settings_dict["USER"], password=settings_dict["PASSWORD"] or None,
        host=settings_dict["HOST"] or None, port=settings_dict["PORT"] or None)
