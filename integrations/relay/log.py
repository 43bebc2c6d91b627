"""Appending to a workspace's event log, and waking the connections that deliver from it."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import IntegrityError, transaction
from django.utils import timezone
from kombu.exceptions import OperationalError

from integrations.models import Connection, Event, EventStream
from integrations.relay.messages import Message

logger = logging.getLogger(__name__)


@dataclass
class Appended:
    stored: int = 0
    duplicates: list[str] = field(default_factory=list)


def events_append(*, workspace_id: int, messages: Sequence[Message],
                  dedupe_keys: Sequence[str | None] | None = None) -> Appended:
    """Store events in the caller's transaction (or a new one); skip messageIds and dedupe
    keys the workspace already has. Connections are woken once the transaction commits.

    1. lock the workspace's stream row, so seqs are handed out in commit order;
    2. drop messages whose messageId (or dedupe key) is already in the log or earlier in this batch;
    3. insert the rest in one statement and move the stream's end.
    """
    keys = list(dedupe_keys) if dedupe_keys is not None else [None] * len(messages)
    result = Appended()
    with transaction.atomic():
        stream = _locked_stream(workspace_id)
        fresh = _without_duplicates(workspace_id, list(zip(messages, keys, strict=True)), result)
        rows = [
            Event(workspace_id=workspace_id, seq=stream.last_seq + offset, message_id=m.message_id, type=m.type,
                  name=m.name, user_id=m.user_id, body=m.body, size=len(m.body), received_at=m.received_at,
                  dedupe_key=key)
            for offset, (m, key) in enumerate(fresh, start=1)
        ]
        if rows:
            Event.objects.bulk_create(rows)
            EventStream.objects.filter(pk=stream.pk).update(last_seq=stream.last_seq + len(rows))
            transaction.on_commit(lambda: connections_wake(workspace_id=workspace_id))
        result.stored = len(rows)
    return result


def _locked_stream(workspace_id: int) -> EventStream:
    stream = EventStream.objects.select_for_update().filter(workspace_id=workspace_id).first()
    if stream is not None:
        return stream
    try:
        with transaction.atomic():
            EventStream.objects.create(workspace_id=workspace_id)
    except IntegrityError:
        pass  # created by a concurrent first event
    return EventStream.objects.select_for_update().get(workspace_id=workspace_id)


def _without_duplicates(workspace_id: int, pairs: list[tuple[Message, str | None]],
                        result: Appended) -> list[tuple[Message, str | None]]:
    ids = {m.message_id for m, _ in pairs}
    keys = {k for _, k in pairs if k}
    known = set(Event.objects.filter(workspace_id=workspace_id, message_id__in=ids).values_list("message_id", flat=True))
    known_keys = set(Event.objects.filter(workspace_id=workspace_id, dedupe_key__in=keys)
                     .values_list("dedupe_key", flat=True)) if keys else set()
    fresh = []
    for message, key in pairs:
        if message.message_id in known or (key and key in known_keys):
            result.duplicates.append(message.message_id)
            continue
        known.add(message.message_id)
        if key:
            known_keys.add(key)
        fresh.append((message, key))
    return fresh


def queue_delivery(connection_id: int, *, countdown: float | None = None) -> bool:
    """Ask a worker to deliver; best effort. The event is already stored when this runs, so a
    broker that is down must not fail the emitter: the sweeper finds the backlog instead.
    No publish retries either, so an unreachable broker cannot stall the request."""
    from integrations.tasks import deliver_connection

    try:
        if countdown is None:
            deliver_connection.apply_async((connection_id,), retry=False)
        else:
            deliver_connection.apply_async((connection_id,), countdown=countdown, retry=False)
    except OperationalError:
        logger.warning("relay.wake_lost", extra={"connection_id": connection_id})
        return False
    return True


def connections_wake(*, workspace_id: int) -> int:
    """Queue one delivery task per enabled connection that is not already awake.

    `wake_queued_at` coalesces wake-ups: a burst of a thousand requests queues one task per
    connection, not a thousand. The delivery task clears it when it starts reading.
    """
    woken = 0
    candidates = Connection.objects.filter(workspace_id=workspace_id, enabled=True, wake_queued_at__isnull=True)
    for pk in candidates.values_list("pk", flat=True):
        if Connection.objects.filter(pk=pk, wake_queued_at__isnull=True).update(wake_queued_at=timezone.now()):
            woken += queue_delivery(pk)
    return woken


def connection_wake_now(*, connection_id: int) -> None:
    """Queue a delivery run whatever `wake_queued_at` says: after a pause or a disable it may
    still be set by a wake-up that found the connection unable to send."""
    Connection.objects.filter(pk=connection_id).update(wake_queued_at=timezone.now())
    queue_delivery(connection_id)
