"""The web application bench/relay.py serves: Tributary's own (`config.wsgi`, or the module
--wsgi names), plus `POST /bench/trivial`, a view that only answers {"success": true}.

`POST /bench/store` is the floor of a durable store: it appends one event with the message
the request's key names, through `events_append` as /v1/track does (one statement, committed
and flushed, connections woken after the answer), and does nothing else: no decoding or
validation, no rate limit, no tracking plan. What /v1/track cannot beat without storing
several requests' events in one statement.

The trivial view is the floor for single-call ingest: served by the same server and the same
path through Django as the ingest API (`integrations.ingest.api.serve`: no middleware, no URL
resolution), so requests/s of /v1/track over requests/s of the trivial view is what ingest's
own work costs. A build without that lean path (measuring an older commit) serves the view
through Django's middleware, as its /v1/* calls are served.
"""

from __future__ import annotations

import base64
import importlib
import os
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

TRIVIAL_PATH = "/bench/trivial"
STORE_PATH = "/bench/store"
tributary = importlib.import_module(os.environ.get("BENCH_WSGI_MODULE", "config.wsgi")).application


def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"success":true}', content_type="application/json")


_workspaces: dict[str, int] = {}


def store(request: HttpRequest) -> HttpResponse:
    # Imported here: an older build measured with --pythonpath may lack them, and then only
    # this view fails.
    from integrations.ingest.keys import ingest_key_authenticate
    from integrations.relay.log import Message, events_append

    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if header not in _workspaces:
        key = ingest_key_authenticate(base64.b64decode(header[6:]).decode().partition(":")[0])
        assert key is not None
        _workspaces[header] = key.workspace_id
    message_id = str(uuid.uuid4())
    body = b'{"type":"track","event":"Bench Stored","userId":"floor","properties":{}}'
    events_append(workspace_id=_workspaces[header], messages=[
        Message("track", message_id, body, "Bench Stored", "floor", timezone.now())])
    return HttpResponse(b'{"success":true}', content_type="application/json")


try:
    from integrations.ingest.api import serve
except ImportError:  # an older build: Django's whole handler, middleware included
    from django.core.handlers.wsgi import WSGIHandler

    class _TrivialHandler(WSGIHandler):
        def _get_response(self, request: HttpRequest) -> HttpResponse:
            return trivial(request)

    _handler = _TrivialHandler()

    def serve(environ: dict[str, Any], start_response: Callable[..., Any],
              view: Callable[..., HttpResponse], *args: Any) -> Iterable[bytes]:
        answer: Iterable[bytes] = _handler(environ, start_response)
        return answer


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == TRIVIAL_PATH:
        return serve(environ, start_response, trivial)
    if environ.get("PATH_INFO") == STORE_PATH:
        return serve(environ, start_response, store)
    answer: Iterable[bytes] = tributary(environ, start_response)
    return answer
