"""Destination filters per connection, in Segment's model, and what they held back.

`DestinationFilter` is one filter as a person saved it: an FQL condition and one action
(sample, drop, only send, drop properties, allow properties). `version` moves on every
change, so the relay's per-process cache of compiled filters knows when to compile again.
`FilteredBatch` records, per delivery batch, which events the connection's filters held back
and why, so the debugger can say "Filtered by 'No test users'" for one event; the counts
themselves are in `DeliveryCount.filtered`.
"""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection

# Segment allows 10 filters per destination.
MAX_FILTERS_PER_CONNECTION = 10


class FilterAction(models.TextChoices):
    SAMPLE = "sample", "Sample"
    DROP = "drop", "Drop"
    ONLY_SEND = "only_send", "Only send"
    DROP_PROPERTIES = "drop_properties", "Drop properties"
    ALLOW_PROPERTIES = "allow_properties", "Allow properties"


class DestinationFilter(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="filters")
    title = models.CharField(max_length=100)
    enabled = models.BooleanField(default=True)
    # The condition in FQL, as shown and as compiled (the sentence form writes FQL too).
    condition = models.TextField()
    action = models.CharField(max_length=20, choices=FilterAction.choices)
    # Sample: the share of matching events kept (0 to 1), and the field that makes it
    # deterministic (userId); blank samples by messageId.
    percent = models.FloatField(null=True, blank=True)
    sample_path = models.CharField(max_length=200, blank=True)
    # Drop or allow properties: {"<object path>": ["name", ...]}, "" being the top level.
    fields = models.JSONField(default=dict, blank=True)
    # The order on the page (the relay applies Segment's order of actions whatever this is).
    position = models.PositiveSmallIntegerField(default=0)
    version = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["connection", "title"], name="filter_unique_title")]

    def __str__(self) -> str:
        return self.title


class FilteredBatch(models.Model):
    """The events of one delivery batch that the connection's filters held back (sampled
    out, dropped, or dropped because a condition failed). `events` lists
    `[seq, filter title, outcome]`, so a renamed or deleted filter still explains the past."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="filtered_batches")
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    at = models.DateTimeField(default=timezone.now)
    events = models.JSONField(default=list)

    class Meta:
        indexes = [models.Index(fields=["connection", "last_seq"], name="filtered_connection_seq"),
                   models.Index(fields=["at"], name="filtered_at")]

    def __str__(self) -> str:
        return f"{len(self.events)} filtered in {self.first_seq}-{self.last_seq}"
