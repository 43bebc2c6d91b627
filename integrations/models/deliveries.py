"""What delivery did: the attempt log, and counts kept as deliveries happen.

`DeliveryAttempt` is one row per request to Segment's batch endpoint, newest first on the
connection page and in the admin. `DeliveryCount` holds, per connection and 10-minute
bucket, the events delivered, dead-lettered, retried and filtered, the API calls made and a latency
histogram; pages and /metrics sum a few of these rows instead of counting the event log.
"""
from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils import timezone

from integrations.models.connections import Connection

# Upper bounds (seconds) of the latency histogram's buckets, ingest to Segment's 200; one
# more bucket counts everything slower. Prometheus' `le` labels come from these.
LATENCY_BOUNDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0)
BUCKET_MINUTES = 10


class AttemptOutcome(models.TextChoices):
    DELIVERED = "delivered", "Delivered"
    REJECTED = "rejected", "Rejected"  # 400/413/422: split until the offending events stood alone
    RETRYING = "retrying", "Will retry"  # 408, 429, 5xx or no answer: backed off
    REFUSED = "refused", "Key refused"  # 401, 403 and the like: delivery paused


class DeliveryAttempt(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="attempts")
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    events = models.PositiveIntegerField()
    bytes = models.PositiveIntegerField()
    first_seq = models.BigIntegerField()
    last_seq = models.BigIntegerField()
    # Segment's HTTP status; None when no answer came (timeout, connection refused).
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=10, choices=AttemptOutcome.choices)
    # The start of Segment's answer, or why there was none; never the key.
    reply = models.CharField(max_length=300, blank=True)
    # 1 for the first try of these events, n for the n-th (after n-1 retryable failures).
    attempt = models.PositiveIntegerField(default=1)
    # A replay of dead letters asked for by a person, not the relay's own delivery.
    replay = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [
            models.Index(fields=["connection", "-started_at"], name="attempt_connection_time"),
            models.Index(fields=["connection", "outcome", "-started_at"], name="attempt_connection_outcome"),
        ]

    def __str__(self) -> str:
        return f"{self.events} events, {self.status or 'no answer'} at {self.started_at:%Y-%m-%d %H:%M:%S}"


class DeliveryCount(models.Model):
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="counts")
    bucket = models.DateTimeField()  # start of a BUCKET_MINUTES-long window
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)  # became dead letters
    retried = models.PositiveIntegerField(default=0)  # sent in attempts that will be retried
    # Held back by the connection's filters (sampled out, dropped, or a condition that failed):
    # neither delivered nor failed.
    filtered = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    # Delivered events per latency bucket: len(LATENCY_BOUNDS) + 1 counts, the last one
    # for everything slower than the last bound.
    latency = models.JSONField(default=list)
    # The slowest delivered event's latency (seconds): a percentile interpolated inside a wide
    # bucket (5 minutes to an hour) never reads higher than what really happened.
    latency_max = models.FloatField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["connection", "bucket"], name="count_unique_bucket")]

    def __str__(self) -> str:
        return f"{self.connection_id} at {self.bucket:%Y-%m-%d %H:%M}"


def bucket_of(moment: datetime) -> datetime:
    """The start of the BUCKET_MINUTES window `moment` falls in."""
    return moment.replace(minute=moment.minute - moment.minute % BUCKET_MINUTES, second=0, microsecond=0)
