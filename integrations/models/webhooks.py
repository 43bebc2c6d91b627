"""Inbound webhook endpoints of a workspace, and the record of every request they received.

An endpoint turns the JSON a product posts (a chat assistant's "conversation started") into
Segment calls through its mapping (integrations.webhooks.mapping) and appends them to the
workspace's event log, from where they are relayed like every other event.
"""
from __future__ import annotations

import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.models import Workspace
from integrations import crypto

PUBLIC_ID_PREFIX = "wh_"


class SigningMode(models.TextChoices):
    SIGNED = "signed", "Signed (Standard Webhooks)"
    # For senders that cannot sign: whoever learns the URL can post events.
    URL_TOKEN = "url_token", "Unsigned, secret token in the URL"


class WebhookEndpoint(models.Model):
    """One URL a product posts webhooks to.

    `public_id` is the unguessable part of the URL. The signing secret (`whsec_…`) is stored
    only encrypted, like write keys, and shown once; after a rotation the previous secret
    keeps verifying until `previous_secret_expires_at`. In URL-token mode the token is a
    second path segment of which only a SHA-256 is kept (shown once, like ingest keys).
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="webhook_endpoints")
    name = models.CharField(max_length=80)
    public_id = models.CharField(max_length=40, unique=True, editable=False)
    mode = models.CharField(max_length=12, choices=SigningMode.choices, default=SigningMode.SIGNED)
    secret_encrypted = models.TextField(blank=True, editable=False)
    secret_hint = models.CharField(max_length=4, blank=True, editable=False)
    previous_secret_encrypted = models.TextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    url_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    # The mapping document (see integrations.webhooks.mapping): routes of Segment calls.
    mapping = models.JSONField(default=dict)
    preset = models.CharField(max_length=24, blank=True)
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "name"], name="webhook_endpoint_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name

    @staticmethod
    def new_public_id() -> str:
        return PUBLIC_ID_PREFIX + secrets.token_urlsafe(18)

    @property
    def is_signed(self) -> bool:
        return self.mode == SigningMode.SIGNED

    @sensitive_variables("secret")
    def set_secret(self, secret: str) -> None:
        self.secret_encrypted = crypto.encrypt(secret)
        self.secret_hint = secret[-4:]

    @sensitive_variables()
    def secret(self) -> str:
        """The current signing secret, for verifying the request being handled. Raises
        CredentialUnreadable."""
        return crypto.decrypt(self.secret_encrypted)

    def overlap_until(self, *, now: datetime | None = None) -> datetime | None:
        """When the previous secret stops verifying, while it still does; else None."""
        expires = self.previous_secret_expires_at
        if not self.previous_secret_encrypted or expires is None or expires <= (now or timezone.now()):
            return None
        return expires

    @sensitive_variables()
    def previous_secret(self, *, now: datetime | None = None) -> str | None:
        """The secret before the latest rotation, while its overlap lasts."""
        if self.overlap_until(now=now) is None:
            return None
        return crypto.decrypt(self.previous_secret_encrypted)


class SignatureVerdict(models.TextChoices):
    """What the signature check of one inbound request found."""

    VERIFIED = "verified", "Verified"
    VERIFIED_PREVIOUS = "verified_previous", "Verified with the previous secret"
    URL_TOKEN = "url_token", "Token in the URL (unsigned)"
    MISSING = "missing", "Missing headers"
    INVALID = "invalid", "No matching signature"
    STALE = "stale", "Timestamp too old"
    FUTURE = "future", "Timestamp in the future"
    BAD_TOKEN = "bad_token", "Wrong URL token"
    NOT_CHECKED = "not_checked", "Not checked"


class ReceiptOutcome(models.TextChoices):
    """What became of one inbound request, as the inbound log shows it."""

    ACCEPTED = "accepted", "Stored"
    REPLAYED = "replayed", "Already received"
    REFUSED = "refused", "Refused"
    UNMAPPABLE = "unmappable", "Mapping failed"
    IGNORED = "ignored", "No route matched (ignored)"


class WebhookReceipt(models.Model):
    """One request to an endpoint, whatever became of it: the inbound log.

    An accepted receipt is also the record that its `webhook_id` was seen: the partial unique
    constraint lets the receiver claim the id in one statement, so a sender's retry is
    answered 2xx and stored only once. Kept WEBHOOK_LOG_RETENTION_DAYS (far longer than the
    5-minute signature tolerance, and longer than senders retry).
    """

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="receipts")
    received_at = models.DateTimeField(default=timezone.now)
    webhook_id = models.CharField(max_length=200, blank=True)
    status = models.PositiveSmallIntegerField()
    signature = models.CharField(max_length=20, choices=SignatureVerdict.choices)
    outcome = models.CharField(max_length=12, choices=ReceiptOutcome.choices)
    reason = models.CharField(max_length=300, blank=True)
    message_ids = models.JSONField(default=list, blank=True)
    body = models.BinaryField(blank=True)
    body_size = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "webhook_id"], name="webhook_receipt_seen_once",
                                    condition=models.Q(outcome="accepted")),
        ]
        indexes = [
            models.Index(fields=["endpoint", "-id"], name="webhook_receipt_endpoint"),
            models.Index(fields=["received_at"], name="webhook_receipt_time"),
        ]

    def __str__(self) -> str:
        return f"{self.webhook_id or '(no id)'}: {self.get_outcome_display()}"

    @property
    def body_kept(self) -> bool:
        return len(self.body or b"") == self.body_size and self.body_size > 0
