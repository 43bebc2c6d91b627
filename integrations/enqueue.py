"""Start Celery work by the task's registered name: the one way a lower floor starts work above it.

The relay log waking delivery, a service queueing a check, a replay or an import pass, and a
notice to send all come through here instead of importing `integrations.tasks`, which imports
them: so imports run one way (ARCH.md), and this module imports nothing of ours.

Each name is the name `integrations.tasks` registers its task under (it declares them with these
constants). Beat schedules and messages already in the broker carry them: never rename one.
"""
from __future__ import annotations

from typing import Any

from celery import current_app

VERIFY_CONNECTION = "integrations.tasks.verify_connection"
DELIVER_CONNECTION = "integrations.tasks.deliver_connection"
NOTIFY_CONNECTION_PAUSED = "integrations.tasks.notify_connection_paused"
REPLAY_DEAD_LETTERS = "integrations.tasks.replay_dead_letters"
CHECK_IMPORT = "integrations.tasks.check_import"
RUN_IMPORT = "integrations.tasks.run_import"
SEND_DELIVERY_NOTICE = "integrations.tasks.send_delivery_notice"
FORWARD_VIOLATIONS = "integrations.tasks.forward_violations"

NAMES = (VERIFY_CONNECTION, DELIVER_CONNECTION, NOTIFY_CONNECTION_PAUSED, REPLAY_DEAD_LETTERS, CHECK_IMPORT,
         RUN_IMPORT, SEND_DELIVERY_NOTICE, FORWARD_VIOLATIONS)


def _send(name: str, *args: Any, countdown: float | None = None, retry: bool = True) -> None:
    """Publish one task message. Where the task is registered (a worker) this is the task's own
    apply_async; elsewhere (a web process, which never imports the tasks) the message is sent by
    name. `retry=False`: fail at once with kombu's OperationalError when the broker is down, for
    callers whose work a sweeper finds anyway."""
    options: dict[str, Any] = {"retry": retry}
    if countdown is not None:
        options["countdown"] = countdown
    current_app.signature(name, args=args, options=options).apply_async()


def verify_connection(verification_id: int) -> None:
    _send(VERIFY_CONNECTION, verification_id)


def deliver_connection(connection_id: int, *, countdown: float | None = None, retry: bool = True) -> None:
    _send(DELIVER_CONNECTION, connection_id, countdown=countdown, retry=retry)


def notify_connection_paused(connection_id: int) -> None:
    _send(NOTIFY_CONNECTION_PAUSED, connection_id)


def replay_dead_letters(replay_id: int) -> None:
    _send(REPLAY_DEAD_LETTERS, replay_id)


def check_import(job_id: int, *, retry: bool = True) -> None:
    _send(CHECK_IMPORT, job_id, retry=retry)


def run_import(job_id: int, *, retry: bool = True) -> None:
    _send(RUN_IMPORT, job_id, retry=retry)


def send_delivery_notice(audit_event_id: int) -> None:
    _send(SEND_DELIVERY_NOTICE, audit_event_id)


def forward_violations(connection_id: int, *, retry: bool = True) -> None:
    _send(FORWARD_VIOLATIONS, connection_id, retry=retry)
