"""Historical imports: a file of past events, validated line by line, then appended to the
workspace's log in chunks by Celery, resumable from the last committed chunk."""
from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from accounts.models import Workspace


class ImportStatus(models.TextChoices):
    VALIDATING = "validating", "Checking the file"
    VALIDATED = "validated", "Checked: waiting for your choice"
    IMPORTING = "importing", "Importing"
    DONE = "done", "Imported"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="import_jobs")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)
    file_name = models.CharField(max_length=200)  # as uploaded or given, for people
    path = models.CharField(max_length=500, editable=False)  # where the file is kept while the job lives
    format = models.CharField(max_length=5)  # "jsonl" or "csv"
    size = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.VALIDATING)
    # After validation: import the valid lines (True) or, with invalid lines, nothing.
    import_valid_only = models.BooleanField(default=False)
    lines_total = models.PositiveIntegerField(default=0)
    lines_valid = models.PositiveIntegerField(default=0)
    lines_invalid = models.PositiveIntegerField(default=0)
    errors_path = models.CharField(max_length=500, blank=True, editable=False)  # the downloadable report
    # Progress, committed with each chunk's events: a restarted worker resumes from here.
    offset_done = models.BigIntegerField(default=0)  # byte offset of the next line to read
    lines_done = models.PositiveIntegerField(default=0)
    events_stored = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    failure = models.CharField(max_length=300, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"
