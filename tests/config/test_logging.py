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
