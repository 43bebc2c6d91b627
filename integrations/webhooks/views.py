"""The URL products post webhooks to: `POST /webhooks/in/<public id>` (signed) or
`/webhooks/in/<public id>/<token>` (unsigned, token in the URL).

Outside the signed-in area and CSRF-exempt: the sender proves itself with the signature or
the token. The body is read only up to the limit: a larger one is answered 413 unread.

`wsgi_application` answers these POSTs in front of Django's middleware, as the ingest API's
are (config/wsgi.py composes the two): sessions, CSRF, messages, CSP and the rest have nothing
to do for a sender, and skipping them and URL resolution is most of a request's cost.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from integrations.webhooks.receive import MAX_BODY_BYTES, Request, webhook_receive

RECEIVE_PREFIX = "/webhooks/in/"
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# integrations.ingest.api.serve: Django's request handling less the middleware.
Serve = Callable[..., Iterable[bytes]]
# The headers the receiver reads, by name and by WSGI environ key.
HEADERS = tuple((name, "HTTP_" + name.upper().replace("-", "_"))
                for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "idempotency-key", "x-request-id"))


@csrf_exempt
def receive(request: HttpRequest, public_id: str, token: str | None = None) -> HttpResponse:
    if request.method != "POST":
        response = _answer(405, {"success": False, "error": "method_not_allowed", "message": "Send webhooks with POST."})
        response["Allow"] = "POST"
        return response
    body, too_large = _body(request)
    # From the WSGI environ directly: `request.headers` would first copy every header there.
    headers = {name: value for name, key in HEADERS if (value := request.META.get(key))}
    answer = webhook_receive(Request(public_id=public_id, url_token=token, headers=headers, body=body,
                                     too_large=too_large))
    return _answer(answer.status, answer.payload)


def _body(request: HttpRequest) -> tuple[bytes, int | None]:
    """The body, or (b"", its size) when over the limit: a declared length is trusted to refuse
    without reading; a chunked body is read one byte past the limit at most."""
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > MAX_BODY_BYTES:
        return b"", declared
    body = request.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return b"", len(body)
    return body, None


def _answer(status: int, payload: dict[str, object]) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


def wsgi_application(application: WSGIApp, serve: Serve) -> WSGIApp:
    """`application` with POST /webhooks/in/<public id>[/<token>] answered first by `serve`
    (given, not imported: it belongs to the ingest API's entry point). Anything else, a GET of
    the same URL included, goes to `application` unchanged."""

    def answer(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(RECEIVE_PREFIX) and environ.get("REQUEST_METHOD") == "POST":
            parts = path[len(RECEIVE_PREFIX):].split("/")
            if len(parts) <= 2 and all(parts):  # the shapes of the two receive URLs
                return serve(environ, start_response, receive, *parts)
        return application(environ, start_response)

    return answer
