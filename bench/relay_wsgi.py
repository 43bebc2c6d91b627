"""The web application bench/relay.py serves: Tributary's own (`config.wsgi`, or the module
--wsgi names), plus `POST /bench/trivial`, a view that only answers {"success": true}.

The trivial view is the floor for single-call ingest: served by the same server and the same
path through Django as the ingest API (`integrations.ingest.api.serve`: no middleware, no URL
resolution), so requests/s of /v1/track over requests/s of the trivial view is what ingest's
own work costs. A build without that lean path (measuring an older commit) serves the view
through Django's middleware, as its /v1/* calls are served.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from typing import Any

from django.http import HttpRequest, HttpResponse

TRIVIAL_PATH = "/bench/trivial"
tributary = importlib.import_module(os.environ.get("BENCH_WSGI_MODULE", "config.wsgi")).application


def trivial(request: HttpRequest) -> HttpResponse:
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
    answer: Iterable[bytes] = tributary(environ, start_response)
    return answer
