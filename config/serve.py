"""The production web server: granian serving config.wsgi (`python -m config.serve`, the
Procfile's web).

granian is an HTTP server written in Rust with a WSGI interface: parsing requests, keep-alive
and writing answers happen outside Python, so a small request costs less of the core than
under a pure-Python server (a signed single-event webhook about 0.9 ms of the web process's
CPU against 1.3 ms under gunicorn's gthread workers on the same machine; README: Performance).
Each worker is one process with one Python thread serving requests: ingest is CPU-bound
Python, so threads would only contend for the GIL; about three processes per core keep the
cores busy while others wait on PostgreSQL. A body is read only as far as the application
reads it, so a request refused on its declared length is never buffered.

Environment (command-line options win, for the benches and tests):
  WEB_BIND          address to listen on, host:port (default 0.0.0.0:$PORT, PORT defaulting to 8000)
  WEB_CONCURRENCY   worker processes (default three per core available to this process)
  WEB_ACCESS_LOG    true to write an access log line per request on stdout (default false:
                    the proxy in front logs requests, and this log cost about a fifth of a
                    single-event request's CPU here)

The access log never holds a secret. Segment's libraries send the ingest key as the Basic-auth
user name, and query strings, headers, a password-reset link's token and an unsigned webhook
endpoint's URL can carry secrets too. granian's access-log format can name any header; here the
log's records go through `SecretFreeAccess`, which keeps an allow-list of fields and the path
without its secrets, so a format changed later prints "-" for the rest.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from config.logging import secret_free_path

APPLICATION = "config.wsgi:application"
ACCESS_FORMAT = ('%(time)s granian.access remote=%(addr)s method=%(method)s path="%(path)s" status=%(status)s '
                 'duration_ms=%(dt_ms).1f')
# Graceful stop: requests in flight get this long before a worker is killed.
STOP_SECONDS = 30
BACKLOG = 2048

_SAFE_FIELDS = ("addr", "time", "dt_ms", "status", "method", "scheme", "protocol")


class _Fields(dict[str, Any]):
    """An access-log record's fields: any name not kept formats as "-"."""

    def __missing__(self, name: str) -> str:
        return "-"


class SecretFreeAccess(logging.Filter):
    """Keeps only the allow-listed fields of granian's access-log record, and the path without
    its secrets: no query string, no header, whatever the format asks for."""

    def filter(self, record: logging.LogRecord) -> bool:
        every = record.args if isinstance(record.args, dict) else {}
        safe = _Fields({name: every[name] for name in _SAFE_FIELDS if name in every})
        safe["path"] = secret_free_path(str(every.get("path") or "/"))
        record.args = safe
        return True


LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"secret_free": {"()": SecretFreeAccess}},
    "formatters": {
        "server": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "access": {"format": "%(message)s"},
    },
    "handlers": {
        "server": {"class": "logging.StreamHandler", "formatter": "server", "stream": "ext://sys.stdout"},
        "access": {"class": "logging.StreamHandler", "formatter": "access", "stream": "ext://sys.stdout",
                   "filters": ["secret_free"]},
    },
    "loggers": {
        "_granian": {"handlers": ["server"], "level": "INFO", "propagate": False},
        "granian.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}


def default_workers() -> int:
    return int(os.environ.get("WEB_CONCURRENCY") or 3 * len(os.sched_getaffinity(0)))


def default_bind() -> str:
    return os.environ.get("WEB_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"


def server_options(*, bind: str, workers: int, application: str = APPLICATION) -> dict[str, Any]:
    """granian's settings for production, as keyword arguments of granian.server.Server."""
    host, _, port = bind.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"WEB_BIND must be host:port, such as 0.0.0.0:8000; got {bind!r}.")
    return {
        "target": application,
        "address": host.strip("[]"),
        "port": int(port),
        "interface": "wsgi",
        "workers": workers,
        "blocking_threads": 1,
        "runtime_threads": 1,
        "websockets": False,
        "backlog": BACKLOG,
        "respawn_failed_workers": True,
        "workers_kill_timeout": STOP_SECONDS,
        "log_dictconfig": LOGGING,
        "log_access": os.environ.get("WEB_ACCESS_LOG", "false").lower() in ("1", "true", "yes", "on"),
        "log_access_format": ACCESS_FORMAT,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m config.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bind", default=None, help="host:port (default: WEB_BIND, else 0.0.0.0:$PORT)")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: WEB_CONCURRENCY, "
                        "else three per core)")
    parser.add_argument("--application", default=APPLICATION, help="the WSGI application, module:attribute")
    args = parser.parse_args(argv)
    from granian.server import Server

    options = server_options(bind=args.bind or default_bind(), workers=args.workers or default_workers(),
                             application=args.application)
    Server(**options).serve()


if __name__ == "__main__":
    main()
