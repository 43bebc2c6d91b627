"""Segment's Public API (api.segmentapis.com), typed, over requests.

Facts: /work/shared/segment-management.md. The client:
1. sends `Authorization: Bearer <token>` and a versioned `Accept` (v1; v1beta for delivery
   metrics), with connect and read timeouts, each read timeout cut to what is left of the
   caller's budget (`deadline`), so no page waits on Segment longer than it allows;
2. on a 429 waits what Segment says (`errors[0].data.msBeforeNext`, else `Retry-After`, else
   the RFC 5322 `X-RateLimit-Reset`) and tries again, unless the wait outlasts the budget:
   then it raises at once with the wait in words; no request is sent before the wait ends;
3. on a 5xx (not 501/505) or a dropped connection, tries again after 0.5 s, 1 s, 2 s;
4. pages with `pagination.count`/`pagination.cursor` until `next` is absent, at most
   `max_pages` pages;
5. reuses GET answers for SEGMENT_PUBLIC_API_CACHE_SECONDS per token and path (Django's
   cache, keyed by a keyed hash of the token); a write forgets that token's cached reads;
6. reads at most MAX_ANSWER_BYTES of an answer, and maps every failure to a PublicApiError
   whose message a user can act on.
The token never appears in an exception, a log line, the call log or a return value.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any, Final
from urllib.parse import quote

import orjson
import requests
from django.conf import settings
from django.core.cache import cache
from django.views.decorators.debug import sensitive_variables

from integrations import crypto
from integrations.models import Region

logger = logging.getLogger(__name__)

ACCEPT: Final = "application/vnd.segment.v1+json"
ACCEPT_BETA: Final = "application/vnd.segment.v1beta+json"
PAGE_SIZE: Final = 200
MAX_PAGES: Final = 100  # 20,000 items: past that the list says it is partial
MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
MAX_ATTEMPTS: Final = 4
BACKOFF_SECONDS: Final = (0.5, 1.0, 2.0)
LONGEST_RATE_LIMIT_WAIT: Final = 60.0
CONNECT_TIMEOUT: Final = 3.05
NOT_RETRIED_5XX: Final = (501, 505)

# What a user can do about each failure. 401 is invalid, revoked and under-privileged alike.
MESSAGES: Final = {
    "unauthorized": "Segment refused the token: it is invalid or revoked, or it lacks the permission this needs "
                    "(Segment answers the same 401 for all of these). In Segment, check it under Settings → "
                    "Access Management → Tokens, or paste a new one.",
    "not_found": "Segment no longer has it: it may have been deleted in Segment.",
    "server_error": "Segment answered with an error several times: try again in a few minutes.",
    "unreachable": "Segment could not be reached: try again in a minute.",
    "malformed": "Segment's answer could not be read: try again later.",
    "too_large": "Segment's answer was too large to read.",
}


class PublicApiError(Exception):
    """A call that did not succeed. `kind` is a CallOutcome value (plus "too_large");
    `message` is for users; `retry_after` is set for rate limits."""

    def __init__(self, kind: str, message: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.status, self.retry_after = kind, message, status, retry_after


CallLog = Callable[[str, str, int | None, int, str], None]  # method, path template, status, ms, outcome


# --- typed answers ----------------------------------------------------------------------


@dataclass(frozen=True)
class Label:
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.key}:{self.value}"


@dataclass(frozen=True)
class Source:
    id: str
    slug: str
    name: str
    enabled: bool
    write_keys: tuple[str, ...]
    labels: tuple[Label, ...]
    kind: str = ""  # the catalog name, e.g. "HTTP API"


@dataclass(frozen=True)
class Destination:
    id: str
    name: str
    enabled: bool
    kind: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Warehouse:
    id: str
    kind: str
    enabled: bool
    settings: dict[str, Any]


@dataclass(frozen=True)
class Listing:
    """A paged list read to its end, or as far as `max_pages` and the budget allowed."""

    items: list[Any]
    total: int | None
    complete: bool


@dataclass(frozen=True)
class UsageDay:
    source_id: str
    day: date
    cumulative: int


@dataclass
class Budget:
    """The monotonic deadline a caller allows for everything this client does for it."""

    seconds: float
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def base_url(region: str) -> str:
    """From settings only, never from user input."""
    base = settings.SEGMENT_PUBLIC_API_EU if region == Region.EU else settings.SEGMENT_PUBLIC_API_US
    return str(base).rstrip("/")


class PublicApi:
    """One token of one region. Not thread-safe; make one per request or task."""

    @sensitive_variables("token")
    def __init__(self, *, token: str, region: str, budget: Budget | None = None, on_call: CallLog | None = None,
                 session: requests.Session | None = None) -> None:
        self._token = token
        self.region = region
        self.base = base_url(region)
        self.budget = budget or Budget(float(settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS))
        self.on_call = on_call
        self.session = session or requests.Session()
        # A keyed hash: the cache key names the token without being it.
        self._cache_prefix = "segment-public:" + crypto.fingerprint("public-api:" + token)[:40]

    def __repr__(self) -> str:
        return f"<PublicApi {self.region}>"

    # --- reads ----------------------------------------------------------------------------

    def workspace(self, *, cached: bool = True) -> dict[str, str]:
        data = self.get("/", cached=cached)
        found = _dict(data.get("workspace"))
        return {"id": _str(found.get("id")), "name": _str(found.get("name")), "slug": _str(found.get("slug"))}

    def sources(self, *, max_pages: int = MAX_PAGES) -> Listing:
        listing = self.paged("/sources", "sources", max_pages=max_pages)
        return Listing([_source(item) for item in listing.items], listing.total, listing.complete)

    def source(self, source_id: str, *, cached: bool = True) -> Source:
        return _source(self.get("/sources/{sourceId}", {"sourceId": source_id}, cached=cached).get("source"))

    def labels(self) -> list[Label]:
        return [_label(item) for item in self.paged("/labels", "labels").items]

    def destinations(self, source_id: str) -> list[Destination]:
        listing = self.paged("/sources/{sourceId}/connected-destinations", "destinations", {"sourceId": source_id})
        return [_destination(item) for item in listing.items]

    def destination(self, destination_id: str) -> Destination:
        data = self.get("/destinations/{destinationId}", {"destinationId": destination_id})
        return _destination(data.get("destination"))

    def warehouses(self, source_id: str) -> list[Warehouse]:
        listing = self.paged("/sources/{sourceId}/connected-warehouses", "warehouses", {"sourceId": source_id})
        return [_warehouse(item) for item in listing.items]

    def schema_settings(self, source_id: str) -> dict[str, Any]:
        data = self.get("/sources/{sourceId}/settings", {"sourceId": source_id})
        return _dict(data.get("settings"))

    def delivery_metrics(self, destination_id: str, source_id: str, *, start: datetime, end: datetime,
                         granularity: str) -> dict[str, int]:
        """Totals per metric name for the window (beta endpoint; both times always sent)."""
        query = {"sourceId": source_id, "startTime": _iso(start), "endTime": _iso(end), "granularity": granularity}
        data = self.get("/destinations/{destinationId}/delivery-metrics", {"destinationId": destination_id},
                        query=query, accept=ACCEPT_BETA)
        summary = _dict(data.get("deliveryMetricsSummary"))
        totals: dict[str, int] = {}
        for metric in _list(summary.get("metrics")):
            metric = _dict(metric)
            totals[_str(metric.get("metricName"))] = _int(metric.get("total"))
        return totals

    def daily_usage(self, period: date) -> list[UsageDay]:
        """API calls per source and day of the month starting at `period`, cumulative."""
        listing = self.paged("/usage/api-calls/sources/daily", "dailyPerSourceAPICallsUsage",
                             query={"period": period.isoformat()})
        days = []
        for item in listing.items:
            item = _dict(item)
            days.append(UsageDay(_str(item.get("sourceId")), _day(item.get("timestamp")), _int(item.get("apiCalls"))))
        return days

    # --- writes ---------------------------------------------------------------------------

    def add_labels(self, source_id: str, labels: list[Label]) -> list[Label]:
        body = {"labels": [{"key": label.key, "value": label.value} for label in labels]}
        data = self.call("POST", "/sources/{sourceId}/labels", {"sourceId": source_id}, body=body)
        return [_label(item) for item in _list(data.get("labels"))]

    def create_label(self, label: Label) -> Label:
        data = self.call("POST", "/labels", body={"label": {"key": label.key, "value": label.value}})
        return _label(data.get("label"))

    def delete_source(self, source_id: str) -> str:
        data = self.call("DELETE", "/sources/{sourceId}", {"sourceId": source_id})
        return _str(data.get("status")) or "UNKNOWN"

    # --- transport ------------------------------------------------------------------------

    def get(self, template: str, path_args: dict[str, str] | None = None, *, query: dict[str, Any] | None = None,
            accept: str = ACCEPT, cached: bool = True) -> dict[str, Any]:
        key = self._cache_key(template, path_args, query) if cached else None
        if key is not None:
            hit = cache.get(key)
            if hit is not None:
                return dict(hit)
        data = self.call("GET", template, path_args, query=query, accept=accept)
        if key is not None:
            cache.set(key, data, settings.SEGMENT_PUBLIC_API_CACHE_SECONDS)
        return data

    def paged(self, template: str, name: str, path_args: dict[str, str] | None = None, *,
              query: dict[str, Any] | None = None, max_pages: int = MAX_PAGES) -> Listing:
        items: list[Any] = []
        total: int | None = None
        cursor: str | None = None
        for _page in range(max_pages):
            params = {**(query or {}), "pagination.count": PAGE_SIZE}
            if cursor:
                params["pagination.cursor"] = cursor
            data = self.get(template, path_args, query=params)
            items += _list(data.get(name))
            pagination = _dict(data.get("pagination"))
            if pagination.get("totalEntries") is not None:
                total = _int(pagination.get("totalEntries"))
            cursor = pagination.get("next") if isinstance(pagination.get("next"), str) else None
            if not cursor:
                return Listing(items, total, True)
        return Listing(items, total, False)

    def call(self, method: str, template: str, path_args: dict[str, str] | None = None, *,
             query: dict[str, Any] | None = None, body: Any = None, accept: str = ACCEPT) -> dict[str, Any]:
        """One logical request, with the retries and waits of the module docstring."""
        path = _fill(template, path_args or {})
        if method != "GET":
            self.forget_cached()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = self._send(method, template, path, query, body, accept)
            status = response.status_code
            if status == 429:
                wait = rate_limit_wait(response)
                if attempt == MAX_ATTEMPTS or wait > min(self.budget.left(), LONGEST_RATE_LIMIT_WAIT):
                    raise PublicApiError("rate_limited", _rate_limited_message(wait), status=429, retry_after=wait)
                time.sleep(wait)
                continue
            if status >= 500 and status not in NOT_RETRIED_5XX and attempt < MAX_ATTEMPTS:
                pause = BACKOFF_SECONDS[attempt - 1]
                if pause < self.budget.left():
                    time.sleep(pause)
                    continue
            return _data_or_raise(response)
        raise AssertionError("unreachable")

    def forget_cached(self) -> None:
        """Bump this token's cache generation: every cached read of it is stale at once."""
        try:
            cache.incr(self._cache_prefix + ":gen")
        except ValueError:
            cache.set(self._cache_prefix + ":gen", 1, None)

    def _cache_key(self, template: str, path_args: dict[str, str] | None, query: dict[str, Any] | None) -> str:
        generation = cache.get(self._cache_prefix + ":gen", 0)
        path = _fill(template, path_args or {})
        params = "&".join(f"{k}={v}" for k, v in sorted((query or {}).items()))
        return crypto.fingerprint(f"{self._cache_prefix}:{generation}:{self.region}:{path}?{params}")

    def _send(self, method: str, template: str, path: str, query: dict[str, Any] | None, body: Any,
              accept: str) -> _Response:
        left = self.budget.left()
        if left <= 0.05:
            self._log(method, template, None, 0, "timeout")
            raise PublicApiError("timeout", _timeout_message(self.budget.seconds))
        headers = {"Authorization": f"Bearer {self._token}", "Accept": accept, "User-Agent": "Tributary"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        started = time.monotonic()
        timeout = (min(CONNECT_TIMEOUT, left), min(float(settings.SEGMENT_PUBLIC_API_TIMEOUT_SECONDS), left))
        try:
            with self.session.request(method, self.base + path, params=query, data=data, headers=headers,
                                      timeout=timeout, stream=True, allow_redirects=False) as response:
                content = _read_capped(response)
                answer = _Response(response.status_code, response.headers, content)
        except requests.Timeout:
            self._log(method, template, None, _ms(started), "timeout")
            raise PublicApiError("timeout", _timeout_message(min(left, timeout[1]))) from None
        except requests.RequestException:
            self._log(method, template, None, _ms(started), "unreachable")
            raise PublicApiError("unreachable", MESSAGES["unreachable"]) from None
        except _TooLarge:
            self._log(method, template, None, _ms(started), "malformed")
            raise PublicApiError("too_large", MESSAGES["too_large"]) from None
        self._log(method, template, answer.status_code, _ms(started), _outcome(answer.status_code))
        return answer

    def _log(self, method: str, template: str, status: int | None, ms: int, outcome: str) -> None:
        logger.info("segment.public_api_call", extra={"method": method, "path": template, "status": status,
                                                      "duration_ms": ms, "outcome": outcome, "region": self.region})
        if self.on_call is not None:
            self.on_call(method, template, status, ms, outcome)


@dataclass(frozen=True)
class _Response:
    status_code: int
    headers: Any
    content: bytes


class _TooLarge(Exception):
    pass


def _read_capped(response: requests.Response) -> bytes:
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def rate_limit_wait(response: Any, now: datetime | None = None) -> float:
    """Seconds Segment asks us to wait: msBeforeNext, Retry-After, X-RateLimit-Reset; 1 if none."""
    try:
        errors = orjson.loads(response.content).get("errors") or []
        ms = errors[0].get("data", {}).get("msBeforeNext")
        if isinstance(ms, int | float) and ms >= 0:
            return float(ms) / 1000
    except (orjson.JSONDecodeError, AttributeError, IndexError, TypeError):
        pass
    retry_after = response.headers.get("Retry-After", "")
    if retry_after.strip().isdecimal():
        return float(retry_after.strip())
    reset = response.headers.get("X-RateLimit-Reset", "")
    if reset.strip().isdecimal():
        return float(reset.strip())
    try:
        moment = parsedate_to_datetime(reset)
    except (TypeError, ValueError, IndexError):
        return 1.0
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def _outcome(status: int) -> str:
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "unauthorized"
    if status == 404:
        return "not_found"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "invalid"


def _data_or_raise(response: _Response) -> dict[str, Any]:
    status = response.status_code
    try:
        document = orjson.loads(response.content) if response.content else {}
    except orjson.JSONDecodeError:
        document = None
    if 200 <= status < 300:
        if not isinstance(document, dict) or not isinstance(document.get("data", {}), dict):
            raise PublicApiError("malformed", MESSAGES["malformed"], status=status)
        return dict(document.get("data") or {})
    kind = _outcome(status)
    if kind in ("unauthorized", "not_found", "server_error"):
        raise PublicApiError(kind, MESSAGES[kind], status=status)
    raise PublicApiError("invalid", f"Segment refused the request: {_segment_message(document)}", status=status)


def _segment_message(document: Any) -> str:
    """Segment's own words for a 4xx, trimmed: they name the field to fix (never a secret of ours)."""
    try:
        message = str(document["errors"][0]["message"])
    except (KeyError, IndexError, TypeError):
        return "it did not say why."
    return message[:200]


def _rate_limited_message(wait: float) -> str:
    return f"Segment is limiting how often this token may call it: try again in {max(1, round(wait))} s."


def _timeout_message(seconds: float) -> str:
    return f"Segment did not answer within {max(1, round(seconds))} s: try again."


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _fill(template: str, args: dict[str, str]) -> str:
    path = template
    for name, value in args.items():
        path = path.replace("{" + name + "}", quote(str(value), safe=""))
    return path


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


# --- tolerant parsing: a wrong shape is "malformed", never a crash -------------------------


def _dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PublicApiError("malformed", MESSAGES["malformed"])
    return value


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PublicApiError("malformed", MESSAGES["malformed"])
    return value


def _str(value: Any) -> str:
    return value[:500] if isinstance(value, str) else ""


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PublicApiError("malformed", MESSAGES["malformed"]) from None


def _day(value: Any) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise PublicApiError("malformed", MESSAGES["malformed"]) from None


def _label(value: Any) -> Label:
    item = _dict(value)
    return Label(_str(item.get("key")), _str(item.get("value")))


def _source(value: Any) -> Source:
    item = _dict(value)
    if not _str(item.get("id")):
        raise PublicApiError("malformed", MESSAGES["malformed"])
    keys = tuple(k for k in _list(item.get("writeKeys")) if isinstance(k, str) and k)
    return Source(_str(item.get("id")), _str(item.get("slug")), _str(item.get("name")) or _str(item.get("slug")),
                  item.get("enabled") is True, keys, tuple(_label(x) for x in _list(item.get("labels"))),
                  _str(_dict(item.get("metadata")).get("name")))


def _destination(value: Any) -> Destination:
    item = _dict(value)
    return Destination(_str(item.get("id")), _str(item.get("name")), item.get("enabled") is True,
                       _str(_dict(item.get("metadata")).get("name")), _dict(item.get("settings")))


def _warehouse(value: Any) -> Warehouse:
    item = _dict(value)
    return Warehouse(_str(item.get("id")), _str(_dict(item.get("metadata")).get("name")),
                     item.get("enabled") is True, _dict(item.get("settings")))


def metric_windows(now: datetime) -> Iterator[tuple[str, str, datetime, datetime]]:
    """(label, granularity, start, end) for the windows Segment allows: 4 h by the minute,
    7 d by the hour, 14 d by the day, each ending now (to the second)."""
    end = now.astimezone(UTC).replace(microsecond=0)
    yield "Last 4 hours", "MINUTE", end - timedelta(hours=4), end
    yield "Last 7 days", "HOUR", end - timedelta(days=7), end
    yield "Last 14 days", "DAY", end - timedelta(days=14), end
