"""A log formatter that keeps structured `extra` fields as key=value pairs on one line."""
from __future__ import annotations

import logging
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
