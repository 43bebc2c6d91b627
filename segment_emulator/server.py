"""The emulator's HTTP side: Segment's tracking API and CDN on a US and an EU listener."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import struct
import time
from http import HTTPStatus
from typing import Final

import orjson
from aiohttp import web

from . import cdn, control, public_api, rules
from .appkeys import LISTENERS, REGION, STATE
from .faults import Fault
from .intake import read_tracking_request
from .records import RequestRecord
from .state import EmulatorState

logger = logging.getLogger("segment_emulator")

# Large enough that a body over Segment's 500 KB limit reaches our handler and gets
# Segment's 400, rather than aiohttp's own 413.
MAX_REQUEST_BYTES: Final = 16 * 1024 * 1024
SUCCESS: Final = b'{"success": true}'
TRACKING_PATH: Final = "/v1/{call:" + "|".join(sorted(rules.TRACKING_CALLS)) + "}"


async def track(request: web.Request) -> web.StreamResponse:
    """POST /v1/<call>: Segment's answers, including its silent 200-and-drop ones."""
    state = request.app[STATE]
    raw = await request.read()
    intake = read_tracking_request(request.match_info["call"], request.headers, raw)
    record = state.record(request.app[REGION], request.path, "tracking", intake.write_key, 200)
    if rules.is_usable_write_key(intake.write_key):
        fault = state.faults.take(intake.write_key, "tracking", time.monotonic())
        if fault is not None:
            answer = await _apply_fault(request, fault, record)
            if answer is not None:
                state.refuse(record, intake, None, record.fault)
                return answer
    if intake.error:
        record.status = 400
        state.refuse(record, intake, intake.error, record.fault)
        return _error(HTTPStatus.BAD_REQUEST, intake.error, rules.ERROR_MESSAGES[intake.error])
    state.accept(record, intake)
    return web.Response(body=SUCCESS, content_type="application/json")


async def settings(request: web.Request) -> web.StreamResponse:
    """GET /v1/projects/<writeKey>/settings, as Segment's CDN answers it."""
    state = request.app[STATE]
    write_key = request.match_info["write_key"]
    record = state.record(request.app[REGION], request.path, "settings", write_key, 200)
    fault = state.faults.take(write_key, "cdn", time.monotonic())
    if fault is not None:
        answer = await _apply_fault(request, fault, record)
        if answer is not None:
            state.commit(record)
            return answer
    region = state.keys.get(write_key)
    if region is None:
        record.status = 404
        state.commit(record)
        return web.Response(status=HTTPStatus.NOT_FOUND, text=cdn.UNKNOWN_KEY_BODY)
    state.commit(record)
    return web.Response(
        body=orjson.dumps(cdn.settings_document(write_key, region)), content_type="application/json"
    )


async def _apply_fault(
    request: web.Request, fault: Fault, record: RequestRecord
) -> web.StreamResponse | None:
    """Delay, then answer as the fault says; None lets a latency-only fault carry on normally."""
    record.fault = fault.label()
    if fault.latency_ms:
        # The handler is not cancelled if the client gives up meanwhile, so a request the
        # client timed out on is still processed, as a slow Segment would.
        await asyncio.sleep(fault.latency_ms / 1000)
    if fault.reset:
        record.status = None
        return _abort(request)
    if fault.status:
        record.status = fault.status
        headers = fault.rate_limit_headers(time.monotonic()) if fault.status == 429 else {}
        return _error(
            fault.status, rules.FAULT, f"{HTTPStatus(fault.status).phrase} (emulated fault)", headers
        )
    return None


def _abort(request: web.Request) -> web.StreamResponse:
    """Drop the connection with a TCP reset, without a byte of answer."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0 turns close() into an RST, which clients see as "connection reset".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # aiohttp cannot write this to the aborted transport and lets it go quietly.
    return web.Response(status=HTTPStatus.NO_CONTENT)


def _error(status: int, error: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps({"success": False, "error": error, "message": message})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def build_app(state: EmulatorState, region: str, listeners: dict[str, str]) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[STATE] = state
    app[REGION] = region
    app[LISTENERS] = listeners
    app.router.add_post(TRACKING_PATH, track)
    app.router.add_get("/v1/projects/{write_key}/settings", settings)
    control.add_routes(app.router)
    public_api.add_control_routes(app.router)
    public_api.add_routes(app.router)
    return app


async def serve(state: EmulatorState, host: str, ports: dict[str, int]) -> None:
    """Run both listeners on this loop until SIGINT or SIGTERM."""
    listeners: dict[str, str] = {}
    runners: list[web.AppRunner] = []
    try:
        for region, port in ports.items():
            runner = await _listen(build_app(state, region, listeners), host, port)
            runners.append(runner)
            listeners[region] = f"http://{host}:{runner.addresses[0][1]}"
        us_url = listeners["us"]
        logger.info(
            "emulator.started",
            extra={"us": us_url, "eu": listeners["eu"], "cdn": us_url, "control": f"{us_url}/_emulator/"},
        )
        await _wait_for_stop_signal()
    finally:
        for runner in runners:
            await runner.cleanup()
        logger.info("emulator.stopped", extra={"requests": state.total.requests})


async def _listen(app: web.Application, host: str, port: int) -> web.AppRunner:
    # auto_decompress off: intake inflates gzip itself, with a size cap and a 400 for a body
    # that is not gzip after all (aiohttp would answer 500).
    runner = web.AppRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=1.0, auto_decompress=False
    )
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError:
        await runner.cleanup()
        raise
    return runner


async def _wait_for_stop_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
