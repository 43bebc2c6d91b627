"""Reads of a workspace's tracking plan, blocked events and violation counts. The workspace
comes from the member-checked request, so another workspace's blocked event is a 404 here."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from accounts.models import Workspace
from integrations.models import BlockedEvent, TrackingPlan, ViolationCount
from integrations.tracking_plans.enforcement import KIND_WORDS

WINDOWS = (("1h", timedelta(hours=1)), ("24h", timedelta(hours=24)), ("7d", timedelta(days=7)))


def plan_get(*, workspace: Workspace) -> TrackingPlan | None:
    return TrackingPlan.objects.filter(workspace=workspace).select_related("forward_violations_to").first()


def blocked_events(*, workspace: Workspace, released: bool = False) -> QuerySet[BlockedEvent]:
    return (BlockedEvent.objects.filter(workspace=workspace, released_at__isnull=not released)
            .order_by("-blocked_at", "-pk"))


def blocked_event_get(*, workspace: Workspace, pk: int) -> BlockedEvent:
    try:
        return BlockedEvent.objects.get(workspace=workspace, pk=pk)
    except BlockedEvent.DoesNotExist:
        raise Http404("No such blocked event.") from None


@dataclass
class ViolationGroup:
    event_type: str
    event_name: str
    kind: str
    counts: dict[str, int] = field(default_factory=dict)
    fields: list[str] = field(default_factory=list)

    @property
    def kind_words(self) -> str:
        return KIND_WORDS.get(self.kind, self.kind)


def violations_summary(*, workspace: Workspace, event_name: str | None = None) -> list[ViolationGroup]:
    """Violations of the last 7 days by event and kind, with counts for 1 h, 24 h and 7 d,
    most frequent in the last 24 h first."""
    now = timezone.now()
    rows = ViolationCount.objects.filter(workspace=workspace, minute__gte=now - WINDOWS[-1][1])
    if event_name is not None:
        rows = rows.filter(event_name=event_name)
    sums = {f"n_{label}": Sum("count", filter=Q(minute__gte=now - span)) for label, span in WINDOWS}
    groups: dict[tuple[str, str, str], ViolationGroup] = {}
    for row in rows.values("event_type", "event_name", "kind", "field").annotate(**sums):
        key = (row["event_type"], row["event_name"], row["kind"])
        group = groups.setdefault(key, ViolationGroup(*key, counts={label: 0 for label, _ in WINDOWS}))
        for label, _ in WINDOWS:
            group.counts[label] += int(row[f"n_{label}"] or 0)  # type: ignore[literal-required]
        if row["field"] and row["field"] not in group.fields:
            group.fields.append(row["field"])
    return sorted(groups.values(), key=lambda g: (-g.counts["24h"], -g.counts["7d"], g.event_name, g.kind))
