"""The web application bench/relay.py serves: Tributary's own (`config.wsgi`, or the module
--wsgi names), plus `POST /bench/trivial`, a view that only answers {"success": true}.

`POST /bench/store` is the floor of a durable store: it appends one prepared event to the
workspace of the request's key through `events_append` as the ingest API does (one statement,
committed and flushed, connections woken after the answer), and does nothing else: the body
is not read, nothing is validated, no rate limit, no tracking plan. What /v1/track cannot
beat without storing several requests' events in one statement. `POST /bench/store/v1/batch`
is the same floor for a batch, so an official library can be pointed at it (host
`…/bench/store`): the body is parsed and each event stored as sent, with its messageId, and
nothing else is done.

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

import orjson
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

TRIVIAL_PATH = "/bench/trivial"
STORE_PATH = "/bench/store"
STORE_BATCH_PATH = "/bench/store/v1/batch"
tributary = importlib.import_module(os.environ.get("BENCH_WSGI_MODULE", "config.wsgi")).application


def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"success":true}', content_type="application/json")


_workspaces: dict[str, int] = {}  # Authorization header → workspace
# A track call's body as the log stores it, of a typical size.
STORED_BODY = (b'{"type":"track","event":"Bench Stored","userId":"user-000042","timestamp":"2026-01-05T10:00:00.000Z",'
               b'"properties":{"order_id":"o-000000042","revenue":42.5,"currency":"EUR","plan":"pro"},'
               b'"context":{"library":{"name":"bench","version":"1.0"},"ip":"203.0.113.9"}}')


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
    now = timezone.now()
    if request.path == STORE_BATCH_PATH:
        messages = []
        for item in orjson.loads(request.body)["batch"]:
            message_id = item.pop("messageId")
            messages.append(Message(item.get("type", "track"), message_id, orjson.dumps(item), item.get("event", ""),
                                    item.get("userId") or "", now))
    else:
        messages = [Message("track", str(uuid.uuid4()), STORED_BODY, "Bench Stored", "floor", now)]
    appended = events_append(workspace_id=_workspaces[header], messages=messages)
    return HttpResponse(orjson.dumps({"success": True, "accepted": appended.stored}), content_type="application/json")


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
    if environ.get("PATH_INFO") in (STORE_PATH, STORE_BATCH_PATH):
        return serve(environ, start_response, store)
    answer: Iterable[bytes] = tributary(environ, start_response)
    return answer
