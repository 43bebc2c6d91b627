"""The control API under /_emulator/: keys, faults, and what was received. JSON in and out."""

from __future__ import annotations

import os
import time
from http import HTTPStatus
from typing import Any

import msgspec
import orjson
from aiohttp import web

from .appkeys import LISTENERS, REGION, STATE
from .faults import FaultError, fault_from_json

MAX_LIMIT = 100_000
# Events are listed in one answer up to this many: enough for a bench to check every event of a
# phase (a run of several hundred thousand) without paging.
MAX_EVENTS_LIMIT = 1_000_000


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/_emulator/health", health)
    router.add_get("/_emulator/keys", list_keys)
    router.add_post("/_emulator/keys", add_key)
    router.add_delete("/_emulator/keys/{write_key}", remove_key)
    router.add_get("/_emulator/requests", list_requests)
    router.add_get("/_emulator/events", list_events)
    router.add_get("/_emulator/stats", stats)
    router.add_get("/_emulator/faults", list_faults)
    router.add_post("/_emulator/faults", add_fault)
    router.add_delete("/_emulator/faults", clear_faults)
    router.add_delete("/_emulator/faults/{write_key}", clear_faults)
    router.add_post("/_emulator/reset", reset)


def answer(data: Any, status: int = HTTPStatus.OK) -> web.Response:
    # msgspec, not orjson: what was received is echoed back, and JSON allows integers past
    # 64 bits (a messageId of 2**70, say), which orjson refuses to write.
    return web.Response(body=msgspec.json.encode(data), status=status, content_type="application/json")


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(body=orjson.dumps({"error": message}), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    listeners = request.app[LISTENERS]
    return answer({"ok": True, "region": request.app[REGION], "listeners": listeners, "pid": os.getpid()})


async def list_keys(request: web.Request) -> web.Response:
    keys = request.app[STATE].keys
    return answer({"keys": [{"writeKey": key, "region": region} for key, region in keys.items()]})


async def add_key(request: web.Request) -> web.Response:
    body = await _json_body(request)
    write_key, region = body.get("writeKey"), body.get("region", "us")
    if not isinstance(write_key, str) or not isinstance(region, str):
        raise bad_request('expected {"writeKey": "...", "region": "us" | "eu"}')
    try:
        request.app[STATE].register_key(write_key, region)
    except ValueError as error:
        raise bad_request(str(error)) from None
    return answer({"writeKey": write_key, "region": region}, HTTPStatus.CREATED)


async def remove_key(request: web.Request) -> web.Response:
    write_key = request.match_info["write_key"]
    if not request.app[STATE].unregister_key(write_key):
        return answer({"error": "unknown write key"}, HTTPStatus.NOT_FOUND)
    return answer({"deleted": True, "writeKey": write_key})


async def list_requests(request: web.Request) -> web.Response:
    query = request.query
    kind = query.get("kind")
    if kind not in (None, "tracking", "settings", "public"):
        raise bad_request('"kind" is "tracking", "settings" or "public"')
    records = request.app[STATE].requests(
        write_key=query.get("writeKey"),
        since=_int_param(request, "since", 0),
        limit=_int_param(request, "limit", 1_000, MAX_LIMIT),
        kind=kind,
        message_id=query.get("messageId"),
    )
    # The newest id of all, not of the matches: a cursor to pass as "since" next time.
    return answer({"requests": [r.as_json() for r in records], "lastId": request.app[STATE].last_request_id})


async def list_events(request: web.Request) -> web.Response:
    events = request.app[STATE].events.find(
        request.query.get("writeKey"),
        request.query.get("messageId"),
        _int_param(request, "limit", 1_000, MAX_EVENTS_LIMIT),
    )
    return answer({"events": events})


async def stats(request: web.Request) -> web.Response:
    return answer(request.app[STATE].stats(request.query.get("writeKey")))


async def list_faults(request: web.Request) -> web.Response:
    now = time.monotonic()
    return answer({"faults": [f.describe(now) for f in request.app[STATE].faults.active(now)]})


async def add_fault(request: web.Request) -> web.Response:
    now = time.monotonic()
    try:
        fault = fault_from_json(await _json_body(request), now)
    except FaultError as error:
        raise bad_request(str(error)) from None
    request.app[STATE].faults.add(fault)
    return answer({"fault": fault.describe(now)}, HTTPStatus.CREATED)


async def clear_faults(request: web.Request) -> web.Response:
    cleared = request.app[STATE].faults.clear(request.match_info.get("write_key"))
    return answer({"cleared": cleared})


async def reset(request: web.Request) -> web.Response:
    body = await _json_body(request) if request.can_read_body else {}
    keys = body.get("keys") is True
    request.app[STATE].reset(keys=keys)
    return answer({"reset": True, "keysCleared": keys})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise bad_request("the body must be JSON") from None
    if not isinstance(body, dict):
        raise bad_request("the body must be a JSON object")
    return body


def _int_param(request: web.Request, name: str, default: int, high: int = 2**62) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f'"{name}" must be an integer') from None
    if not 0 <= value <= high:
        raise bad_request(f'"{name}" must be from 0 to {high}')
    return value
