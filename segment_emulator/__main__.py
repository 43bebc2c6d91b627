"""`python -m segment_emulator`: run the Segment emulator in the foreground."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .dedupe import DEFAULT_MAX_IDS, DEFAULT_WINDOW_SECONDS
from .server import serve
from .state import DEFAULT_MAX_EVENTS, DEFAULT_MAX_REQUESTS, EmulatorOptions, EmulatorState

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3

# Attributes every LogRecord has; anything else came in through `extra=` and is printed.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """`time level event key=value ...`: one greppable line per structured log call."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRIBUTES}
        return " ".join([line, *(f"{k}={v}" for k, v in fields.items())])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m segment_emulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address both listeners bind to")
    parser.add_argument("--us-port", type=int, default=9100, help="US listener (api.segment.io); 0 picks one")
    parser.add_argument("--eu-port", type=int, default=9101, help="EU listener (events.eu1.segmentapis.com)")
    parser.add_argument(
        "--register",
        action="append",
        default=[],
        metavar="KEY:REGION",
        help="register a write key in region us or eu; repeatable",
    )
    parser.add_argument(
        "--keys-file", type=Path, help='JSON: {"KEY": "us", ...} or [{"writeKey", "region"}, ...]'
    )
    parser.add_argument(
        "--public-token",
        action="append",
        default=[],
        metavar="TOKEN:ROLE:REGION",
        help="a Public API bearer token; ROLE owner, source_admin or read_only; repeatable",
    )
    parser.add_argument(
        "--source-name",
        action="append",
        default=[],
        metavar="KEY=NAME",
        help="the Public API name of the source of a registered write key; repeatable",
    )
    parser.add_argument(
        "--max-events",
        type=int,
        default=DEFAULT_MAX_EVENTS,
        help="accepted events kept for inspection (counters stay exact beyond it)",
    )
    parser.add_argument(
        "--max-requests", type=int, default=DEFAULT_MAX_REQUESTS, help="requests kept in the request log"
    )
    parser.add_argument(
        "--dedupe-window",
        type=float,
        default=DEFAULT_WINDOW_SECONDS,
        metavar="SECONDS",
        help="how long an accepted messageId makes repeats duplicates (default 24 h)",
    )
    parser.add_argument(
        "--dedupe-max-ids",
        type=int,
        default=DEFAULT_MAX_IDS,
        help="messageIds remembered at most; the oldest are forgotten first",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def initial_keys(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.keys_file:
        yield from _keys_from_document(json.loads(args.keys_file.read_text()))
    for item in args.register:
        write_key, _, region = item.rpartition(":")
        yield write_key, region.lower()


def _keys_from_document(document: Any) -> Iterator[tuple[str, str]]:
    if isinstance(document, dict) and isinstance(document.get("keys"), list):
        document = document["keys"]  # the shape GET /_emulator/keys answers
    if isinstance(document, dict):
        yield from document.items()
    else:
        yield from ((item["writeKey"], item.get("region", "us")) for item in document)


def build_state(args: argparse.Namespace) -> EmulatorState:
    options = EmulatorOptions(
        max_events=args.max_events,
        max_requests=args.max_requests,
        dedupe_window_seconds=args.dedupe_window,
        dedupe_max_ids=args.dedupe_max_ids,
    )
    state = EmulatorState(options)
    for write_key, region in initial_keys(args):
        state.register_key(write_key, region)
    for item in args.public_token:
        token, role, region = item.rsplit(":", 2)
        state.workspaces.add_token(token, role, region.lower())
    for item in args.source_name:
        write_key, _, name = item.partition("=")
        state.workspaces.name_source(write_key, name)
    return state


def tune_for_throughput() -> None:
    """Process-wide settings for the hot path; each one shows in bench/emulator.py's events/s."""
    # Parsed events live for one request. With the default threshold a collection starts in
    # the middle of parsing a 500-event batch and walks thousands of live objects.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    # glibc serves a ~150 KB request body with mmap and returns it with munmap, so every
    # request paid for page faults on fresh memory; keep such buffers on the heap instead.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 128 * 1024 * 1024)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler])
    try:
        state = build_state(args)
    except (OSError, ValueError, KeyError, TypeError) as error:
        print(f"segment emulator: {error}", file=sys.stderr)
        return 2
    tune_for_throughput()
    try:
        asyncio.run(serve(state, args.host, {"us": args.us_port, "eu": args.eu_port}))
    except KeyboardInterrupt:  # Ctrl-C before the loop's own handler was in place
        pass
    except OSError as error:
        logging.getLogger("segment_emulator").error("emulator.cannot_listen %s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
