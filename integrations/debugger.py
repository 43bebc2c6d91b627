"""Reads for the event debugger: the workspace's latest events, and for one event what each
connection sent and what Segment answered.

Every query is bounded whatever the log's size: the list walks the (workspace, seq) index
backwards from the log's end; a messageId is one probe of the (workspace, message_id) index;
a search by name or user id looks only at the latest SEARCH_WINDOW events. An event's trail
per connection comes from the connection's position, its dead letters (unique on connection
and seq) and the attempt log (index on connection and started_at), searched from the moment
the event was received.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import orjson
from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Workspace
from integrations.models import Connection, DeadLetter, DeliveryAttempt, Event, EventStream
from integrations.relay import delivery

PAGE_SIZE = 50
SEARCH_WINDOW = 10_000
SEARCH_FIELDS = {"name": "Event name", "user_id": "User id", "message_id": "messageId"}
LIST_COLUMNS = ("id", "workspace_id", "seq", "message_id", "type", "name", "user_id", "size", "received_at")
# An event's attempts start after it was received; the margin covers clocks of different hosts.
CLOCK_MARGIN = timedelta(minutes=1)
# Attempts read after the first one that carried the event: its retries and split halves
# come next, before delivery moves past it.
TRAIL_ATTEMPTS = 30
# Connections whose trail is worked out for one event; a workspace rarely has more.
TRAIL_CONNECTIONS = 25


@dataclass(frozen=True)
class Search:
    field: str = ""  # a key of SEARCH_FIELDS
    text: str = ""

    @property
    def active(self) -> bool:
        return bool(self.field in SEARCH_FIELDS and self.text)

    @property
    def windowed(self) -> bool:
        """Name and user id are searched among the latest SEARCH_WINDOW events only."""
        return self.active and self.field != "message_id"

    def apply(self, events: QuerySet[Event]) -> QuerySet[Event]:
        if not self.active:
            return events
        if self.field == "name":
            return events.filter(name__icontains=self.text)
        return events.filter(**{self.field: self.text})


def log_end(*, workspace: Workspace) -> int:
    return EventStream.objects.filter(workspace=workspace).values_list("last_seq", flat=True).first() or 0


def _listed(workspace: Workspace) -> QuerySet[Event]:
    return Event.objects.filter(workspace=workspace).only(*LIST_COLUMNS)


def events_latest(*, workspace: Workspace, search: Search | None = None, limit: int = PAGE_SIZE) -> list[Event]:
    """Newest first."""
    search = search or Search()
    events = _listed(workspace)
    if search.active and search.field == "message_id":
        return list(events.filter(message_id=search.text)[:1])
    if search.windowed:
        events = search.apply(events.filter(seq__gt=log_end(workspace=workspace) - SEARCH_WINDOW))
    return list(events.order_by("-seq")[:limit])


@dataclass
class Arrivals:
    events: list[Event]
    # Events that arrived after `after` but are not in `events` (more than a page since the
    # last poll); None when unknown (a search).
    skipped: int | None = 0


def events_after(*, workspace: Workspace, after: int, search: Search | None = None,
                 limit: int = PAGE_SIZE) -> Arrivals:
    """What arrived since the list's newest row (seq `after`), newest first."""
    search = search or Search()
    if search.active and search.field == "message_id":
        return Arrivals([])  # one event, found once: nothing arrives under the same messageId
    end = log_end(workspace=workspace)
    if end <= after:
        return Arrivals([])
    since = max(after, end - SEARCH_WINDOW) if search.windowed else after
    events = list(search.apply(_listed(workspace).filter(seq__gt=since, seq__lte=end)).order_by("-seq")[:limit])
    skipped = None if search.active else max(0, end - after - len(events))
    return Arrivals(events, skipped)


def event_get_for_workspace(*, workspace: Workspace, seq: int) -> Event:
    try:
        return Event.objects.get(workspace=workspace, seq=seq)
    except Event.DoesNotExist:
        raise Http404("No such event: it may have been trimmed from the log.") from None


def payload_as_received(event: Event) -> dict[str, Any]:
    """The stored body turned back into what the emitter sent: its messageId at the top, its
    own `context.library` back in place, and Tributary's `context.tributary` gone. Fields
    Tributary adds when accepting an event (`receivedAt`, `timestamp` for an event without
    one, `originalTimestamp` when it corrected the sender's clock) stay: they are part of the
    event as stored and sent."""
    body = orjson.loads(bytes(event.body))
    context = dict(body.get("context") or {})
    relay = context.pop("tributary", None) or {}
    library = relay.get("library")
    if library is not None:
        context["library"] = library
    else:
        context.pop("library", None)
    body.pop("context", None)
    received: dict[str, Any] = {"messageId": relay.get("messageId", event.message_id), **body}
    if context:
        received["context"] = context
    return received


def pretty(document: Any) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def sent_message_id(event: Event, connection: Connection) -> str:
    return delivery.sent_message_id(delivery.connection_namespace(connection.pk), event.message_id).decode()


def sent_payload(event: Event, connection: Connection) -> str:
    """The event exactly as the connection sends it (`delivery.wire`), indented."""
    wire = delivery.wire(bytes(event.body), sent_message_id(event, connection).encode())
    return pretty(orjson.loads(wire))


@dataclass
class Trail:
    """Received → Sent → Segment replied, for one connection."""

    connection: Connection
    state: str  # before, delivered, waiting, dead
    message_id: str = ""
    sent: str = ""
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    dead_letter: DeadLetter | None = None

    @property
    def reply(self) -> DeliveryAttempt | None:
        """Segment's latest answer about the event."""
        return self.attempts[-1] if self.attempts else None


def event_trails(*, event: Event, connections: Iterable[Connection]) -> list[Trail]:
    chosen = list(connections)[:TRAIL_CONNECTIONS]
    dead = {d.connection_id: d for d in DeadLetter.objects.filter(
        connection_id__in=[c.pk for c in chosen], seq=event.seq).defer("body")}
    trails = []
    for connection in chosen:
        if connection.created_at > event.received_at:
            trails.append(Trail(connection, "before"))
            continue
        trail = Trail(connection, "waiting", message_id=sent_message_id(event, connection),
                      sent=sent_payload(event, connection), dead_letter=dead.get(connection.pk))
        trail.attempts = attempts_for_event(connection=connection, event=event)
        if trail.dead_letter is not None:
            trail.state = "dead"
        elif event.seq <= connection.delivered_seq:
            trail.state = "delivered"
        trails.append(trail)
    return trails


def attempts_for_event(*, connection: Connection, event: Event) -> list[DeliveryAttempt]:
    """The relay's requests that carried the event, oldest first (replays left out: a replay
    batch spans scattered seqs).

    1. the first attempt started after the event was received whose range reaches its seq;
       attempts go out in log order, so it is the first that carried the event (or, when its
       range starts after the seq, the event was passed without a request: it expired);
    2. the attempts that follow it, up to the first that starts past the seq: retries and
       the halves of a split batch."""
    attempts = DeliveryAttempt.objects.filter(connection=connection, replay=False)
    first = (attempts.filter(started_at__gte=event.received_at - CLOCK_MARGIN, last_seq__gte=event.seq)
             .order_by("started_at", "id").first())
    if first is None or first.first_seq > event.seq:
        return []
    carried = []
    for attempt in attempts.filter(started_at__gte=first.started_at).order_by("started_at", "id")[:TRAIL_ATTEMPTS]:
        if attempt.first_seq > event.seq:
            break
        if attempt.last_seq >= event.seq:
            carried.append(attempt)
    return carried


@dataclass
class RowStatus:
    label: str  # Sent, Waiting, Dead letter, No source
    tone: str  # for the badge: sent, waiting, dead, none


def row_statuses(*, events: list[Event], connections: list[Connection]) -> dict[int, RowStatus]:
    """A one-word status per listed event, from the connections' positions and one query for
    the dead letters among the listed seqs."""
    seqs = [e.seq for e in events]
    dead = set(DeadLetter.objects.filter(connection_id__in=[c.pk for c in connections], seq__in=seqs)
               .values_list("seq", flat=True)) if seqs and connections else set()
    statuses = {}
    for event in events:
        relevant = [c for c in connections if c.created_at <= event.received_at]
        if not relevant:
            statuses[event.seq] = RowStatus("No source", "none")
        elif event.seq in dead:
            statuses[event.seq] = RowStatus("Dead letter", "dead")
        elif any(event.seq > c.delivered_seq for c in relevant):
            statuses[event.seq] = RowStatus("Waiting", "waiting")
        else:
            statuses[event.seq] = RowStatus("Sent", "sent")
    return statuses
