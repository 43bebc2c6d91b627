"""Ingest keys: how the platform authenticates to Tributary's Segment-compatible HTTP API."""
from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Workspace

KEY_PREFIX = "trb_"


class IngestKeyQuerySet(models.QuerySet["IngestKey"]):
    def active(self) -> IngestKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class IngestKey(models.Model):
    """A workspace's key for the ingest API, sent as Segment sends a write key.

    Only a SHA-256 of the key is stored: the key is high-entropy, so a fast hash is enough,
    and the plaintext is shown once, at creation. `hint` keeps its last four characters.
    """

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="ingest_keys")
    name = models.CharField(max_length=80)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=4, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = IngestKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({KEY_PREFIX}…{self.hint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    @staticmethod
    def generate() -> str:
        return KEY_PREFIX + secrets.token_urlsafe(30)

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()
