"""HTTP calls to Segment. The write key travels only in the Authorization header or the
CDN path; no exception, log line or return value here ever carries it."""
from __future__ import annotations

import email.utils
import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from integrations.segment.regions import api_base

LIBRARY = {"name": "tributary", "version": "0.1.0"}
BODY_EXCERPT = 300


class SegmentUnreachable(Exception):
    """No answer from Segment. `reason` is "timeout" or "connection"; never the URL."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Segment did not answer ({reason})")
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status: int
    body: str
    retry_after: int | None = None

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None


def _timeout() -> tuple[float, float]:
    seconds = float(settings.SEGMENT_TIMEOUT_SECONDS)
    return (min(seconds, 3.05), seconds)


def _answer(response: requests.Response, keep_body: int | None = BODY_EXCERPT) -> Answer:
    body = response.text if keep_body is None else response.text[:keep_body]
    return Answer(response.status_code, body, parse_retry_after(response.headers.get("Retry-After")))


_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per thread: the relay sends many batches to few hosts."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        if not urllib.request.getproxies():
            # No proxy configured: read the CA bundle once rather than letting requests read the
            # whole environment on every request (a quarter of a small delivery run's CPU).
            session.trust_env = False
            session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    return session


@sensitive_variables("url", "kwargs")
def _send(method: str, url: str, **kwargs: Any) -> requests.Response:
    try:
        return _session().request(method, url, timeout=_timeout(), allow_redirects=False, **kwargs)
    except requests.Timeout:
        raise SegmentUnreachable("timeout") from None
    except requests.RequestException:
        # The exception's text names the URL, and a CDN URL contains the write key.
        raise SegmentUnreachable("connection") from None


@sensitive_variables("write_key", "url")
def fetch_source_settings(write_key: str) -> Answer:
    """Segment's CDN settings of the source a write key belongs to (404: unknown key)."""
    url = f"{str(settings.SEGMENT_CDN).rstrip('/')}/projects/{write_key}/settings"
    return _answer(_send("GET", url), keep_body=None)


@sensitive_variables("write_key")
def post(region: str, write_key: str, path: str, payload: dict[str, Any] | bytes) -> Answer:
    """POST one call (`track`, `batch`, …) to the region's tracking API with Basic auth."""
    body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    response = _send(
        "POST",
        f"{api_base(region)}/{path.lstrip('/')}",
        data=body,
        auth=(write_key, ""),
        headers={"Content-Type": "application/json", "User-Agent": f"tributary/{LIBRARY['version']}"},
    )
    return _answer(response)


def parse_retry_after(value: str | None) -> int | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), capped at 300 s."""
    if not value:
        return None
    value = value.strip()
    if value.isdecimal():  # not isdigit(): int() refuses digits such as "²"
        seconds = int(value)
    else:
        try:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
        except (TypeError, ValueError, IndexError):  # neither form: as if there were none
            return None
        if parsed is None:
            return None
        seconds = int(parsed.timestamp() - time.time())
    return max(0, min(seconds, 300))
