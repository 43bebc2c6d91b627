"""What `make run`'s console keeps: beat's every-few-seconds housekeeping stays out of it unless
it fails, so a worker's log shows deliveries, checks and e-mails."""
from __future__ import annotations

import logging

from config.logging import ROUTINE_TASKS, RoutineTasksFilter


def trace(task: str, level: int = logging.INFO) -> logging.LogRecord:
    """A record as Celery's task tracer writes it (the task's details in `data`)."""
    return logging.makeLogRecord({"name": "celery.app.trace", "levelno": level, "levelname": logging.getLevelName(level),
                                  "msg": "Task %(name)s succeeded", "data": {"name": task, "id": "1"}})


def test_the_local_console_leaves_out_routine_sweeps_but_keeps_deliveries_and_failures() -> None:
    keep = RoutineTasksFilter()
    assert all(not keep.filter(trace(task)) for task in ROUTINE_TASKS)
    assert keep.filter(trace("integrations.tasks.deliver_connection"))
    assert keep.filter(trace("integrations.tasks.sweep_relay", logging.ERROR))


def test_no_log_line_carries_a_paths_secret_segment() -> None:
    """As runserver logs a request (make run) and django.request a refusal: the token of an
    unsigned webhook URL, a sign-up link and a reset link are taken out; the rest stays."""
    from django.conf import settings

    from config.logging import SecretFreePaths

    for configured in (settings.LOGGING["handlers"]["django.server"], settings.LOGGING["handlers"]["console"]):
        assert "secret_free_paths" in configured["filters"]
    lines = {
        '"POST /webhooks/in/wh_abc/tok3n-Secret HTTP/1.1" 200 58': '"POST /webhooks/in/wh_abc/[redacted] HTTP/1.1"',
        '"GET /account/signup/confirm/12-9f8e7d/ HTTP/1.1" 200 9': '"GET /account/signup/confirm/[redacted]/ HTTP/1.1"',
        '"GET /account/password/reset/MQ/c9x-4f2a/ HTTP/1.1" 302 0':
            '"GET /account/password/reset/MQ/[redacted]/ HTTP/1.1"',
        '"GET /account/password/reset/MQ/set-password/ HTTP/1.1" 200 9':
            '"GET /account/password/reset/MQ/set-password/ HTTP/1.1"',
        '"POST /v1/batch HTTP/1.1" 200 58': '"POST /v1/batch HTTP/1.1"',
    }
    for line, kept in lines.items():
        request_line, status, size = line.rsplit(" ", 2)
        record = logging.makeLogRecord({"name": "django.server", "msg": '%s %s %s',
                                        "args": (request_line, status, size)})
        assert SecretFreePaths().filter(record) is True
        assert record.getMessage() == f"{kept} {status} {size}"
    refused = logging.makeLogRecord({"name": "django.request", "msg": "Gone: %s",
                                     "args": ("/account/signup/confirm/12-9f8e7d/",)})
    SecretFreePaths().filter(refused)
    assert refused.getMessage() == "Gone: /account/signup/confirm/[redacted]/"
