"""Helpers the connection page tests share: URLs, waiting, a connection's recorded attempts
and dead letters, reading figures and the health word off a page, and a real worker's
deliveries to the emulator with faults."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.ingest.messages import normalise
from integrations.models import AttemptOutcome, Connection, DeadLetter, DeliveryAttempt, Health
from integrations.relay.accounting import Sent, attempt_record, failures_record
from integrations.relay.log import events_append
from tests.conftest import new_write_key, wait_for


def url(name: str, workspace: Workspace, **kwargs: int) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})



def checked(connection: Connection) -> Connection:
    """Run the connection's queued check here, against the emulator, as the worker would."""
    assert connection.latest_verification is not None
    services.verification_run(verification_id=connection.latest_verification.pk)
    connection.refresh_from_db()
    return connection


def dead_letter(connection: Connection, seq: int, *, ago: timedelta = timedelta(0), replayed: bool = False) -> DeadLetter:
    """A dead letter as delivery leaves it (and counts it), optionally delivered by a replay since."""
    at = timezone.now() - ago
    failures_record(connection_id=connection.pk, at=at, events=1)
    return DeadLetter.objects.create(connection=connection, seq=seq, message_id=f"m{seq}", type="track", name="Huge",
                                     body=b"{}", reason="refused", status=400, created_at=at,
                                     replays=1 if replayed else 0, replayed_at=timezone.now() if replayed else None)


def record(connection: Connection, *, ago: timedelta = timedelta(0), events: int = 10, status: int | None = 200,
           outcome: AttemptOutcome = AttemptOutcome.DELIVERED, latency: float = 0.2, attempt: int = 1,
           replay: bool = False, reply: str = '{"success":true}') -> DeliveryAttempt:
    """One request to Segment as delivery records it, at a chosen time."""
    return attempt_record(connection_id=connection.pk, sent=Sent(1, events, events, events * 300),
                          started_at=timezone.now() - ago, duration_ms=40, status=status, outcome=outcome,
                          reply=reply, attempt=attempt, latencies=[latency] * events, replay=replay)


def figures(page: str) -> dict[str, str]:
    """The figures table's cells by their data-figure name, e.g. "delivered-hour"."""
    return dict(re.findall(r'data-figure="([\w-]+)">([^<]*)<', page))


def state(page: str) -> str:
    found = re.search(r'data-testid="health-word"[^>]*>([^<]+)<', page)
    assert found, "no delivery state on the page"
    return found.group(1)


def deliver_with_faults(segment: Any, alice: User, workspace: Workspace, settings: Any) -> tuple[Connection, str]:
    """Through a real worker to the emulator: 5 events delivered at once; 3 after Segment
    answered 503 twice; a 40 KB event Segment refuses with 400, bisected out and
    dead-lettered; 1 more delivered after it. 9 delivered, 1 dead letter, 6 retried.

    Whether that last event shares a batch with the refused one (one 400 or two) depends on
    timing. Segment's timeout is raised from the fixture's 1 s, so a loaded machine cannot
    add a "no answer" retry to the two 503s."""
    settings.SEGMENT_TIMEOUT_SECONDS = 10.0
    key = new_write_key()
    segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=key)
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health == Health.HEALTHY)

    def delivered() -> int:
        return Connection.objects.get(pk=connection.pk).delivered_seq

    with transaction.atomic():
        for n in range(5):
            emit.track(workspace, "Order Completed", user_id=f"u{n}")
    wait_for(lambda: delivered() == 5)

    segment.set_fault(key, status=503, count=2)
    with transaction.atomic():
        for n in range(3):
            emit.track(workspace, "Checkout Started", user_id=f"u{n}")
    wait_for(lambda: delivered() == 8)

    # Planted as an older release would have stored it: ingest now refuses what Segment would.
    huge = normalise({"type": "track", "event": "Huge", "userId": "u1"}, received_at=timezone.now())
    with transaction.atomic():
        events_append(workspace_id=workspace.pk,
                      messages=[huge._replace(body=huge.body[:-1] + b',"properties":{"blob":"' + b"x" * 40_000 + b'"}}')])
    emit.track(workspace, "After", user_id="u1")
    wait_for(lambda: delivered() == 10)
    return Connection.objects.get(pk=connection.pk), key


def admin_rows(client: Client, model: str, **query: str) -> str:
    response = client.get(reverse(f"admin:integrations_{model}_changelist"), query)
    assert response.status_code == 200
    return response.content.decode()
