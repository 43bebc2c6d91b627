"""A workspace's tracking plan (Segment Protocols' model), the events it blocked, and counts
of the violations it found.

`TrackingPlan.rules` holds the rules in Segment's shape (`{type, key, jsonSchema, version}`),
saved whole in one row so a change is never applied half-way; `version` moves on every
change, so each process's compiled copy (integrations.tracking_plans.enforcement) knows when
to compile again. The enforcement settings are Segment's.

`BlockedEvent` keeps an event the plan refused, with its violations, for
`BLOCKED_RETENTION` (30 days, as Segment keeps them), until someone releases it into the
log. `ViolationCount` counts violations per minute, event and kind, for the violations page.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Workspace
from integrations.models.connections import Connection

BLOCKED_RETENTION = timedelta(days=30)


class UnplannedEvents(models.TextChoices):
    ALLOW = "allow", "Allow"
    BLOCK = "block", "Block"


class UnplannedProperties(models.TextChoices):
    ALLOW = "allow", "Allow"
    OMIT = "omit", "Omit"


class OnViolation(models.TextChoices):
    ALLOW = "allow", "Allow"
    OMIT = "omit", "Omit the properties in violation"
    BLOCK = "block", "Block the event"


class TrackingPlan(models.Model):
    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="tracking_plan")
    name = models.CharField(max_length=100, default="Tracking plan")
    # Segment-shaped rules, validated and compiled before they are saved.
    rules = models.JSONField(default=list, blank=True)
    enabled = models.BooleanField(default=True)
    unplanned_events = models.CharField(max_length=8, choices=UnplannedEvents.choices, default=UnplannedEvents.ALLOW)
    unplanned_properties = models.CharField(max_length=8, choices=UnplannedProperties.choices,
                                            default=UnplannedProperties.ALLOW)
    on_violation = models.CharField(max_length=8, choices=OnViolation.choices, default=OnViolation.ALLOW)
    # Segment's forwardingViolationsTo: `Violation Generated` track events are sent here.
    forward_violations_to = models.ForeignKey(Connection, null=True, blank=True, on_delete=models.SET_NULL,
                                              related_name="+")
    version = models.PositiveIntegerField(default=1)
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")

    def __str__(self) -> str:
        return f"{self.name} (v{self.version})"


class BlockedEvent(models.Model):
    """One event the plan blocked: its body as it would have entered the log, and why."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    message_id = models.CharField(max_length=100)
    type = models.CharField(max_length=8)
    name = models.CharField(max_length=200, blank=True)
    user_id = models.CharField(max_length=200, blank=True)
    body = models.BinaryField()
    # [{"kind", "field", "description"}], as the plan's version at the time found them.
    violations = models.JSONField(default=list)
    plan_version = models.PositiveIntegerField(default=0)
    source = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    blocked_at = models.DateTimeField(default=timezone.now)
    released_at = models.DateTimeField(null=True, blank=True)
    released_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")

    class Meta:
        indexes = [models.Index(fields=["workspace", "-blocked_at"], name="blocked_workspace_at"),
                   models.Index(fields=["blocked_at"], name="blocked_at")]

    def __str__(self) -> str:
        return f"blocked {self.type} {self.name}".strip()

    @property
    def expires_at(self) -> datetime:
        return self.blocked_at + BLOCKED_RETENTION


class ViolationCount(models.Model):
    """Violations found in one minute for one event and kind (and the field they concern)."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    minute = models.DateTimeField()
    event_type = models.CharField(max_length=8)
    event_name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=20)
    field = models.CharField(max_length=200, blank=True)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workspace", "minute", "event_type", "event_name", "kind",
                                                       "field"], name="violation_count_unique")]
        indexes = [models.Index(fields=["workspace", "minute"], name="violation_workspace_minute")]

    def __str__(self) -> str:
        return f"{self.count} {self.kind} on {self.event_name or self.event_type}"


class ViolationForward(models.Model):
    """A `Violation Generated` track event waiting to be sent to the connection the plan
    forwards violations to (Segment's forwardingViolationsTo). Sent straight to that one
    source, not through the workspace's log, which every connection delivers."""

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="+")
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+")
    message = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["connection", "sent_at"], name="violation_forward_pending")]

    def __str__(self) -> str:
        return f"violation for {self.connection_id}"
