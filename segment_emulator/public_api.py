"""Segment's Public API (api.segmentapis.com, eu1.api.segmentapis.com) on the emulator's
listeners: the listener is the region, as for the tracking API.

Answers as /work/shared/segment-management.md says Segment answers: `{"data": ...}` on success,
`{"errors": [{"type", "message"}]}` otherwise; 401 for a missing, unknown, other-region or
under-privileged token (Segment does not tell these apart); opaque `pagination.cursor`s;
`X-RateLimit-*` headers on every answer, and a 429 carrying `errors[0].data.msBeforeNext` and
an RFC 5322 `X-RateLimit-Reset`. Faults use the fault book with scope "public", keyed by token.
Requests are logged with kind "public" (never the token) and count in no tracking counter.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from datetime import UTC, date, datetime, timedelta
from email.utils import format_datetime
from http import HTTPStatus
from typing import Any, Final

import orjson
from aiohttp import web

from .appkeys import REGION, STATE
from .control import answer as control_answer
from .control import bad_request
from .faults import Fault
from .records import RequestRecord
from .state import EmulatorState
from .workspaces import (
    Token,
    WorkspaceError,
    destinations_of,
    schema_settings_of,
    warehouses_of,
    workspace_json,
)

DEFAULT_COUNT: Final = 200
MAX_COUNT: Final = 1000
RATE_LIMIT: Final = 600  # a minute; only shown in headers, never enforced (faults do that)
# The delivery-metrics windows Segment allows: granularity -> (longest window, oldest start).
METRIC_WINDOWS: Final = {
    "MINUTE": (timedelta(hours=4), timedelta(hours=48)),
    "HOUR": (timedelta(days=7), timedelta(days=7)),
    "DAY": (timedelta(days=14), timedelta(days=14)),
}


class ApiError(Exception):
    def __init__(self, status: int, message: str, error_type: str = "validation") -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


def add_routes(router: web.UrlDispatcher) -> None:
    routes = [
        ("GET", "/", workspace),
        ("GET", "/sources", list_sources),
        ("GET", "/sources/{source_id}", get_source),
        ("DELETE", "/sources/{source_id}", delete_source),
        ("POST", "/sources/{source_id}/labels", add_labels),
        ("GET", "/sources/{source_id}/connected-destinations", connected_destinations),
        ("GET", "/sources/{source_id}/connected-warehouses", connected_warehouses),
        ("GET", "/sources/{source_id}/settings", schema_settings),
        ("GET", "/labels", list_labels),
        ("POST", "/labels", create_label),
        ("GET", "/destinations/{destination_id}", get_destination),
        ("GET", "/destinations/{destination_id}/delivery-metrics", delivery_metrics),
        ("GET", "/usage/api-calls/sources/daily", daily_usage),
    ]
    for method, path, handler in routes:
        router.add_route(method, path, _endpoint(handler))


def _endpoint(handler: Any) -> Any:
    async def answer(request: web.Request) -> web.StreamResponse:
        state: EmulatorState = request.app[STATE]
        region = request.app[REGION]
        record = state.record(region, request.path_qs, "public", "", 200)
        state.log.append(record)  # the token is never logged; public calls count in no tracking counter
        try:
            token = _authenticate(request, state, region)
            fault = state.faults.take(token.token, "public", time.monotonic())
            if fault is not None:
                faulted = await _apply_fault(fault, record)
                if faulted is not None:
                    return faulted
            state.workspaces.sync(state.keys)
            data, status = await handler(request, state, token)
        except ApiError as error:
            record.status = error.status
            record.error = error.error_type
            return _errors(error.status, error.error_type, error.message)
        record.status = status
        return web.Response(body=orjson.dumps({"data": data}), status=status, content_type="application/json",
                            headers=_rate_headers(1))

    return answer


def _authenticate(request: web.Request, state: EmulatorState, region: str) -> Token:
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    token = state.workspaces.tokens.get(credential.strip()) if scheme.lower() == "bearer" else None
    # A token of the other region's workspace is as unknown here as a made-up one.
    if token is None or token.region != region:
        raise ApiError(HTTPStatus.UNAUTHORIZED, "Unauthorized", "unauthorized")
    return token


def _require(token: Token, action: str) -> None:
    if not token.may(action):
        # Segment answers 401 for a token lacking permission too.
        raise ApiError(HTTPStatus.UNAUTHORIZED, "Unauthorized: the token lacks permission for this operation",
                       "unauthorized")


async def _apply_fault(fault: Fault, record: RequestRecord) -> web.StreamResponse | None:
    record.fault = fault.label()
    if fault.latency_ms:
        await asyncio.sleep(fault.latency_ms / 1000)
    if not fault.status:
        return None
    record.status = fault.status
    if fault.status == HTTPStatus.TOO_MANY_REQUESTS:
        seconds = fault.retry_after if fault.retry_after is not None else (fault.seconds_left(time.monotonic()) or 1)
        body = {"errors": [{"type": "RequestError", "message": "Too many requests",
                            "data": {"msBeforeNext": seconds * 1000}}]}
        headers = _rate_headers(seconds, remaining=0)
        return web.Response(status=429, body=orjson.dumps(body), content_type="application/json", headers=headers)
    return _errors(fault.status, "fault", f"{HTTPStatus(fault.status).phrase} (emulated fault)")


def _rate_headers(reset_seconds: float, remaining: int = RATE_LIMIT - 1) -> dict[str, str]:
    reset = datetime.now(UTC) + timedelta(seconds=reset_seconds)
    return {"X-RateLimit-Consumed": str(RATE_LIMIT - remaining), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": format_datetime(reset, usegmt=True)}


def _errors(status: int, error_type: str, message: str) -> web.Response:
    body = orjson.dumps({"errors": [{"type": error_type, "message": message, "status": status}]})
    return web.Response(status=status, body=body, content_type="application/json")


# Paging ------------------------------------------------------------------------------------


def _page(request: web.Request, items: list[Any], what: str) -> tuple[list[Any], dict[str, Any]]:
    """One page of `items` and its pagination object; the cursor is opaque to clients."""
    raw_count = request.query.get("pagination.count", str(DEFAULT_COUNT))
    try:
        count = int(raw_count)
    except ValueError:
        count = 0
    if not 1 <= count <= MAX_COUNT:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"pagination.count must be from 1 to {MAX_COUNT}")
    offset = _decode_cursor(request.query.get("pagination.cursor"), what)
    page = items[offset:offset + count]
    pagination: dict[str, Any] = {"current": _cursor(offset, what), "totalEntries": len(items)}
    if offset + count < len(items):
        pagination["next"] = _cursor(offset + count, what)
    if offset:
        pagination["previous"] = _cursor(max(0, offset - count), what)
    return page, pagination


def _cursor(offset: int, what: str) -> str:
    return base64.urlsafe_b64encode(f"{what}:{offset}:emu".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None, what: str) -> int:
    if not cursor:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, offset, tag = decoded.split(":")
        if kind != what or tag != "emu" or int(offset) < 0:
            raise ValueError
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "pagination.cursor is not a cursor of this list") from None


# Handlers ----------------------------------------------------------------------------------

Answer = tuple[Any, int]


async def workspace(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    return {"workspace": workspace_json(token.region)}, 200


async def list_sources(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    page, pagination = _page(request, state.workspaces.sources_of(token.region), "sources")
    return {"sources": [s.as_json(token) for s in page], "pagination": pagination}, 200


def _source(request: web.Request, state: EmulatorState, token: Token) -> Any:
    source = state.workspaces.source(token.region, request.match_info["source_id"])
    if source is None:
        raise ApiError(HTTPStatus.NOT_FOUND, "Source not found", "not-found")
    return source


async def get_source(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    source = _source(request, state, token)
    return {"source": {**source.as_json(token), "trackingPlanId": None}}, 200


async def delete_source(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    source = _source(request, state, token)
    _require(token, "delete_source")
    del state.workspaces.sources[source.id]
    state.keys.pop(source.write_key, None)  # its key is no longer known to Segment
    return {"status": "SUCCESS"}, 200


async def add_labels(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    source = _source(request, state, token)
    _require(token, "label_source")
    labels = _labels_body(await _json(request), many=True)
    known = set(state.workspaces.labels[token.region])
    missing = [f"{k}:{v}" for k, v in labels if (k, v) not in known]
    if missing:
        raise ApiError(HTTPStatus.NOT_FOUND, f"Label not found: {', '.join(missing)}", "not-found")
    for label in labels:
        if label not in source.labels:
            source.labels.append(label)
    return {"labels": [{"key": k, "value": v} for k, v in source.labels]}, 200


async def list_labels(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    labels = [{"key": k, "value": v} for k, v in state.workspaces.labels[token.region]]
    page, pagination = _page(request, labels, "labels")
    return {"labels": page, "pagination": pagination}, 200


async def create_label(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    _require(token, "create_label")
    body = await _json(request)
    (label,) = _labels_body({"labels": [body.get("label")]}, many=True)
    labels = state.workspaces.labels[token.region]
    if label in labels:
        raise ApiError(HTTPStatus.CONFLICT, "Label already exists", "conflict")
    labels.append(label)
    return {"label": {"key": label[0], "value": label[1]}}, 201


def _labels_body(body: Any, *, many: bool) -> list[tuple[str, str]]:
    items = body.get("labels") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, 'expected {"labels": [{"key": "...", "value": "..."}]}')
    labels = []
    for item in items:
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(key, str) or not isinstance(value, str) or not key or not value:
            raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "a label has a non-empty key and value")
        labels.append((key, value))
    return labels


async def connected_destinations(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    page, pagination = _page(request, destinations_of(_source(request, state, token)), "destinations")
    return {"destinations": page, "pagination": pagination}, 200


async def connected_warehouses(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    page, pagination = _page(request, warehouses_of(_source(request, state, token)), "warehouses")
    return {"warehouses": page, "pagination": pagination}, 200


async def schema_settings(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    return schema_settings_of(_source(request, state, token)), 200


def _destination(state: EmulatorState, token: Token, destination_id: str) -> dict[str, Any]:
    for source in state.workspaces.sources_of(token.region):
        for destination in destinations_of(source):
            if destination["id"] == destination_id:
                return destination
    raise ApiError(HTTPStatus.NOT_FOUND, "Destination not found", "not-found")


async def get_destination(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    return {"destination": _destination(state, token, request.match_info["destination_id"])}, 200


async def delivery_metrics(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    """Successes and discards of the events the source's key sent in the window: what the
    emulator accepted and what it dropped (a disabled destination received nothing)."""
    destination = _destination(state, token, request.match_info["destination_id"])
    query = request.query
    if query.get("sourceId") != destination["sourceId"]:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "sourceId is not connected to this destination")
    granularity = query.get("granularity", "MINUTE")
    if granularity not in METRIC_WINDOWS:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "granularity must be MINUTE, HOUR or DAY")
    start, end = _time(query.get("startTime"), "startTime"), _time(query.get("endTime"), "endTime")
    longest, oldest = METRIC_WINDOWS[granularity]
    if not start < end or end - start > longest or start < datetime.now(UTC) - oldest - timedelta(minutes=5):
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY,
                       f"for {granularity} the window is at most {longest} and starts at most {oldest} ago")
    source = state.workspaces.source(token.region, destination["sourceId"])
    successes = discarded = 0
    if source is not None and destination["enabled"]:
        low, high = start.timestamp(), end.timestamp()
        for record in state.log:
            if record.kind == "tracking" and record.write_key == source.write_key and low <= record.time < high:
                successes += record.accepted
                discarded += sum(record.dropped.values())
    return {"deliveryMetricsSummary": {
        "sourceId": destination["sourceId"],
        "destinationMetadataId": destination["metadata"]["id"],
        "metrics": [
            {"metricName": "successes", "total": successes, "breakdown": []},
            {"metricName": "discarded", "total": discarded, "breakdown": []},
        ],
    }}, 200


async def daily_usage(request: web.Request, state: EmulatorState, token: Token) -> Answer:
    """Per source and day of the month `period` starts, API calls so far in that month
    (cumulative, as Segment reports them), as strings holding integers."""
    try:
        period = date.fromisoformat(request.query.get("period", "")[:10])
    except ValueError:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "period must be a date such as 2026-12-01") from None
    if period.day != 1:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, "period must be the first day of a month")
    today = datetime.now(UTC).date()
    rows = []
    for source in state.workspaces.sources_of(token.region):
        running, day = 0, period
        while day.month == period.month and day <= today:
            running += state.workspaces.daily_calls.get((source.write_key, day.isoformat()), 0)
            rows.append({"sourceId": source.id, "apiCalls": str(running),
                         "timestamp": f"{day.isoformat()}T00:00:00Z"})
            day += timedelta(days=1)
    page, pagination = _page(request, rows, "usage")
    return {"dailyPerSourceAPICallsUsage": page, "pagination": pagination}, 200


def _time(raw: str | None, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat((raw or "").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{name} must be an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def _json(request: web.Request) -> Any:
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise ApiError(HTTPStatus.BAD_REQUEST, "the body must be JSON") from None


# Control API -------------------------------------------------------------------------------


def add_control_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_emulator/tokens", list_tokens)
    router.add_post("/_emulator/tokens", add_token)
    router.add_delete("/_emulator/tokens/{token}", revoke_token)
    router.add_post("/_emulator/sources", add_sources)


async def list_tokens(request: web.Request) -> web.Response:
    tokens = request.app[STATE].workspaces.tokens.values()
    return control_answer({"tokens": [{"token": t.token, "role": t.role, "region": t.region} for t in tokens]})


async def add_token(request: web.Request) -> web.Response:
    body = await _control_body(request)
    token, role, region = body.get("token"), body.get("role", "owner"), body.get("region", "us")
    if not isinstance(token, str) or not isinstance(role, str) or not isinstance(region, str):
        raise bad_request('expected {"token": "...", "role": "owner"|"source_admin"|"read_only", "region": "us"|"eu"}')
    try:
        request.app[STATE].workspaces.add_token(token, role, region)
    except WorkspaceError as error:
        raise bad_request(str(error)) from None
    return control_answer({"token": token, "role": role, "region": region}, HTTPStatus.CREATED)


async def revoke_token(request: web.Request) -> web.Response:
    if not request.app[STATE].workspaces.revoke_token(request.match_info["token"]):
        return control_answer({"error": "unknown token"}, HTTPStatus.NOT_FOUND)
    return control_answer({"revoked": True})


async def add_sources(request: web.Request) -> web.Response:
    """{"writeKey", "region", "name"}: register a key as a named source; or {"count": n,
    "region", "prefix"}: n sources at once (keys `<prefix>000001`...), for paging tests."""
    state: EmulatorState = request.app[STATE]
    body = await _control_body(request)
    region = body.get("region", "us")
    count = body.get("count")
    try:
        if count is not None:
            if type(count) is not int or not 1 <= count <= 100_000:
                raise WorkspaceError('"count" must be an integer from 1 to 100000')
            prefix = str(body.get("prefix") or "bulkSource")
            for number in range(1, count + 1):
                write_key = f"{prefix}{number:06d}"
                state.register_key(write_key, region)
                state.workspaces.name_source(write_key, f"{prefix} {number:06d}")
            return control_answer({"created": count}, HTTPStatus.CREATED)
        key, name = body.get("writeKey"), body.get("name")
        if not isinstance(key, str) or not isinstance(name, str) or not name:
            raise WorkspaceError('expected {"writeKey": "...", "region": "us"|"eu", "name": "..."}')
        state.register_key(key, region)
        state.workspaces.name_source(key, name)
    except (WorkspaceError, ValueError) as error:
        raise bad_request(str(error)) from None
    state.workspaces.sync(state.keys)
    source = next(s for s in state.workspaces.sources.values() if s.write_key == key)
    return control_answer({"id": source.id, "name": source.name, "region": source.region}, HTTPStatus.CREATED)


async def _control_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body
