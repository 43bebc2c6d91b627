"""The workspace event log the relay delivers from.

One row per accepted event, whatever the number of connections: each connection keeps its
own position in the log (`Connection.delivered_seq`). `seq` numbers a workspace's events in
commit order: the insert takes the workspace's `EventStream` row lock and holds it until the
transaction commits, so a reader never sees seq N+1 committed while N is still in flight.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Workspace


class EventStream(models.Model):
    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="event_stream")
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.workspace} at {self.last_seq}"


class Event(models.Model):
    """One accepted event, stored before the emitter is told it was accepted.

    `body` is the Segment message as it will be sent (orjson bytes), without the messageId,
    which is derived per connection at send time.
    """

    id = models.BigAutoField(primary_key=True)
    # No database-level foreign key: PostgreSQL checks one with a per-row trigger that share-
    # locks the workspace row, which at ingest rates costs as much as the insert itself and
    # makes concurrent appends contend on that row. Every append first locks the workspace's
    # stream row, which does have the constraint, so no event can outlive its workspace;
    # deleting a workspace still deletes its events (Django's on_delete).
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+", db_index=False,
                                  db_constraint=False)
    seq = models.BigIntegerField()
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=8)
    name = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    body = models.BinaryField()
    size = models.PositiveIntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)

    class Meta:
        # As the tables are on SQLite. On PostgreSQL the log is partitioned by day of
        # `received_at` (migration 0018): its primary key is (id, received_at), and these are
        # plain indexes (event_workspace_seq, …_message_id, …_dedupe_key), since a unique index
        # there must include the partition key; the append keeps them unique under the
        # workspace's stream row lock (relay/log.py). A migration changing them must say so
        # for PostgreSQL by hand.
        constraints = [
            models.UniqueConstraint(fields=["workspace", "seq"], name="event_unique_seq"),
            models.UniqueConstraint(fields=["workspace", "message_id"], name="event_unique_message_id"),
            models.UniqueConstraint(fields=["workspace", "dedupe_key"], name="event_unique_dedupe_key",
                                    condition=models.Q(dedupe_key__isnull=False)),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name or ''} #{self.seq}".strip()


# Why an event was refused, in the words pages show (the Rejected events page and the
# debugger); the codes are the `Invalid.reason`s of integrations.ingest.messages, which the
# ingest API also answers with. A code not listed here reads as its own words.
REJECTION_REASONS = {
    "not_an_object": "Not a JSON object",
    "unknown_type": "Unknown type",
    "event_too_large": "Larger than Segment's 32 KB",
    "missing_previous_id": "Alias without previousId",
    "missing_user_id": "Alias without userId",
    "missing_user_or_anonymous_id": "No userId or anonymousId",
    "missing_event": "Track without an event name",
    "missing_group_id": "Group without groupId",
    "invalid_message_id": "Unusable messageId",
    "invalid_timestamp": "Unreadable timestamp",
    "integer_too_large": "Integer beyond 64 bits",
    "not_serialisable": "Cannot be written as JSON",
    "too_deeply_nested": "Nested too deeply",
    "invalid_unicode": "Text that is not valid Unicode",
}


def rejection_reason_text(code: str) -> str:
    """The reason in plain words; an unknown code becomes its own words (`too_many_keys` →
    "Too many keys"), so a reason added at ingest never shows as a bare code."""
    return REJECTION_REASONS.get(code) or code.replace("_", " ").strip().capitalize() or "Refused"


class RejectedEvent(models.Model):
    """An event refused at ingest, kept (trimmed) so the workspace can see why, like
    Segment's schema violations."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    source = models.CharField(max_length=40)
    index = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=60)
    detail = models.CharField(max_length=300)
    message_id = models.CharField(max_length=100, blank=True)
    excerpt = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [models.Index(fields=["workspace", "-received_at"], name="rejected_ws_time")]

    def __str__(self) -> str:
        return f"{self.reason} at {self.received_at:%Y-%m-%d %H:%M}"

    @property
    def reason_text(self) -> str:
        return rejection_reason_text(self.reason)


class DeadLetter(models.Model):
    """An event one connection could not deliver and will not retry: Segment refused it (the
    batch was bisected down to this event) or it waited past the maximum age. Keeps its own
    copy of the body, since the log may be trimmed once every connection has passed it."""

    connection = models.ForeignKey("integrations.Connection", on_delete=models.CASCADE, related_name="dead_letters")
    seq = models.BigIntegerField()
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=8)
    name = models.CharField(max_length=200, blank=True)
    body = models.BinaryField()
    reason = models.CharField(max_length=40)
    status = models.PositiveIntegerField(null=True, blank=True)
    response = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The event's time in the log, so dead letters can be chosen by when the event happened.
    received_at = models.DateTimeField(null=True, blank=True)
    # Replays asked for by people: how many, and when the last one was accepted by Segment.
    replays = models.PositiveIntegerField(default=0)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["connection", "seq"], name="dead_letter_unique_seq")]
        indexes = [
            models.Index(fields=["connection", "-created_at"], name="dead_letter_connection_time"),
            # Only the dead letters no replay delivered: health and the banner count these every
            # few seconds, and replayed ones (kept as history) drop out of the index.
            models.Index(fields=["connection", "created_at"], name="dead_letter_undelivered",
                         condition=models.Q(replayed_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.name} ({self.reason})".strip()


class ReplayStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class DeadLetterReplay(models.Model):
    """One replay of a connection's dead letters, asked for by a person or an operator: what
    was chosen, how far it got, and what Segment made of it. At most one is queued or sending
    per connection at a time (a partial unique constraint), and a replay whose worker died is
    recognised by `updated_at` no longer moving."""

    connection = models.ForeignKey("integrations.Connection", on_delete=models.CASCADE,
                                   related_name="dead_letter_replays")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    # The person's choice: {"ids": [...]} or the filter's fields; never bodies.
    selection = models.JSONField(default=dict)
    status = models.CharField(max_length=8, choices=ReplayStatus.choices, default=ReplayStatus.QUEUED)
    total = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    refused = models.PositiveIntegerField(default=0)
    not_sent = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-requested_at", "-id"]
        constraints = [models.UniqueConstraint(
            fields=["connection"], condition=models.Q(status__in=["queued", "sending"]),
            name="dead_letter_replay_one_at_a_time")]

    def __str__(self) -> str:
        return f"Replay of {self.total} dead letters ({self.get_status_display()})"
