"""The project's Celery settings work on RabbitMQ (CELERY_BROKER_URL=amqp://…), not only Redis:
a process loading the settings with an amqp URL publishes a task by name, as a web process
does, and a real `celery --app config worker` on the same settings runs it against the test
database. Skipped when no RabbitMQ answers (TRIBUTARY_TEST_AMQP_URL, default the local guest)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.config.test_worker_start import group_is_gone, stop
from tests.integrations.relay.processes import REPO_ROOT, process_environment, wait_for

AMQP_URL = os.environ.get("TRIBUTARY_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
START_TIMEOUT = 90.0  # a cold worker on a busy two-core machine

pytestmark = pytest.mark.django_db(transaction=True)


def rabbitmq_answers() -> bool:
    parts = urlsplit(AMQP_URL)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5672), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture
def amqp_queue() -> Iterator[str]:
    """A queue of the test's own, deleted afterwards, so no other worker on the vhost takes its task."""
    if not rabbitmq_answers():
        pytest.skip(f"no RabbitMQ at {urlsplit(AMQP_URL).netloc.rsplit('@', 1)[-1]}")
    name = f"tributary-test-{uuid.uuid4().hex[:12]}"
    yield name
    from kombu import Connection

    with Connection(AMQP_URL, connect_timeout=5) as connection:
        channel: Any = connection.channel()  # kombu's stubs lack the amqp channel's methods
        with suppress(Exception):
            channel.queue_delete(name)
        with suppress(Exception):
            channel.exchange_delete(name)


def environment(tmp_path: Path) -> dict[str, str]:
    return process_environment(tmp_path, CELERY_BROKER_URL=AMQP_URL)


# Run in a process of its own with the environment above: what a web process does with the
# settings (tasks are not imported there; Celery sends by name).
PUBLISH = """
import django, json
django.setup()
from celery import current_app
from django.conf import settings
result = current_app.signature("integrations.tasks.sweep_relay", options={"queue": QUEUE, "retry": False}).apply_async()
conf = current_app.conf
print(json.dumps({"id": result.id, "broker": conf.broker_url.split("://")[0],
                  "transport": current_app.connection_for_write().transport_cls,
                  "backend": str(conf.result_backend), "ignore_result": conf.task_ignore_result,
                  "settings_broker": settings.CELERY_BROKER_URL.split("://")[0]}))
"""


def test_the_celery_settings_publish_and_run_a_task_on_rabbitmq(tmp_path: Path, amqp_queue: str) -> None:
    env = environment(tmp_path)
    log = tmp_path / "worker.log"
    command = [sys.executable, "-m", "celery", "--app", "config", "worker", "--loglevel", "INFO", "--pool",
               "prefork", "--concurrency", "1", "--queues", amqp_queue, "--hostname", f"{amqp_queue}@%h",
               "--without-mingle", "--without-gossip", "--without-heartbeat"]
    with log.open("wb") as output:
        worker = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: worker.poll() is None and " ready." in log.read_text(errors="replace"), START_TIMEOUT,
                 "the worker on RabbitMQ printing ' ready.'",
                 logs=lambda: f"exit code {worker.poll()}\n" + log.read_text(errors="replace"))
        assert "amqp://" in log.read_text(errors="replace")  # its banner names the transport it connected to

        published = subprocess.run([sys.executable, "-c", f"QUEUE = {amqp_queue!r}\n" + PUBLISH], cwd=REPO_ROOT,
                                   env=env, capture_output=True, text=True, timeout=120, check=False)
        assert published.returncode == 0, published.stderr
        sent = json.loads(published.stdout.strip().splitlines()[-1])
        assert sent["broker"] == "amqp" and sent["settings_broker"] == "amqp"
        assert "amqp" in sent["transport"].lower()
        assert sent["ignore_result"] is True and sent["backend"] in ("None", "disabled://")

        # The worker ran it: Django set up in the pool, the relay's sweep queried the database.
        done = f"Task integrations.tasks.sweep_relay[{sent['id']}] succeeded"
        wait_for(lambda: done in log.read_text(errors="replace"), START_TIMEOUT, "the task run by the worker",
                 logs=lambda: log.read_text(errors="replace"))
        text = log.read_text(errors="replace")
        assert "Traceback" not in text and "ERROR" not in text, text
    finally:
        stop(worker)
    assert group_is_gone(worker.pid)
