"""Background work through a real Celery worker and the configured broker."""
from __future__ import annotations

import time
from typing import Any

import pytest
from django.core import mail

from accounts import services
from accounts.audit import Actor
from accounts.models import Role, User, Workspace
from config.celery_app import app
from tests.conftest import wait_for


@pytest.mark.django_db(transaction=True)
def test_adding_a_member_emails_them_through_the_worker(celery_worker: Any, alice: User,
                                                        workspace: Workspace) -> None:
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="dora@example.com",
                            role=Role.MEMBER)
    wait_for(lambda: len(mail.outbox) == 1)
    message = mail.outbox[0]
    assert message.to == ["dora@example.com"]
    assert "Alice Analytics" in message.subject
    assert "/account/password/reset/" in message.body  # an invitee gets a link to choose a password


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_sends_nothing(celery_worker: Any, alice: User, workspace: Workspace) -> None:
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        services.membership_add(actor=Actor(user=alice), workspace=workspace, email="eve@example.com",
                                role=Role.MEMBER)
        raise RuntimeError("abort")
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="fay@example.com",
                            role=Role.MEMBER)
    wait_for(lambda: len(mail.outbox) >= 1)
    time.sleep(0.5)
    assert [m.to for m in mail.outbox] == [["fay@example.com"]]


def test_tasks_use_json_and_time_limits_below_the_visibility_timeout() -> None:
    conf = app.conf
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    assert conf.task_soft_time_limit < conf.task_time_limit < visibility


@pytest.mark.django_db
def test_every_periodic_task_is_a_registered_task() -> None:
    app.loader.import_default_modules()  # also runs Django's system checks, as a worker does
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled and scheduled <= set(app.tasks)
