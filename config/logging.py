"""A log formatter that keeps structured `extra` fields as key=value pairs on one line."""
from __future__ import annotations

import logging
import re
from enum import Enum
from typing import Any

from django.http import HttpRequest

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: _plain(v) for k, v in vars(record).items() if k not in _STANDARD}
        if fields:
            line += " " + " ".join(f"{k}={v!r}" for k, v in sorted(fields.items()))
        return line


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, HttpRequest):
        # Django's request logs pass the request itself, whose repr holds the query string: a
        # place secrets travel in. Method and path say which request it was.
        return f"{value.method} {value.path}"
    return value


# Path segments that are secrets: the token of a password-reset link (Django swaps it for
# "set-password" after the first visit), of a sign-up link, and of an unsigned webhook
# endpoint's URL. Matched anywhere in a string, so a request line is cleaned as a path is.
_SECRET_PATHS = [re.compile(r"(/account/password/reset/[^/\s]+/)(?!set-password/)[^/\s]+"),
                 re.compile(r"(/account/signup/confirm/)[^/\s]+"),
                 re.compile(r"(/webhooks/in/[^/\s]+/)[^/\s?]+")]


def secret_free_path(path: str) -> str:
    for pattern in _SECRET_PATHS:
        path = pattern.sub(r"\1[redacted]", path)
    return path


class SecretFreePaths(logging.Filter):
    """Takes the secret segments out of paths in a record's arguments: runserver's access
    lines (`"POST /webhooks/in/wh_…/<token> HTTP/1.1" 200 58`) and django.request's
    "Not Found: <path>"."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(arg, str) and "/" in arg for arg in record.args):
            record.args = tuple(secret_free_path(arg) if isinstance(arg, str) else arg for arg in record.args)
        return True


# Beat's housekeeping tasks, run every few seconds: their "received" and "succeeded" lines
# would be a third of a worker's log and bury what matters (a failure is still logged).
ROUTINE_TASKS = ("integrations.tasks.sweep_relay", "integrations.tasks.sweep_imports",
                 "integrations.tasks.retry_unfinished_checks")


class RoutineTasksFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        data = getattr(record, "data", None)
        name = data.get("name") if isinstance(data, dict) else None
        return name not in ROUTINE_TASKS
