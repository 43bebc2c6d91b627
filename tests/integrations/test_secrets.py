"""A canary write key goes through every page, the admin, checks on a real worker, e-mail and an
error report; then every response, log record, broker message and the database dump are
searched for it. The key may appear only where it must: the request to Segment itself."""
from __future__ import annotations

import logging
import secrets
import time
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from celery.signals import before_task_publish
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.views.debug import ExceptionReporter

from accounts.models import AuditEvent, User, Workspace
from integrations.models import Connection, Health, Verification

pytestmark = pytest.mark.django_db(transaction=True)


class Scan:
    """Collects everything the application said, to search it for the canary afterwards."""

    def __init__(self) -> None:
        self.texts: dict[str, list[str]] = {"pages": [], "broker": [], "reports": []}

    def page(self, client: Client, method: str, path: str, data: dict[str, Any] | None = None,
             **headers: str) -> Any:
        response = getattr(client, method)(path, data or {}, **headers)
        self.texts["pages"].append(f"{method.upper()} {path} {response.status_code}\n" + response.content.decode())
        return response

    def occurrences(self, canary: str) -> dict[str, int]:
        return {where: sum(text.count(canary) for text in texts) for where, texts in self.texts.items()}


@pytest.fixture
def broker_messages() -> Any:
    published: list[str] = []

    def record(body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        published.append(repr(body) + repr(headers))

    before_task_publish.connect(record, weak=False)
    yield published
    before_task_publish.disconnect(record)


def wait_until_checked(connection: Connection) -> Verification:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        run = Verification.objects.filter(connection=connection).order_by("-id").first()
        if run and not run.is_running:
            return run
        time.sleep(0.1)
    raise AssertionError("the check did not finish")


def test_the_canary_key_never_leaves_in_full(segment: Any, celery_worker: Any, caplog: Any, broker_messages: Any,
                                             alice: User, bob: User, workspace: Workspace) -> None:
    caplog.set_level(logging.DEBUG)
    canary = "CANARY" + secrets.token_hex(13)
    replacement = "CANARY" + secrets.token_hex(13)
    segment.register_key(canary, "eu")
    segment.register_key(replacement, "eu")
    alice.is_staff = alice.is_superuser = True
    alice.save()
    owner, member, scan = Client(), Client(), Scan()
    owner.force_login(alice)
    member.force_login(bob)

    def path(name: str, **kwargs: Any) -> str:
        return reverse(name, kwargs={"slug": workspace.slug, **kwargs})

    # Connect, and fail to connect it twice (the form comes back with errors).
    scan.page(owner, "get", path("integrations:connection_create"))
    scan.page(owner, "post", path("integrations:connection_create"),
              {"name": "Production", "write_key": canary, "region": "eu"})
    scan.page(owner, "post", path("integrations:connection_create"),
              {"name": "Staging", "write_key": canary, "region": "eu"})
    scan.page(owner, "post", path("integrations:connection_create"),
              {"name": "Broken", "write_key": canary + " tail", "region": "eu"})
    connection = Connection.objects.get()
    assert wait_until_checked(connection).outcome == "passed"
    pk = connection.pk

    # Every page of the connection, as owner and as member, including htmx partials.
    for client in (owner, member):
        for name in ("integrations:index", "audit_log", "members"):
            scan.page(client, "get", path(name))
        scan.page(client, "get", path("integrations:connection", pk=pk))
        scan.page(client, "get", path("integrations:connection_status", pk=pk), HTTP_HX_REQUEST="true")
        scan.page(client, "get", path("integrations:index"), HTTP_HX_REQUEST="true")
    scan.page(owner, "post", path("integrations:connection_check", pk=pk), HTTP_HX_REQUEST="true")
    wait_until_checked(connection)
    scan.page(owner, "post", path("integrations:connection_rename", pk=pk), {"name": "Production EU"})
    scan.page(owner, "post", path("integrations:connection_key", pk=pk), {"write_key": canary + " x", "region": "eu"})
    scan.page(owner, "post", path("integrations:connection_key", pk=pk), {"write_key": replacement, "region": "eu"})
    wait_until_checked(connection)
    scan.page(owner, "post", path("integrations:connection_key", pk=pk), {"write_key": canary, "region": "eu"})
    wait_until_checked(connection)
    scan.page(owner, "post", path("integrations:connection_enabled", pk=pk), {"enabled": "false"})
    scan.page(owner, "post", path("integrations:connection_enabled", pk=pk), {"enabled": "true"})
    scan.page(owner, "get", path("integrations:connection_delete", pk=pk))

    # The admin: lists, change pages, audit rows, and an action run by an operator.
    for admin_path in (reverse("admin:integrations_connection_changelist"),
                       reverse("admin:integrations_connection_change", args=[pk]),
                       reverse("admin:integrations_connection_changelist") + "?shared=yes",
                       reverse("admin:accounts_auditevent_changelist")):
        scan.page(owner, "get", admin_path)
    for event in AuditEvent.objects.all():
        scan.page(owner, "get", reverse("admin:accounts_auditevent_change", args=[event.pk]))
    scan.page(owner, "post", reverse("admin:integrations_connection_changelist"),
              {"action": "run_check", "_selected_action": [str(pk)]})
    wait_until_checked(connection)

    # A crash while the key is being handled: the error report must not quote it.
    with mock.patch("integrations.services._refuse_duplicates", side_effect=RuntimeError("boom")):
        crashing = Client(raise_request_exception=False)
        crashing.force_login(alice)
        response = scan.page(crashing, "post", path("integrations:connection_create"),
                             {"name": "Crash", "write_key": replacement, "region": "eu"})
    assert response.status_code == 500
    record = next(r for r in caplog.records if r.name == "django.request" and r.exc_info)
    exc_type, exc_value, traceback = record.exc_info
    report = ExceptionReporter(record.request, exc_type, exc_value, traceback, is_email=True)
    scan.texts["reports"] += [report.get_traceback_text(), report.get_traceback_html()]

    # Finally everything written down: logs, queued messages, mail, and the database itself.
    dump = StringIO()
    call_command("dumpdata", "accounts", "integrations", stdout=dump)
    found = {
        **scan.occurrences(canary),
        "logs": sum(r.getMessage().count(canary) + repr(r.__dict__).count(canary) for r in caplog.records),
        "broker": sum(message.count(canary) for message in broker_messages),
        "mail": sum(f"{m.subject}{m.body}".count(canary) for m in mail.outbox),
        "database": dump.getvalue().count(canary) + dump.getvalue().count(replacement),
        "reports": sum(text.count(canary) + text.count(replacement) for text in scan.texts["reports"]),
    }
    assert found == {"pages": 0, "broker": 0, "reports": 0, "logs": 0, "mail": 0, "database": 0}

    # The scan can see what it looks for: the key did reach Segment, and the pages were real.
    assert segment.events(write_key=canary), "the canary never reached the emulator"
    assert len(broker_messages) >= 5 and len(scan.texts["pages"]) > 30
    assert any(f"•••• {canary[-4:]}" in text for text in scan.texts["pages"])
    connection.refresh_from_db()
    assert connection.health == Health.HEALTHY
