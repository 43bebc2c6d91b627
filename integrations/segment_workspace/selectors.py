"""Reads about the customer's Segment workspace, for pages: each within a time budget, each
failure a PublicApiError whose message the page shows in place."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import DatabaseError
from django.db.models import Count
from django.db.models.functions import TruncDate

from accounts.models import Workspace
from integrations import crypto
from integrations.models import Connection, Outcome, PublicApiCall, SegmentSource, SegmentToken, Verification
from integrations.segment.public_api import (
    Budget,
    CallLog,
    Destination,
    Label,
    PublicApi,
    PublicApiError,
    Source,
    Warehouse,
    metric_windows,
)
from integrations.selectors.usage import connection_daily_usage

logger = logging.getLogger(__name__)


def segment_token_for_workspace(*, workspace: Workspace) -> SegmentToken | None:
    return SegmentToken.objects.filter(workspace=workspace).first()


def call_logger(workspace: Workspace | None, region: str) -> CallLog:
    """Records each Public API call for operators (no token, path as its template)."""

    def record(method: str, path: str, status: int | None, ms: int, outcome: str) -> None:
        try:
            PublicApiCall.objects.create(workspace=workspace, method=method, path=path[:120], region=region,
                                         status=status, duration_ms=ms, outcome=outcome[:16])
        except DatabaseError:  # the log must never break the page or the action
            logger.warning("segment.public_api_call_not_logged", extra={"path": path})

    return record


def api_for(row: SegmentToken, budget: Budget | None = None) -> PublicApi | None:
    """A client with the stored token, or None when it cannot be decrypted (fail closed)."""
    try:
        token = row.token()
    except crypto.CredentialUnreadable:
        return None
    return PublicApi(token=token, region=row.region, budget=budget,
                     on_call=call_logger(row.workspace, row.region))


def api_for_workspace(*, workspace: Workspace, budget: Budget | None = None) -> PublicApi:
    row = segment_token_for_workspace(workspace=workspace)
    if row is None:
        raise PublicApiError("no_token", "This workspace has no Segment token: an owner or admin adds one under "
                                         "Integrations → Segment workspace.")
    api = api_for(row, budget)
    if api is None:
        raise PublicApiError("unreadable", "The stored Segment token cannot be decrypted: an owner or admin must "
                                           "paste it again under Integrations → Segment workspace.")
    return api


def source_link_for_connection(*, connection: Connection) -> SegmentSource | None:
    """The Segment source the connection sends to, as Tributary knows it: None when unknown, or
    when the link was made for a write key since replaced (services.segment_source_find then
    looks again)."""
    link = SegmentSource.objects.filter(connection=connection).first()
    return link if link is not None and link.is_current(connection) else None


# --- the source list ---------------------------------------------------------------------


@dataclass(frozen=True)
class SourceChoice:
    source: Source
    connection: Connection | None  # the connection already sending to it, if any


@dataclass(frozen=True)
class SourceList:
    choices: list[SourceChoice]
    total: int | None
    complete: bool
    shown_limit: int

    @property
    def listed(self) -> int:
        return len(self.choices)


def source_choices(*, workspace: Workspace, query: str = "", limit: int = 200,
                   budget: Budget | None = None) -> tuple[SourceList, int]:
    """Every source of the Segment workspace (all pages), filtered by `query` on name, slug and
    labels, with the connection already sending to each. Answers the list (the first `limit`
    matches) and how many matched."""
    api = api_for_workspace(workspace=workspace, budget=budget)
    listing = api.sources()
    connections = list(Connection.objects.filter(workspace=workspace))
    by_source = {link.source_id: link.connection for link in
                 SegmentSource.objects.filter(connection__workspace=workspace, deleted_at__isnull=True)
                 .select_related("connection")}
    by_fingerprint = {c.write_key_fingerprint: c for c in connections}
    needle = query.strip().lower()
    matched: list[SourceChoice] = []
    for source in listing.items:
        if needle and not _matches(source, needle):
            continue
        connection = by_source.get(source.id) or next(
            (by_fingerprint[f] for f in (crypto.fingerprint(k) for k in source.write_keys) if f in by_fingerprint), None)
        matched.append(SourceChoice(source, connection))
    shown = SourceList(matched[:limit], listing.total, listing.complete, limit)
    return shown, len(matched)


def _matches(source: Source, needle: str) -> bool:
    haystack = [source.name, source.slug, *(str(label) for label in source.labels)]
    return any(needle in text.lower() for text in haystack)


# --- the "In Segment" tab ------------------------------------------------------------------


@dataclass(frozen=True)
class DestinationMetrics:
    destination: Destination
    windows: list[tuple[str, dict[str, int] | None, str]]  # label, totals (None: failed), error


def labels_part(*, api: PublicApi, source_id: str) -> tuple[Source, list[Label]]:
    """The source (its labels) and the workspace's labels not on it yet."""
    source = api.source(source_id)
    available = [label for label in api.labels() if label not in source.labels]
    return source, available


def destinations_part(*, api: PublicApi, source_id: str, now: datetime) -> list[DestinationMetrics]:
    rows = []
    for listed in api.destinations(source_id):
        destination = api.destination(listed.id) if listed.id else listed
        windows: list[tuple[str, dict[str, int] | None, str]] = []
        for label, granularity, start, end in metric_windows(now):
            try:
                totals = api.delivery_metrics(destination.id, source_id, start=start, end=end, granularity=granularity)
                windows.append((label, totals, ""))
            except PublicApiError as error:
                if error.kind in ("unauthorized", "timeout"):
                    raise
                windows.append((label, None, error.message))
        rows.append(DestinationMetrics(destination, windows))
    return rows


def warehouses_part(*, api: PublicApi, source_id: str) -> list[Warehouse]:
    return api.warehouses(source_id)


def schema_part(*, api: PublicApi, source_id: str) -> dict[str, Any]:
    return api.schema_settings(source_id)


@dataclass(frozen=True)
class UsageDay:
    day: date
    segment: int | None  # None: Segment reported nothing for the day
    tributary: int


def usage_part(*, api: PublicApi, source_id: str, connection: Connection, today: date) -> list[UsageDay]:
    """Segment's daily API calls for the source this usage month (differences of its cumulative
    counts) beside the API calls Tributary made to it, day by day: its delivery and replay
    requests (DeliveryCount) and the test event of each check Segment accepted."""
    period = today.replace(day=1)
    cumulative = {row.day: row.cumulative for row in api.daily_usage(period) if row.source_id == source_id}
    ours = {row.day: row.api_calls for row in
            connection_daily_usage(connection=connection, today=today, days=(today - period).days + 1)}
    for day, checks in _test_events_by_day(connection, since=period):
        ours[day] = ours.get(day, 0) + checks
    days, previous = [], 0
    day = period
    while day <= today:
        total = cumulative.get(day)
        segment = None if total is None else max(0, total - previous)
        previous = total if total is not None else previous
        days.append(UsageDay(day, segment, ours.get(day, 0)))
        day += timedelta(days=1)
    return days


def _test_events_by_day(connection: Connection, *, since: date) -> list[tuple[date, int]]:
    """Checks whose test event Segment accepted (a passed check sent one), per UTC day."""
    start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
    rows = (Verification.objects.filter(connection=connection, outcome=Outcome.PASSED, created_at__gte=start)
            .exclude(test_message_id="").annotate(day=TruncDate("created_at", tzinfo=UTC))
            .values("day").annotate(checks=Count("id")).values_list("day", "checks"))
    return list(rows)


def utc_now() -> datetime:
    return datetime.now(UTC)
