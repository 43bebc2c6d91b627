"""A Celery worker whose FIELD_ENCRYPTION_KEYS cannot read the stored write keys never starts:
it exits non-zero, saying what to fix, before it takes a task or forks its pool. Real `celery
worker` processes on the test's database and broker."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import suppress
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

from accounts.models import User, Workspace
from integrations import crypto
from integrations.models import Connection
from tests.conftest import new_write_key
from tests.integrations.relay.processes import REPO_ROOT, process_environment, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

START_TIMEOUT = 90.0  # a cold worker on a busy two-core machine


def store_connection(alice: User, workspace: Workspace, write_key: str) -> Connection:
    """A connection whose write key is encrypted with the test settings' key. Saved directly,
    not through the service, so no check is queued for a worker to pick up."""
    connection = Connection(workspace=workspace, name="Production", region="us", created_by=alice)
    connection.set_write_key(write_key)
    connection.save()
    return connection


def worker(tmp_path: Path, keys: str, log: Path) -> subprocess.Popen[bytes]:
    """`celery --app config worker` as the Procfile starts it (prefork), on a queue of its own so
    it cannot take another test's tasks, in a session of its own so its pool can be stopped."""
    name = f"start-check-{uuid.uuid4().hex[:8]}"
    # No emulator: nothing this worker could do may reach the network.
    env = process_environment(tmp_path, FIELD_ENCRYPTION_KEYS=keys)
    command = [sys.executable, "-m", "celery", "--app", "config", "worker", "--loglevel", "INFO",
               "--pool", "prefork", "--concurrency", "2", "--queues", name, "--hostname", f"{name}@%h",
               "--without-mingle", "--without-gossip"]
    with log.open("wb") as output:
        return subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def group_is_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_worker_with_other_encryption_keys_exits_before_taking_any_task(
        tmp_path: Path, alice: User, workspace: Workspace) -> None:
    store_connection(alice, workspace, new_write_key())
    stored_with = crypto.key_id(settings.FIELD_ENCRYPTION_KEYS[0])
    other_key = Fernet.generate_key().decode()
    log = tmp_path / "worker.log"

    process = worker(tmp_path, other_key, log)
    try:
        process.wait(timeout=START_TIMEOUT)
    finally:
        stop(process)
    output = log.read_text(errors="replace")

    assert process.returncode == 1, output
    assert "Celery worker refused to start" in output
    assert f"encrypted with key id(s) {stored_with}, which FIELD_ENCRYPTION_KEYS does not contain" in output
    assert "same FIELD_ENCRYPTION_KEYS" in output
    assert " ready." not in output and "Connected to" not in output
    # No pool child was forked to outlive it, and no key is printed.
    assert group_is_gone(process.pid)
    assert other_key not in output and settings.FIELD_ENCRYPTION_KEYS[0] not in output


def test_a_worker_with_the_keys_that_stored_them_starts(tmp_path: Path, alice: User, workspace: Workspace) -> None:
    store_connection(alice, workspace, new_write_key())
    log = tmp_path / "worker.log"
    # A new first key that encrypts from now on, and the old one that still decrypts.
    keys = f"{Fernet.generate_key().decode()},{settings.FIELD_ENCRYPTION_KEYS[0]}"

    process = worker(tmp_path, keys, log)
    try:
        wait_for(lambda: process.poll() is None and " ready." in log.read_text(errors="replace"),
                 START_TIMEOUT, "the worker printing ' ready.'",
                 logs=lambda: f"exit code {process.poll()}\n" + log.read_text(errors="replace"))
    finally:
        stop(process)
    assert "refused to start" not in log.read_text(errors="replace")
