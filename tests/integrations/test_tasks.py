"""Work is queued by task name (integrations.enqueue), so the names must be the ones the worker
registers, and the ones beat and messages already in the broker use: renaming a task would
leave them undelivered."""
from __future__ import annotations

from typing import Any

import pytest
from kombu.exceptions import OperationalError

from config.celery_app import app
from integrations import enqueue, tasks
from integrations.relay import wake

# What beat schedules and in-flight messages carry today; these names never change.
REGISTERED_NAMES = {
    "integrations.tasks.verify_connection", "integrations.tasks.verify_all_connections",
    "integrations.tasks.retry_unfinished_checks", "integrations.tasks.expire_stale_verifications",
    "integrations.tasks.deliver_connection", "integrations.tasks.sweep_relay",
    "integrations.tasks.notify_connection_paused", "integrations.tasks.relay_retention",
    "integrations.tasks.replay_dead_letters", "integrations.tasks.check_import", "integrations.tasks.run_import",
    "integrations.tasks.sweep_imports", "integrations.tasks.check_delivery_notices",
    "integrations.tasks.send_delivery_notice", "integrations.tasks.trim_public_api_calls",
    "integrations.tasks.forward_violations",
}


@pytest.fixture(scope="module")
def registered() -> set[str]:
    """The task names a worker registers: what autodiscovery finds in the installed apps."""
    app.autodiscover_tasks(force=True)
    return {name for name in app.tasks if not name.startswith("celery.")}


def test_every_name_the_enqueue_module_sends_is_a_registered_task(registered: set[str]) -> None:
    constants = {value for name, value in vars(enqueue).items() if name.isupper() and isinstance(value, str)}
    assert constants == set(enqueue.NAMES)
    assert set(enqueue.NAMES) <= registered


def test_the_task_names_are_those_beat_and_queued_messages_use(registered: set[str]) -> None:
    assert {name for name in registered if name.startswith("integrations.")} == REGISTERED_NAMES
    assert {entry["task"] for entry in app.conf.beat_schedule.values()} <= registered


def test_each_name_runs_the_task_of_that_name(registered: set[str]) -> None:
    assert app.tasks[enqueue.DELIVER_CONNECTION].run is tasks.deliver_connection.run
    assert app.tasks[enqueue.SEND_DELIVERY_NOTICE].run is tasks.send_delivery_notice.run


def test_a_wake_up_the_broker_cannot_take_is_lost_quietly_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """The relay's wake-ups are best effort (the sweeper finds the backlog): a broker that is down
    must not fail the request that stored the events."""
    sent: list[tuple[Any, ...]] = []

    def broker_down(*args: Any, **kwargs: Any) -> None:
        sent.append((args, kwargs))
        raise OperationalError("broker unreachable")

    monkeypatch.setattr(app, "send_task", broker_down)
    # As in a web process, which never imports the tasks: the message is sent by name.
    monkeypatch.delitem(app.tasks, enqueue.DELIVER_CONNECTION, raising=False)
    assert wake.queue_delivery(42) is False
    [(args, kwargs)] = sent
    assert args == (enqueue.DELIVER_CONNECTION, (42,), {}) and kwargs["retry"] is False
