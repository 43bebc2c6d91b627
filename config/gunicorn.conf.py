"""gunicorn's settings for production: `gunicorn -c config/gunicorn.conf.py` (the Procfile's web).

Command-line options win over these, so one run can still change a value (the relay bench
sets its own worker count). Environment:
  GUNICORN_BIND     address to listen on (default 0.0.0.0:$PORT, PORT defaulting to 8000)
  WEB_CONCURRENCY   worker processes (default three per core available to this process)

The access log never holds a secret. Segment's libraries send the ingest key as the Basic-auth
user name, which gunicorn's default format prints (`%(u)s`), and query strings, referrers,
headers and a password-reset link's token can carry secrets too. So the log's format leaves
them out, and `SecretFreeLogger` hands the format only the atoms below: a format changed later
(by an operator, say with `%(u)s` or `%({authorization}i)s`) prints "-" for the rest.
"""
from __future__ import annotations

import os
import re
from typing import Any

from gunicorn.glogging import Logger

wsgi_app = "config.wsgi:application"
bind = [os.environ.get("GUNICORN_BIND") or f"0.0.0.0:{os.environ.get('PORT') or 8000}"]

# Ingest is CPU-bound Python: single-threaded workers, about three per core, so threads never
# contend for the GIL. gthread rather than sync because sync workers close the connection
# after every response, and every Segment library relies on keep-alive.
workers = int(os.environ.get("WEB_CONCURRENCY") or 3 * len(os.sched_getaffinity(0)))
worker_class = "gthread"
threads = 1
keepalive = 75  # longer than the idle timeout of common load balancers (60 s), so they close first
backlog = 2048
# No control socket (gunicornc): every gunicorn of a user shares its default path.
control_socket_disable = True
# Heartbeat files in memory: a worker on a slow disk is not mistaken for a hung one.
if os.path.isdir("/dev/shm"):  # noqa: S108 (gunicorn's own advice; its files hold no secret)
    worker_tmp_dir = "/dev/shm"  # noqa: S108
# No preload_app: config.wsgi checks the encryption keys against the database at import, and a
# database connection opened in the master would be shared by every forked worker. A worker
# that fails that check exits, and gunicorn stops ("Worker failed to boot").

accesslog = "-"  # stdout, one line per request
errorlog = "-"
access_log_format = (
    '%(t)s gunicorn.access remote=%(h)s method=%(m)s path="%(U)s" status=%(s)s bytes=%(b)s duration_ms=%(M)s'
)

# Path segments that are secrets: the token of a password-reset link (Django swaps it for
# "set-password" after the first visit), and the token of an unsigned webhook endpoint's URL.
_SECRET_PATHS = [re.compile(r"^(/account/password/reset/[^/]+/)(?!set-password/)[^/]+"),
                 re.compile(r"^(/webhooks/in/[^/]+/)[^/]+")]
_SAFE_ATOMS = ("h", "l", "t", "s", "m", "H", "b", "B", "T", "D", "M", "L", "p", "a")


def secret_free_path(path: str) -> str:
    for pattern in _SECRET_PATHS:
        path = pattern.sub(r"\1[redacted]", path)
    return path


class SecretFreeLogger(Logger):  # type: ignore[misc]  # gunicorn ships no type hints
    """gunicorn's logger with an allow-list of access-log atoms: no user name, query string,
    referrer, request or response headers, or environ; the path without its secrets."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> dict[str, Any]:
        every = super().atoms(resp, req, environ, request_time)
        safe = {name: every[name] for name in _SAFE_ATOMS if name in every}
        path = secret_free_path(str(environ.get("PATH_INFO") or "/"))
        safe.update({"u": "-", "q": "-", "f": "-", "U": path,
                     "r": f"{environ.get('REQUEST_METHOD')} {path} {environ.get('SERVER_PROTOCOL')}"})
        return safe


logger_class = SecretFreeLogger
