"""Which dead letters a person chose, and the reads of a connection's dead letters and replays.

Every selector takes a connection the caller already fetched through its workspace
(`connection_get_for_workspace`), so nothing here can reach another tenant's rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from integrations.models import Connection, DeadLetter, DeadLetterReplay, Health, ReplayStatus

REASONS = ("rejected", "expired")
# How many past replays the page lists, and how long a finished one stays in the panel.
HISTORY = 5
RECENT = timedelta(days=1)
ACTIVE = (ReplayStatus.QUEUED, ReplayStatus.SENDING)


@dataclass(frozen=True)
class Selection:
    """Dead letters chosen by a filter (`created_at` window, event name, type, reason, replayed
    or not) or, when `ids` is given, picked one by one (the filter is then ignored)."""

    since: datetime | None = None
    until: datetime | None = None
    name: str = ""
    type: str = ""
    reason: str = ""
    replayed: str = ""  # "", "yes" or "no"
    ids: tuple[int, ...] = ()

    @property
    def is_picked(self) -> bool:
        return bool(self.ids)

    @property
    def is_filtered(self) -> bool:
        return any((self.since, self.until, self.name, self.type, self.reason, self.replayed))

    def apply(self, dead_letters: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
        if self.ids:
            return dead_letters.filter(pk__in=self.ids)
        if self.since:
            dead_letters = dead_letters.filter(created_at__gte=self.since)
        if self.until:
            dead_letters = dead_letters.filter(created_at__lte=self.until)
        if self.name:
            dead_letters = dead_letters.filter(name__iexact=self.name)
        if self.type:
            dead_letters = dead_letters.filter(type=self.type)
        if self.reason:
            dead_letters = dead_letters.filter(reason=self.reason)
        if self.replayed:
            dead_letters = dead_letters.filter(replayed_at__isnull=self.replayed == "no")
        return dead_letters

    def pinned(self, at: datetime) -> Selection:
        """The same filter, closed at `at`: dead letters that arrive after the count was shown
        are not replayed or discarded with the ones counted."""
        if self.ids or (self.until and self.until <= at):
            return self
        return Selection(since=self.since, until=at, name=self.name, type=self.type, reason=self.reason,
                         replayed=self.replayed)

    @property
    def summary(self) -> str:
        """The choice in words, for confirmations, the replay panel and the replay history."""
        if self.ids:
            return f"{len(self.ids)} picked by hand"
        parts = []
        if self.since:
            parts.append(f"dead-lettered from {_moment(self.since)}")
        if self.until:
            parts.append(f"{'to' if self.since else 'dead-lettered until'} {_moment(self.until)}")
        if self.name:
            parts.append(f"named “{self.name}”")
        if self.type:
            parts.append(f"of type {self.type}")
        if self.reason:
            parts.append("rejected by Segment" if self.reason == "rejected" else "expired")
        if self.replayed:
            parts.append("already accepted on replay" if self.replayed == "yes" else "not accepted on replay yet")
        return ", ".join(parts) if parts else "every dead letter"

    def describe(self) -> dict[str, Any]:
        """Audit details (never a body): `{"selection": ids}` or `{"filter": {...}}`."""
        if self.ids:
            return {"selection": list(self.ids)}
        return {"filter": self._fields()}

    def to_json(self) -> dict[str, Any]:
        """`DeadLetterReplay.selection`: `{"ids": [...]}` or the filter's fields that are set."""
        return {"ids": list(self.ids)} if self.ids else self._fields()

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Selection:
        if value.get("ids"):
            return cls(ids=tuple(int(pk) for pk in value["ids"]))
        return cls(since=_time(value.get("since")), until=_time(value.get("until")), name=str(value.get("name", "")),
                   type=str(value.get("type", "")), reason=str(value.get("reason", "")),
                   replayed=str(value.get("replayed", "")))

    def _fields(self) -> dict[str, Any]:
        fields = {"since": self.since.isoformat() if self.since else None,
                  "until": self.until.isoformat() if self.until else None,
                  "name": self.name, "type": self.type, "reason": self.reason, "replayed": self.replayed}
        return {key: value for key, value in fields.items() if value}


def _moment(at: datetime) -> str:
    at = timezone.localtime(at)
    return f"{at:%b} {at.day}, {at:%Y, %H:%M:%S %Z}"


def _time(value: Any) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) and value else None


# --- dead letters ------------------------------------------------------------------------


def dead_letters_for_connection(*, connection: Connection, selection: Selection | None = None) -> QuerySet[DeadLetter]:
    """Newest first (index dead_letter_connection_time), without bodies: a page of 50 rows
    must not carry up to 50 bodies of 32 KB."""
    dead_letters = DeadLetter.objects.filter(connection=connection)
    if selection is not None:
        dead_letters = selection.apply(dead_letters)
    return dead_letters.defer("body").order_by("-created_at", "-id")


def dead_letter_get_for_connection(*, connection: Connection, pk: int) -> DeadLetter:
    try:
        return DeadLetter.objects.get(connection=connection, pk=pk)
    except DeadLetter.DoesNotExist:
        raise Http404("No such dead letter.") from None


def replay_blocker(connection: Connection) -> str:
    """Why the connection cannot replay now, in words for the page; empty when it can."""
    if not connection.enabled:
        return ("This connection is disabled, so nothing is sent to its Segment source. Enable it on the "
                "connection's page first.")
    if connection.health == Health.UNREADABLE:
        return "The write key cannot be decrypted: paste it again on the connection's page, then replay."
    if connection.paused_reason:
        return (f"Delivery to this source is paused: {connection.paused_reason} A replay would meet the same "
                f"problem. Once a check passes, delivery resumes and you can replay.")
    if connection.awaiting_check:
        return ("The write key and region have not passed a check yet, and nothing is sent with them until "
                "one does. Run the check on the connection's page, then replay.")
    return ""


# --- replays -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Replay:
    """A replay as the pages show it: its row (`record`) and what follows from it."""

    record: DeadLetterReplay

    @property
    def pk(self) -> int:
        return self.record.pk

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def in_progress(self) -> bool:
        return self.record.status in ACTIVE

    @property
    def selection(self) -> Selection:
        return Selection.from_json(self.record.selection)

    @property
    def sent(self) -> int:
        """Dead letters Segment answered for so far, accepted or refused."""
        return self.record.accepted + self.record.refused

    @property
    def percent(self) -> int:
        return min(100, round(100 * self.sent / self.record.total)) if self.record.total else 0

    @property
    def clean(self) -> bool:
        """Done, and every dead letter chosen was accepted."""
        record = self.record
        return record.status == ReplayStatus.DONE and not record.refused and not record.not_sent

    @property
    def requested_by(self) -> str:
        user = self.record.requested_by
        return user.email if user is not None else "the system"


def _replays(connection: Connection) -> QuerySet[DeadLetterReplay]:
    # The connection's replays through the foreign key's index: a connection has few.
    return (DeadLetterReplay.objects.filter(connection=connection).select_related("requested_by")
            .order_by("-requested_at", "-id"))


def replays_for_connection(*, connection: Connection, limit: int = HISTORY) -> list[Replay]:
    """The connection's latest replays, newest first."""
    return [Replay(record) for record in _replays(connection)[:limit]]


def replay_get_for_connection(*, connection: Connection, pk: int) -> Replay:
    record = _replays(connection).filter(pk=pk).first()
    if record is None:
        raise Http404("No such replay.")
    return Replay(record)


def replay_active(*, connection: Connection) -> Replay | None:
    """The connection's replay that is queued or sending, if any (at most one: the constraint)."""
    record = _replays(connection).filter(status__in=ACTIVE).first()
    return Replay(record) if record is not None else None


def replay_for_panel(replays: list[Replay]) -> Replay | None:
    """What the panel above the list shows: the latest replay while it runs or for a day after."""
    latest = replays[0] if replays else None
    if latest is None or latest.in_progress:
        return latest
    ended = latest.record.finished_at or latest.record.updated_at
    return latest if ended > timezone.now() - RECENT else None
