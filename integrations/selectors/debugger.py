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
from integrations.models import Connection, DeadLetter, DeliveryAttempt, Event, EventStream, RejectedEvent
from integrations.relay.filtering import connection_filters, filtered_among, run_filters
from integrations.segment import protocol

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


def via_webhook(event: Event) -> dict[str, Any] | None:
    """The webhook endpoint an event came through (`context.tributary.webhook`: its id, name
    and the sender's webhook-id), or None for an event emitted any other way."""
    context = orjson.loads(bytes(event.body)).get("context")
    via = (context.get("tributary") or {}).get("webhook") if isinstance(context, dict) else None
    return via if isinstance(via, dict) else None


def pretty(document: Any) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()


def sent_message_id(event: Event, connection: Connection) -> str:
    return protocol.sent_message_id(protocol.connection_namespace(connection.pk), event.message_id).decode()


def sent_payload(event: Event, connection: Connection) -> str:
    """The event exactly as the connection sends it (`protocol.wire`), indented: with the
    properties its filters (as they are now) remove already removed."""
    body = bytes(event.body)
    filters = connection_filters(connection.pk)
    if filters:
        result = run_filters(filters, event.seq, event.message_id, body)
        body = result if isinstance(result, bytes) else body
    wire = protocol.wire(body, sent_message_id(event, connection).encode())
    return pretty(orjson.loads(wire))


@dataclass
class Trail:
    """Received → Sent → Segment replied, for one connection."""

    connection: Connection
    chip: Chip  # where the event stands there, in the list's words (chip_for)
    message_id: str = ""
    sent: str = ""
    attempts: list[DeliveryAttempt] = field(default_factory=list)
    dead_letter: DeadLetter | None = None

    @property
    def state(self) -> str:
        """before, delivered, waiting, dead, replayed (a dead letter a replay delivered)."""
        return self.chip.state

    @property
    def reply(self) -> DeliveryAttempt | None:
        """Segment's latest answer about the event."""
        return self.attempts[-1] if self.attempts else None

    @property
    def was_sent(self) -> bool:
        """Whether a request carried the event: one is on record, or it was delivered."""
        return bool(self.attempts) or self.state in ("delivered", "replayed")


def event_trails(*, event: Event, connections: Iterable[Connection]) -> list[Trail]:
    chosen = list(connections)[:TRAIL_CONNECTIONS]
    dead = {d.connection_id: d for d in DeadLetter.objects.filter(
        connection_id__in=[c.pk for c in chosen], seq=event.seq).defer("body")}
    filtered = filtered_among(connection_ids=[c.pk for c in chosen], seqs=[event.seq])
    trails = []
    for connection in chosen:
        # The same derivation and words as the list's chips.
        chip = chip_for(event.seq, event.received_at, connection, dead.get(connection.pk),
                        filtered.get((connection.pk, event.seq), ""))
        if chip.state == "before":
            trails.append(Trail(connection, chip))
            continue
        trail = Trail(connection, chip, message_id=sent_message_id(event, connection),
                      sent=sent_payload(event, connection), dead_letter=dead.get(connection.pk))
        trail.attempts = attempts_for_event(connection=connection, event=event)
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


# --- the list's statuses ----------------------------------------------------------------


# Sources given a chip of their own on a row; the rest are summed up in one "+N" chip.
CHIPS = 4
# Rows whose statuses one refresh may ask for (the rows on screen; a long list is not).
REFRESH_ROWS = 100


@dataclass(frozen=True)
class Chip:
    """Where one event stands for one connection, as the list's small chip shows it."""

    connection: Connection
    state: str  # delivered, replayed, dead, waiting, before
    label: str  # Delivered, Delivered (replayed), Dead letter, Sending, Retrying, Paused, Key check,
    # Connected after this event

    @property
    def title(self) -> str:
        return f"{self.connection.name}: {CHIP_TITLES.get(self.label, self.label)}"


CHIP_TITLES = {
    "Paused": "waiting, delivery is paused",
    "Key check": "waiting for the key check",
    "Retrying": "waiting to be sent again",
    "Sending": "about to be sent",
    "Connected after this event": "Connected after this event, so not sent to it",
}


@dataclass
class RowStatus:
    """An event's chips, one per enabled connection (the first CHIPS), and how many more."""

    chips: list[Chip]
    more: int = 0
    more_title: str = ""


def status_connections(*, workspace: Workspace) -> list[Connection]:
    """The enabled connections, with what their chips need: a disabled one sends nothing and
    would only add noise to every row."""
    return list(Connection.objects.filter(workspace=workspace, enabled=True).order_by("name").only(
        "pk", "workspace_id", "name", "created_at", "delivered_seq", "enabled", "paused_reason", "failures",
        "next_attempt_at", "checked_key", "write_key_fingerprint", "region"))


def _waiting(connection: Connection) -> str:
    if connection.paused_reason:
        return "Paused"
    if connection.awaiting_check:
        return "Key check"
    if connection.failures:
        return "Retrying"
    return "Sending"


def chip_for(event_seq: int, received_at: Any, connection: Connection, dead: DeadLetter | None,
             filtered: str = "") -> Chip:
    """1. a connection created after the event never sends it; 2. a dead letter is the
    event's end there, unless a replay was accepted since; 3. otherwise the connection's
    position says whether it has been passed: sent, or held back by one of its filters
    (`filtered`, in words: "Filtered by 'No test users'"); 4. if not, why it waits."""
    if connection.created_at > received_at:
        return Chip(connection, "before", "Connected after this event")
    if dead is not None:
        if dead.replayed_at is not None:
            return Chip(connection, "replayed", "Delivered (replayed)")
        return Chip(connection, "dead", "Dead letter")
    if event_seq <= connection.delivered_seq:
        if filtered:
            return Chip(connection, "filtered", filtered)
        return Chip(connection, "delivered", "Delivered")
    return Chip(connection, "waiting", _waiting(connection))


def row_statuses(*, events: list[Event], connections: list[Connection]) -> dict[int, RowStatus]:
    """The chips of each listed event: the connections' positions (already read) and one
    probe of the (connection, seq) unique index for the dead letters among the listed seqs."""
    shown = connections[:CHIPS]
    seqs = [e.seq for e in events]
    dead: dict[tuple[int, int], DeadLetter] = {}
    if seqs and shown:
        for letter in DeadLetter.objects.filter(connection_id__in=[c.pk for c in shown], seq__in=seqs).only(
                "id", "connection_id", "seq", "replayed_at"):
            dead[(letter.connection_id, letter.seq)] = letter
    filtered = filtered_among(connection_ids=[c.pk for c in shown], seqs=seqs)
    statuses = {}
    for event in events:
        chips = [chip_for(event.seq, event.received_at, c, dead.get((c.pk, event.seq)),
                          filtered.get((c.pk, event.seq), "")) for c in shown]
        more = connections[CHIPS:]
        statuses[event.seq] = RowStatus(chips, len(more), _more_title(event, more))
    return statuses


def _more_title(event: Event, more: list[Connection]) -> str:
    if not more:
        return ""
    sent = sum(1 for c in more if c.created_at <= event.received_at and event.seq <= c.delivered_seq)
    return f"{len(more)} more source{'s' if len(more) != 1 else ''}: {sent} past this event. Open it for each one."


def events_by_seq(*, workspace: Workspace, seqs: Iterable[int]) -> list[Event]:
    """The listed events a refresh asks about (at most REFRESH_ROWS), by the (workspace, seq) index."""
    wanted = sorted(set(seqs), reverse=True)[:REFRESH_ROWS]
    if not wanted:
        return []
    return list(Event.objects.filter(workspace=workspace, seq__in=wanted).only("id", "seq", "received_at")
                .order_by("-seq"))


# --- rejected events in the list ---------------------------------------------------------


@dataclass
class RejectedRow:
    """A refused event shown among the accepted ones: when, why in words, and what little of
    the event its stored excerpt tells."""

    rejected: RejectedEvent
    type: str = ""
    name: str = ""
    user: str = ""

    @property
    def received_at(self) -> Any:
        return self.rejected.received_at


def _rejected_row(rejected: RejectedEvent) -> RejectedRow:
    row = RejectedRow(rejected)
    try:
        item = orjson.loads(rejected.excerpt)  # trimmed at 1,000 characters: may not parse
    except orjson.JSONDecodeError:
        item = None
    if isinstance(item, dict):
        kind = item.get("type")
        row.type = kind if isinstance(kind, str) else ""
        name = item.get("event") or item.get("name")
        row.name = name if isinstance(name, str) else ""
        user = item.get("userId") or item.get("anonymousId")
        row.user = str(user) if isinstance(user, (str, int)) else ""
    if not row.type:
        # The call it came in ("http:track", "/v1/track"), which names its type.
        row.type = rejected.source.replace(":", "/").rstrip("/").rsplit("/", 1)[-1]
    row.type, row.name, row.user = row.type[:8], row.name[:200], row.user[:200]
    return row


def _rejected(workspace: Workspace) -> QuerySet[RejectedEvent]:
    return RejectedEvent.objects.filter(workspace=workspace).only(
        "id", "workspace_id", "received_at", "source", "reason", "message_id", "excerpt")


def rejected_since(*, workspace: Workspace, since: Any = None, after: Any = None,
                   limit: int = PAGE_SIZE) -> list[RejectedRow]:
    """The latest refused events, newest first, by the (workspace, received_at) index:
    received at or after `since` (the oldest listed event's time), or strictly after `after`
    (the newest refused event the page shows)."""
    rejected = _rejected(workspace)
    if since is not None:
        rejected = rejected.filter(received_at__gte=since)
    if after is not None:
        rejected = rejected.filter(received_at__gt=after)
    return [_rejected_row(r) for r in rejected.order_by("-received_at", "-id")[:limit]]


def rejected_cursor(*, workspace: Workspace) -> Any:
    """When the newest refused event was received: the list asks only for later ones."""
    return _rejected(workspace).order_by("-received_at", "-id").values_list("received_at", flat=True).first()


def merged(events: list[Event], rejected: list[RejectedRow]) -> list[Event | RejectedRow]:
    """Accepted and refused events in one list, newest first: the events keep their log
    order (receive times may cross it by a hair) and each refused one goes in by its time."""
    rows: list[Event | RejectedRow] = []
    waiting = list(rejected)
    for event in events:
        while waiting and waiting[0].received_at > event.received_at:
            rows.append(waiting.pop(0))
        rows.append(event)
    return rows + waiting
