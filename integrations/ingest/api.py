"""Tributary's Segment-compatible HTTP API: `POST /v1/identify|track|page|screen|group|alias|batch`
(and `/v1/import`, as batch), so any official Segment library sends here by changing its host.

Authentication is Segment's: the workspace's ingest key as the Basic-auth user name (empty
password) or as `writeKey` in the body. Unlike Segment, mistakes are loud: an unknown key is a
401, an invalid single call a 400 naming the reason. In a batch one bad event must not cost the
good ones (official libraries drop a whole batch on a 400), so valid events are stored, invalid
ones are listed by index and reason in a 200 answer and recorded for the workspace to see;
that holds for an event that cannot even be serialised (nested too deep, a lone surrogate).
Nothing is acknowledged before it is committed to the database.

Guessing keys is cheap to refuse: after INGEST_AUTH_FAILURES_PER_MINUTE unknown or revoked
keys from one client address in a clock minute, the address gets 429 until the minute ends,
without a database lookup. A key the process has already served skips that check, so a
busy sender pays no round trip for it.

`wsgi_application` serves `POST /v1/*` straight from the WSGI server, without Django's
middleware and URL resolution (about a third of a small request's time went there): what of
it applies to an API call is done here (host check, the HTTPS redirect and security headers,
Content-Length for keep-alive, connections closed as Django closes them). The view is the same
function the URLconf routes to, so the test client and the server run the same code.
"""
from __future__ import annotations

import base64
import binascii
import gzip
import ipaddress
import logging
import select
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
import psycopg
from django.conf import settings
from django.core import signals
from django.core.exceptions import DisallowedHost, RequestDataTooBig, SuspiciousOperation
from django.core.handlers.wsgi import WSGIHandler, WSGIRequest
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_variables

from accounts.http import client_address
from integrations.ingest.keys import ingest_key_authenticate, ingest_key_recognised
from integrations.ingest.messages import Invalid, Normaliser, loads_lenient, normalise
from integrations.ingest.ratelimit import hit_started, hits, hits_so_far, seconds_left
from integrations.ingest.rejections import rejections_record
from integrations.models import IngestKey
from integrations.models.ingest import KEY_PREFIX
from integrations.relay.log import Message, events_append
from integrations.relay.wake import wakes_held, wakes_pending, wakes_release
from integrations.segment.protocol import TYPES
from integrations.tracking_plans.enforcement import plan_enforce

logger = logging.getLogger(__name__)

MAX_BATCH_BYTES = 500 * 1024
MAX_BATCH_EVENTS = 2500
MAX_SINGLE_BYTES = 32 * 1024
MAX_INFLATED_BYTES = 2 * 1024 * 1024
AUTH_FAILURE_WINDOW = 60
CALLS = (*TYPES, "batch", "import")


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status, self.error, self.message, self.retry_after = status, error, message, retry_after


@csrf_exempt
def ingest(request: HttpRequest, call: str) -> HttpResponse:
    try:
        if call not in CALLS:
            raise Refused(404, "unknown_call", f"Unknown endpoint /v1/{call[:40]}: use one of {', '.join(CALLS)}.")
        if request.method != "POST":
            raise Refused(405, "method_not_allowed", "Send events with POST.")
        body = _json_body(request, batch=call in ("batch", "import"))
        ingest_key = _authenticate(request, body)
        within_limit = _rate_limit_started(ingest_key)
        if call in ("batch", "import"):
            return _answer(200, _ingest_batch(ingest_key, body, within_limit))
        return _answer(200, _ingest_one(ingest_key, body, call, within_limit))
    except Refused as refused:
        response = _answer(refused.status, {"success": False, "error": refused.error, "message": refused.message})
        if refused.retry_after is not None:
            response["Retry-After"] = str(refused.retry_after)
        if refused.status == 405:
            response["Allow"] = "POST"
        elif refused.status == 401:
            response["WWW-Authenticate"] = 'Basic realm="Tributary ingest API"'
        return response


def _ingest_one(ingest_key: IngestKey, body: dict[str, Any], call: str,
                within_limit: Callable[[], None]) -> dict[str, Any]:
    try:
        message = normalise(body, received_at=timezone.now(), call=call)
    except Invalid as invalid:
        within_limit()
        rejections_record(workspace_id=ingest_key.workspace_id, source=f"http:{call}", rejected=[(None, body, invalid)])
        raise Refused(400, invalid.reason, invalid.detail) from None
    within_limit()
    enforced = plan_enforce(workspace_id=ingest_key.workspace_id, messages=[message], source=f"http:{call}")
    appended = events_append(workspace_id=ingest_key.workspace_id, messages=enforced.messages)
    answer = {"success": True, "accepted": appended.stored, "duplicates": len(appended.duplicates), "rejected": []}
    return {**answer, "blocked": enforced.blocked} if enforced.blocked else answer


def _ingest_batch(ingest_key: IngestKey, body: dict[str, Any], within_limit: Callable[[], None]) -> dict[str, Any]:
    items = body.get("batch")
    if not isinstance(items, list):
        raise Refused(400, "invalid_batch", "A batch body is {\"batch\": [events…]}.")
    if len(items) > MAX_BATCH_EVENTS:
        raise Refused(400, "batch_too_many_events",
                      f"The batch has {len(items):,} events; send at most {MAX_BATCH_EVENTS:,} per request.")
    normalise = Normaliser(received_at=timezone.now(), envelope=body, sent_at=body.get("sentAt")).normalised
    valid: list[Message] = []
    events: list[dict[str, Any]] = []  # each valid message's event, so the plan parses no body
    rejected: list[tuple[int | None, Any, Invalid]] = []
    for index, item in enumerate(items):
        try:
            message, event = normalise(item)
        except Invalid as invalid:
            rejected.append((index, item, invalid))
            continue
        valid.append(message)
        events.append(event)
    within_limit()  # before anything is written
    # The tracking plan: blocked events are listed in the 200 (never a reason for a retry).
    valid, blocked = plan_enforce(workspace_id=ingest_key.workspace_id, messages=valid, source="http:batch",
                                  events=events)
    appended = events_append(workspace_id=ingest_key.workspace_id, messages=valid)
    if rejected:
        rejections_record(workspace_id=ingest_key.workspace_id, source="http:batch", rejected=rejected)
    return {
        "success": True,
        "accepted": appended.stored,
        "duplicates": len(appended.duplicates),
        "rejected": [{"index": i, "reason": e.reason, "message": e.detail} for i, _, e in rejected],
        **({"blocked": blocked} if blocked else {}),
    }


def _json_body(request: HttpRequest, *, batch: bool) -> dict[str, Any]:
    raw = request.body
    # META rather than request.headers, which parses every header into a new mapping first.
    encoding = str(request.META.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if encoding in ("gzip", "x-gzip"):
        raw = _inflate(raw, batch=batch)
    elif encoding not in ("", "identity"):
        raise Refused(415, "unsupported_encoding", f"Content-Encoding {encoding[:20]!r} is not read here: send the "
                      "body as is or gzip-compressed (Content-Encoding: gzip).")
    limit = MAX_BATCH_BYTES if batch else MAX_SINGLE_BYTES
    if len(raw) > limit:
        what = "batch" if batch else "event"
        advice = "Send smaller batches." if batch else "Segment accepts at most 32 KB per event."
        raise Refused(400, f"{what}_too_large",
                      f"The {what} is {len(raw):,} bytes; the limit is {limit // 1024} KB. {advice}")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            body = loads_lenient(raw)  # what orjson refuses yet is JSON: a lone surrogate
        except ValueError:
            raise Refused(400, "invalid_json", _not_json_because(raw, error)) from None
    if not isinstance(body, dict):
        raise Refused(400, "invalid_json", "The body must be a JSON object.")
    return body


def _not_json_because(raw: bytes, error: orjson.JSONDecodeError) -> str:
    """Where and why a body is not JSON, in words a sender can act on."""
    if not raw.strip():
        return "The body is empty: send the event as a JSON object."
    if raw.startswith(b"\xef\xbb\xbf"):
        return "The body starts with a byte order mark (BOM): send UTF-8 JSON without one."
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as undecodable:
        return f"The body is not UTF-8 (at byte offset {undecodable.start:,}): send UTF-8 JSON."
    return f"The body is not valid JSON: {error.msg} at character {error.pos:,}."


def _inflate(raw: bytes, *, batch: bool) -> bytes:
    try:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        inflated = inflater.decompress(raw, MAX_INFLATED_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile):
        raise Refused(400, "invalid_gzip", "The body says gzip but does not inflate.") from None
    if len(inflated) > MAX_INFLATED_BYTES:
        if batch:
            raise Refused(400, "batch_too_large", f"The body inflates to more than {MAX_INFLATED_BYTES // 1024**2} MB; "
                          f"a batch may be at most {MAX_BATCH_BYTES // 1024} KB. Send smaller batches.")
        raise Refused(400, "event_too_large", f"The body inflates to more than {MAX_INFLATED_BYTES // 1024**2} MB; "
                      f"Segment accepts at most {MAX_SINGLE_BYTES // 1024} KB per event.")
    if not inflater.eof:
        raise Refused(400, "invalid_gzip", "The gzip body is cut short (no end of stream): send it whole.")
    return inflated


@sensitive_variables("raw_key", "header")
def _authenticate(request: HttpRequest, body: dict[str, Any]) -> IngestKey:
    """The request's ingest key, or Refused: 401 for a key that is not one, 429 once its
    address has sent too many of those this minute.

    1. a key this process has served before is looked up at once (no limit to check);
    2. otherwise, one read of the address's failure count: at the limit, 429 with no lookup;
    3. look the key up; a failure adds one to the count (one more round trip, failures only).
    """
    raw_key = ""
    header = str(request.META.get("HTTP_AUTHORIZATION", ""))
    if header[:6].lower() == "basic ":
        try:
            raw_key = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            raw_key = ""
    if not raw_key and isinstance(body.get("writeKey"), str):
        raw_key = body["writeKey"]
    raw_key = raw_key.strip()  # a key read from a file keeps its newline
    limit = settings.INGEST_AUTH_FAILURES_PER_MINUTE
    if not ingest_key_recognised(raw_key) and hits_so_far(_failures(request), window=AUTH_FAILURE_WINDOW) >= limit:
        retry_after = seconds_left(AUTH_FAILURE_WINDOW)
        raise Refused(429, "too_many_invalid_keys",
                      f"More than {limit} requests from this address in a minute carried an unknown or revoked "
                      f"ingest key; try again in {retry_after} s. Check the key the library sends: Settings → "
                      "API keys lists the active ones by their last four characters.", retry_after=retry_after)
    ingest_key = ingest_key_authenticate(raw_key) if raw_key else None
    if ingest_key is None:
        failures = _failures(request)
        if hits(failures, window=AUTH_FAILURE_WINDOW) == limit:
            logger.warning("ingest.auth_failures_limited", extra={"bucket": failures, "limit": limit})
        if not raw_key:
            what = ("The Authorization header is not Basic auth with the key as its user name"
                    if header and header[:6].lower() != "basic " else "No ingest key was sent")
            raise Refused(401, "missing_ingest_key", f"{what}: send it as the Basic-auth user name (empty "
                          "password) or as writeKey in the body. Create one under Settings → API keys.")
        if not raw_key.startswith(KEY_PREFIX):
            raise Refused(401, "invalid_ingest_key", f"This is not a Tributary ingest key (they start with "
                          f"{KEY_PREFIX}); a Segment write key does not work here. Create one under "
                          "Settings → API keys.")
        raise Refused(401, "invalid_ingest_key", "Unknown or revoked ingest key. Create one under Settings → API "
                      "keys and send it as the Basic-auth user name (empty password) or as writeKey.")
    return ingest_key


def _failures(request: HttpRequest) -> str:
    """The counter of unknown keys sent from the request's address (worked out only when needed:
    parsing the address costs more than the rest of a known key's check)."""
    return f"ingest-auth-failures:{_failure_bucket(client_address(request))}"


def _failure_bucket(address: str) -> str:
    """Whom failures are counted against: the address, or for IPv6 its /64, which one host
    usually holds whole (counting single IPv6 addresses would let it rotate past the limit)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


def _rate_limit_started(ingest_key: IngestKey) -> Callable[[], None]:
    """A fixed one-second window per key, in the shared cache: the request is counted now, and
    the returned function raises Refused(429) over the limit. The ingest calls it once the
    events are decoded, before anything is written, so the count's round trip runs meanwhile."""
    total = hit_started(f"ingest:{ingest_key.pk}")

    def within_limit() -> None:
        limit = settings.INGEST_REQUESTS_PER_SECOND
        if total() > limit:
            raise Refused(429, "rate_limited", f"More than {limit} requests a second for this ingest key.",
                          retry_after=1)

    return within_limit


def _answer(status: int, payload: dict[str, Any]) -> HttpResponse:
    return HttpResponse(orjson.dumps(payload), status=status, content_type="application/json")


# The lean path: POST /v1/* without the middleware stack ---------------------------------------

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
INGEST_PREFIX = "/v1/"


def wsgi_application(django_application: WSGIApp) -> WSGIApp:
    """`django_application` with ingest calls answered before it: every other request (pages,
    the admin, static files, a GET of /v1/…) goes to Django unchanged."""

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(INGEST_PREFIX) and environ.get("REQUEST_METHOD") == "POST":
            return serve(environ, start_response, ingest, path[len(INGEST_PREFIX):])
        return django_application(environ, start_response)

    return application


class _Security(SecurityMiddleware):
    """Django's SecurityMiddleware, called by hand: its HTTPS redirect and response headers."""

    def __init__(self) -> None:
        super().__init__(get_response=lambda request: HttpResponse())


_security: _Security | None = None


def _forget_security(**kwargs: Any) -> None:
    """SecurityMiddleware reads its settings once: read them again when they change (tests)."""
    global _security
    _security = None


signals.setting_changed.connect(_forget_security)


def serve(environ: dict[str, Any], start_response: Callable[..., Any],
          view: Callable[..., HttpResponse], *args: Any) -> Iterable[bytes]:
    """Answer one request with `view(request, *args)` as Django's WSGIHandler would, less the
    middleware: request_started before (which closes stale database connections) and
    request_finished once the answer is built (which returns them)."""
    global _security
    if _security is None:
        _security = _Security()
    signals.request_started.send(sender=WSGIHandler, environ=environ)
    _check_database_connection()
    wakes_held()
    request = WSGIRequest(environ)
    try:
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it
        response = _security.process_request(request) or _unread_body(environ) or view(request, *args)
    except RequestDataTooBig:
        response = _answer(400, {"success": False, "error": "batch_too_large",
                                 "message": f"The body is larger than this server reads "
                                            f"({settings.DATA_UPLOAD_MAX_MEMORY_SIZE // 1024:,} KB); a batch may be "
                                            f"at most {MAX_BATCH_BYTES // 1024} KB. Send smaller batches."})
    except DisallowedHost:
        logger.warning("ingest.refused_request", extra={"reason": "DisallowedHost"})
        response = _answer(400, {"success": False, "error": "unknown_host",
                                 "message": "The Host header names a host this server does not answer for: "
                                            "send to the address Tributary gave you."})
    except SuspiciousOperation as refused:
        logger.warning("ingest.refused_request", extra={"reason": type(refused).__name__})
        response = _answer(400, {"success": False, "error": "bad_request", "message": "Bad request."})
    except Exception:
        logger.exception("ingest.server_error")
        response = _answer(500, {"success": False, "error": "server_error",
                                 "message": "The server failed before answering. Send the request again: events "
                                            "already stored are not stored twice."})
    response = _security.process_response(request, response)
    if not response.has_header("Content-Length"):
        response["Content-Length"] = str(len(response.content))
    content = response.content
    response.close()  # request_finished now: the body is built and nothing else runs
    start_response(f"{response.status_code} {response.reason_phrase}", list(response.items()))
    if wakes_pending():
        return _Answer(content)
    wakes_release()  # nothing held: stop holding, and answer with a list, which servers write at once
    return [content]


def _unread_body(environ: dict[str, Any]) -> HttpResponse | None:
    """411 for a chunked body without Content-Length: Django reads a request's body by its
    declared length, so such a body would read as empty (and its events, or its signature,
    would be refused for the wrong reason). Every Segment library sends the length."""
    if environ.get("CONTENT_LENGTH") or "chunked" not in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower():
        return None
    return _answer(411, {"success": False, "error": "length_required",
                         "message": "Send the body with a Content-Length header: a chunked body is not read."})


class _Answer:
    """The body in one piece. The server calls close() once the body is sent (PEP 3333): the
    connections to wake are woken then, so the sender does not wait for that
    (integrations.relay.wake). Not a list: granian writes a list in one piece without calling
    its close(), which left a request's wake-ups held until its process served another, and
    the last events before a quiet spell waited for the sweeper (10 s). Only a request that
    woke a connection needs it; the others are answered with a list."""

    __slots__ = ("content",)

    def __init__(self, content: bytes) -> None:
        self.content = content

    def __iter__(self) -> Iterator[bytes]:
        yield self.content

    def close(self) -> None:
        wakes_release()


def _check_database_connection() -> None:
    """Close a database connection kept from an earlier request if the server has closed its
    end (a restart, an idle timeout, a terminated backend), so this request opens a new one
    before it stores anything, rather than failing on its first statement.

    Asked of the socket, not with Django's health check (a SELECT 1 round trip per request):
    an idle connection has nothing to read, while one the server closed reads its end (and
    usually a last error message). Anything to read sends the connection through Django's
    check, which closes it if a query fails. A connection that dies later fails its
    statement: a 500, which every Segment library sends again, and messageIds make that safe.

    PostgreSQL's only: SQLite is a file, with no server to close its end and no socket to ask.
    """
    database: Any = connections[DEFAULT_DB_ALIAS]  # health_check_done: Django 4.1+, not in its stubs
    raw = database.connection
    if raw is None or database.health_check_done or database.vendor != "postgresql":
        return
    try:
        readable = bool(select.select([raw.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):  # closed on our side already
        readable = True
    if readable:
        database.close_if_health_check_failed()
    database.health_check_done = True
