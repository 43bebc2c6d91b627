"""Reads of the events the ingest API refused, for the workspace's Rejected events page."""
from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Workspace
from integrations.models import RejectedEvent


def rejected_events_for_workspace(*, workspace: Workspace) -> QuerySet[RejectedEvent]:
    return RejectedEvent.objects.filter(workspace=workspace).order_by("-received_at", "-id")
