"""Segment connections of a workspace and the record of every check run on them."""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Workspace
from integrations import crypto

MASK = "••••"


class Region(models.TextChoices):
    US = "us", "US"
    EU = "eu", "EU"


class Health(models.TextChoices):
    """What the latest check says about a connection."""

    PENDING = "pending", "Not checked yet"
    HEALTHY = "healthy", "Healthy"
    # The check could not finish (Segment rate-limited, unreachable, odd answer): try later.
    DEGRADED = "degraded", "Check incomplete"
    # Segment said no (unknown key, wrong region): the user has to change something.
    FAILING = "failing", "Needs attention"
    UNREADABLE = "unreadable", "Credential unreadable"


# `Connection.cleared_token()` in SQL: what `checked_key` holds once the current key and region passed.
CLEARED_TOKEN = Concat(F("write_key_fingerprint"), Value(":"), F("region"))


class ConnectionQuerySet(models.QuerySet["Connection"]):
    def deliverable(self) -> ConnectionQuerySet:
        """Connections a delivery run may send for: enabled, not paused, and with a key and
        region that a check found known to Segment."""
        return self.filter(enabled=True, paused_reason="", checked_key=CLEARED_TOKEN)

    def awaiting_check(self) -> ConnectionQuerySet:
        """Connections whose current key and region no check has found known yet."""
        return self.exclude(checked_key=CLEARED_TOKEN)


class Connection(models.Model):
    """One Segment source of a workspace, reached with its write key.

    The write key is stored only encrypted (`write_key_encrypted`, see integrations.crypto);
    pages show `masked_key`, and `write_key()` is the one way to read it back.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="connections")
    name = models.CharField(max_length=80)
    region = models.CharField(max_length=2, choices=Region.choices, default=Region.US)
    write_key_encrypted = models.TextField(editable=False)
    write_key_key_id = models.CharField("encryption key id", max_length=16, db_index=True, editable=False)
    write_key_last4 = models.CharField(max_length=4, editable=False)
    write_key_fingerprint = models.CharField(max_length=64, db_index=True, editable=False)
    enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=12, choices=Health.choices, default=Health.PENDING)
    latest_verification = models.ForeignKey(
        "Verification", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    key_replaced_at = models.DateTimeField(null=True, blank=True)
    # Relay state. Events of the workspace log up to `delivered_seq` have reached Segment; a
    # connection starts at the log's end when created, so it receives what is emitted after.
    delivered_seq = models.BigIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    # The holder of the lease: a random token per delivery run, matched by every renewal and
    # the release, so a run whose lease lapsed cannot touch its successor's.
    lease_owner = models.CharField(max_length=40, blank=True, editable=False)
    failures = models.PositiveIntegerField(default=0)
    paused_reason = models.CharField(max_length=300, blank=True)
    # When a delivery task was last queued and not yet started: at most one waits per connection.
    wake_queued_at = models.DateTimeField(null=True, blank=True)
    # The key and region (`cleared_token()`) that the latest check found known to Segment.
    # Delivery runs only while it matches the current key and region, so a new connection, a
    # replaced key or a changed region sends nothing until its own check says the key is known.
    checked_key = models.CharField(max_length=80, blank=True, editable=False)

    objects = ConnectionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "write_key_fingerprint"],
                                    name="connection_unique_key_per_workspace"),
            models.UniqueConstraint(fields=["workspace", "name"], name="connection_unique_name_per_workspace"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_region_display()}, {self.masked_key})"

    @property
    def masked_key(self) -> str:
        return f"{MASK} {self.write_key_last4}"

    @property
    def awaiting_check(self) -> bool:
        """True while no check has found the current key known in the current region."""
        return self.checked_key != self.cleared_token()

    def cleared_token(self) -> str:
        """What `checked_key` holds once a check passes for this key and region (no secret:
        the fingerprint is a keyed HMAC)."""
        return f"{self.write_key_fingerprint}:{self.region}"

    @sensitive_variables("write_key")
    def set_write_key(self, write_key: str) -> None:
        self.write_key_encrypted = crypto.encrypt(write_key)
        self.write_key_key_id = crypto.stored_key_id(self.write_key_encrypted)
        self.write_key_last4 = write_key[-4:]
        self.write_key_fingerprint = crypto.fingerprint(write_key)

    @sensitive_variables()
    def write_key(self) -> str:
        """The plaintext key, for the request being made right now. Raises CredentialUnreadable."""
        return crypto.decrypt(self.write_key_encrypted)


class Trigger(models.TextChoices):
    """What started a check: shown in the Checks tab and named in its audit row."""

    CREATED = "created", "Connection created"
    KEY_REPLACED = "key_replaced", "Write key replaced"
    REGION_CHANGED = "region_changed", "Region changed"
    MANUAL = "manual", "Run from the page"
    SCHEDULED = "scheduled", "Daily check"
    RETRY = "retry", "Retried after a check that could not finish"
    OPERATOR = "operator", "Run by an operator"


class Outcome(models.TextChoices):
    """A check's verdict; incomplete when Segment could not be asked (it is retried)."""

    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    INCOMPLETE = "incomplete", "Incomplete"


class Verification(models.Model):
    """One run of the connection checks. `checks` lists each check with its own outcome:
    `[{"check": "cdn_lookup", "status": "passed"|"failed"|"skipped", "message": "..."}]`.
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="verifications")
    trigger = models.CharField(max_length=16, choices=Trigger.choices)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    # Kept so the audit row written when the check finishes names where it was asked from.
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    requested_user_agent = models.CharField(max_length=512, blank=True)
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.RUNNING)
    summary = models.CharField(max_length=300, blank=True)
    checks = models.JSONField(default=list, blank=True)
    test_message_id = models.CharField(max_length=100, blank=True)
    retry_after = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["connection", "-created_at"], name="verification_conn_time")]

    def __str__(self) -> str:
        return f"{self.get_trigger_display()}: {self.get_outcome_display()}"

    @property
    def is_running(self) -> bool:
        return self.outcome == Outcome.RUNNING

    def check_list(self) -> list[dict[str, Any]]:
        return list(self.checks or [])
