"""A workspace's Segment Public API token, the Segment source each connection came from, and the
log of every Public API call (issue #11)."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Workspace
from integrations import crypto
from integrations.models.connections import MASK, Connection, Region


class SegmentToken(models.Model):
    """The Public API token of the customer's Segment workspace, one per Tributary workspace.

    Stored like write keys: encrypted under the first FIELD_ENCRYPTION_KEYS key (its id kept
    for rotation), shown only as `•••• last4`, and `token()` raises CredentialUnreadable
    rather than fall back to anything.
    """

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="segment_token")
    region = models.CharField(max_length=2, choices=Region.choices, default=Region.US)
    token_encrypted = models.TextField(editable=False)
    token_key_id = models.CharField("encryption key id", max_length=16, db_index=True, editable=False)
    token_last4 = models.CharField(max_length=4, editable=False)
    # What Segment said the token belongs to when it was last checked.
    segment_workspace_id = models.CharField(max_length=64, blank=True)
    segment_workspace_name = models.CharField(max_length=200, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "Segment Public API token"

    def __str__(self) -> str:
        return f"{self.workspace} → {self.segment_workspace_name or '?'} ({self.get_region_display()})"

    @property
    def masked_token(self) -> str:
        return f"{MASK} {self.token_last4}"

    @sensitive_variables("token")
    def set_token(self, token: str) -> None:
        self.token_encrypted = crypto.encrypt(token)
        self.token_key_id = crypto.stored_key_id(self.token_encrypted)
        self.token_last4 = token[-4:]

    @sensitive_variables()
    def token(self) -> str:
        """The plaintext token, for the request being made right now. Raises CredentialUnreadable."""
        return crypto.decrypt(self.token_encrypted)


class SegmentSource(models.Model):
    """The Segment source a connection sends to, when known: picked from the list, or matched
    by its write key. `deleted_at` is set when it was deleted in Segment from Tributary."""

    connection = models.OneToOneField(Connection, on_delete=models.CASCADE, related_name="segment_source")
    source_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200, blank=True)
    # The connection's write key (its keyed fingerprint) when linked: once the key is replaced,
    # the link no longer says which source the connection sends to, and is found again.
    key_fingerprint = models.CharField(max_length=64, blank=True)
    linked_at = models.DateTimeField(default=timezone.now)
    deleted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name or self.source_id} ({self.source_id})"

    def is_current(self, connection: Connection) -> bool:
        """Still the source of the connection's current write key (or deleted from here)."""
        return self.deleted_at is not None or self.key_fingerprint in ("", connection.write_key_fingerprint)


class CallOutcome(models.TextChoices):
    """How a Public API call ended, for the operators' call log."""

    OK = "ok", "Answered"
    UNAUTHORIZED = "unauthorized", "Token refused (401/403)"
    NOT_FOUND = "not_found", "Not found"
    INVALID = "invalid", "Refused as invalid (4xx)"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    SERVER_ERROR = "server_error", "Segment error (5xx)"
    TIMEOUT = "timeout", "No answer in time"
    UNREACHABLE = "unreachable", "Unreachable"
    MALFORMED = "malformed", "Unreadable answer"


class PublicApiCall(models.Model):
    """One HTTP request to Segment's Public API, for operators: never the token, and the path
    as its template (`/sources/{sourceId}`), so no Segment id or query leaks into the log."""

    workspace = models.ForeignKey(Workspace, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    method = models.CharField(max_length=8)
    path = models.CharField(max_length=120)
    region = models.CharField(max_length=2, choices=Region.choices, default=Region.US)
    status = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=CallOutcome.choices)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "Segment Public API call"

    def __str__(self) -> str:
        return f"{self.method} {self.path} → {self.status or self.get_outcome_display()}"
