"""`/metrics`: the relay's figures in Prometheus' text exposition format (version 0.0.4).

Only for operators: a 404 while METRICS_TOKEN is unset, a 401 unless the request carries
`Authorization: Bearer <METRICS_TOKEN>` (compared in constant time).

Events ingested come from each workspace's log end (`EventStream.last_seq`, which only grows).
Delivery counters are sums of `DeliveryCount` rows since 00:00 UTC today: rows older than 30
days are trimmed, so a sum over every row would go down now and then, which Prometheus would
read as a reset at every trim; restarting once a day at midnight is one honest reset that
`rate()` and `increase()` handle. Every read is bounded: at most 144 bucket rows per connection,
one (workspace, seq) index probe per connection for the backlog's age, and per connection the
day's failed attempts through the (connection, outcome, started_at) index.
"""
from __future__ import annotations

import hmac
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from integrations.models import AttemptOutcome, Connection, DeliveryAttempt, DeliveryCount, Event, EventStream
from integrations.models.deliveries import LATENCY_BOUNDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
FAILED_OUTCOMES = (AttemptOutcome.REJECTED, AttemptOutcome.RETRYING, AttemptOutcome.REFUSED)
COUNTERS = (
    ("delivered", "events_delivered_total", "Events Segment accepted (HTTP 200) since 00:00 UTC today."),
    ("failed", "events_dead_lettered_total", "Events that failed for good and became dead letters (refused by Segment, "
                                             "or older than the maximum age) since 00:00 UTC today."),
    ("retried", "events_retried_total", "Events sent in requests that failed and will be retried (408, 429, 5xx, no "
                                        "answer) since 00:00 UTC today; an event counts once per failed request."),
    ("filtered", "events_filtered_total", "Events the connection's destination filters held back (sampled out, "
                                          "dropped, or a condition that failed), neither delivered nor failed, "
                                          "since 00:00 UTC today."),
    ("api_calls", "api_calls_total", "Requests to Segment's batch endpoint, whatever their outcome, since 00:00 UTC today."),
    ("bytes", "sent_bytes_total", "Bytes of request bodies sent to Segment since 00:00 UTC today."),
)
FIELDS = tuple(field for field, _, _ in COUNTERS)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404("No metrics here.")
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(offered.strip().encode(), token.encode()):
        response = HttpResponse("Send the operators' token: Authorization: Bearer <METRICS_TOKEN>.\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse("".join(exposition(timezone.now())), content_type=CONTENT_TYPE)


@dataclass
class Source:
    """One connection's figures since midnight, with its labels."""

    labels: str
    waiting: int
    oldest_age: float
    paused: bool
    enabled: bool
    failures: int
    counts: dict[str, int]
    latency: list[int]
    failed_calls: dict[str, int]


def exposition(now: datetime) -> Iterator[str]:
    midnight = datetime.combine(now.astimezone(UTC).date(), time.min, UTC)
    sources = list(_sources(now, midnight))
    yield from _family("events_ingested_total", "counter", "Events accepted into the workspace's event log since it "
                       "began (the log's last position).",
                       ((_labels(workspace=slug), last_seq) for slug, last_seq in
                        EventStream.objects.order_by("workspace__slug").values_list("workspace__slug", "last_seq")))
    for field, name, help_text in COUNTERS:
        yield from _family(name, "counter", help_text, ((s.labels, s.counts[field]) for s in sources))
    yield from _family("api_calls_failed_total", "counter", "Requests to Segment that did not deliver, by outcome: "
                       "rejected (400/413/422, split until the refused events stood alone), retrying (408, 429, 5xx, "
                       "no answer), refused (401/403: the key was refused), since 00:00 UTC today.",
                       ((f'{s.labels[:-1]},outcome="{outcome}"}}', s.failed_calls.get(outcome, 0))
                        for s in sources for outcome in FAILED_OUTCOMES))
    yield from _family("backlog_events", "gauge", "Events stored for the connection and not yet delivered.",
                       ((s.labels, s.waiting) for s in sources))
    yield from _family("backlog_oldest_seconds", "gauge", "Age of the oldest event waiting for the connection; 0 "
                       "when nothing waits.", ((s.labels, round(s.oldest_age, 3)) for s in sources))
    yield from _family("connection_enabled", "gauge", "1 when the connection is enabled.",
                       ((s.labels, int(s.enabled)) for s in sources))
    yield from _family("connection_paused", "gauge", "1 while delivery is paused (key unknown or unreadable) until a "
                       "check passes.", ((s.labels, int(s.paused)) for s in sources))
    yield from _family("connection_failures", "gauge", "Consecutive failed requests; 0 once Segment accepts a batch.",
                       ((s.labels, s.failures) for s in sources))
    yield from _latency(sources)


def _sources(now: datetime, midnight: datetime) -> Iterator[Source]:
    connections = _connections()
    ids = [row["pk"] for row in connections]
    counts, latency = _counts(ids, midnight)
    failed_calls = _failed_calls(ids, midnight)
    for row in connections:
        pk, oldest = row["pk"], row["oldest"]
        waiting = max(0, (row["log_end"] or 0) - row["delivered_seq"])
        yield Source(
            labels=_labels(workspace=row["workspace__slug"], connection_id=str(pk), connection=row["name"]),
            waiting=waiting, oldest_age=(now - oldest).total_seconds() if waiting and oldest else 0.0,
            paused=bool(row["paused_reason"]), enabled=row["enabled"], failures=row["failures"],
            counts=counts.get(pk, dict.fromkeys(FIELDS, 0)),
            latency=latency.get(pk, [0] * (len(LATENCY_BOUNDS) + 1)), failed_calls=failed_calls.get(pk, {}))


def _connections() -> list[dict[str, Any]]:
    """Every connection with its log end and the arrival of its oldest waiting event (one
    probe of the (workspace, seq) unique index each)."""
    log_end = EventStream.objects.filter(workspace_id=OuterRef("workspace_id")).values("last_seq")[:1]
    oldest = Event.objects.filter(workspace_id=OuterRef("workspace_id"), seq=OuterRef("delivered_seq") + 1)
    rows = (Connection.objects.order_by("workspace__slug", "pk")
            .annotate(log_end=Subquery(log_end), oldest=Subquery(oldest.values("received_at")[:1]))
            .values("pk", "name", "workspace__slug", "delivered_seq", "enabled", "paused_reason", "failures",
                    "log_end", "oldest"))
    return [dict(row) for row in rows]


def _counts(ids: list[int], midnight: datetime) -> tuple[dict[int, dict[str, int]], dict[int, list[int]]]:
    """The day's sums and latency histogram per connection. Filtering on the ids keeps it a
    range read of the (connection, bucket) unique index: there is no index on the bucket alone."""
    counts: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FIELDS, 0))
    latency: dict[int, list[int]] = defaultdict(lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    for row in DeliveryCount.objects.filter(connection_id__in=ids, bucket__gte=midnight).values_list(
            "connection_id", "latency", *FIELDS):
        pk, histogram, figures = row[0], row[1], row[2:]
        sums = counts[pk]
        for name, value in zip(FIELDS, figures, strict=True):
            sums[name] += value
        if len(histogram) == len(LATENCY_BOUNDS) + 1 and any(histogram):
            latency[pk] = [a + b for a, b in zip(latency[pk], histogram, strict=True)]
    return counts, latency


def _failed_calls(ids: list[int], midnight: datetime) -> dict[int, dict[str, int]]:
    """The day's requests that did not deliver, per connection and outcome: a range read of
    the (connection, outcome, started_at) index, never the whole attempt log."""
    found: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (DeliveryAttempt.objects.filter(connection_id__in=ids, outcome__in=FAILED_OUTCOMES,
                                           started_at__gte=midnight)
            .values("connection_id", "outcome").annotate(n=Count("pk")).order_by())
    for row in rows:
        found[row["connection_id"]][row["outcome"]] = row["n"]
    return found


def _latency(sources: list[Source]) -> Iterator[str]:
    name = "tributary_delivery_latency_seconds"
    yield (f"# HELP {name} Seconds from an event's arrival to Segment's 200 for it, since 00:00 UTC today. _sum is "
           "approximated from bucket midpoints (the last, open bucket counts at its lower bound).\n")
    yield f"# TYPE {name} histogram\n"
    midpoints = [(low + high) / 2 for low, high in zip((0.0, *LATENCY_BOUNDS), LATENCY_BOUNDS, strict=False)]
    midpoints.append(LATENCY_BOUNDS[-1])
    for source in sources:
        running = 0
        for bound, count in zip((*LATENCY_BOUNDS, None), source.latency, strict=True):
            running += count
            le = "+Inf" if bound is None else _number(bound)
            yield f'{name}_bucket{source.labels[:-1]},le="{le}"}} {running}\n'
        total = sum(c * m for c, m in zip(source.latency, midpoints, strict=True))
        yield f"{name}_sum{source.labels} {_number(round(total, 3))}\n"
        yield f"{name}_count{source.labels} {running}\n"


def _family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> Iterator[str]:
    yield f"# HELP tributary_{name} {help_text}\n"
    yield f"# TYPE tributary_{name} {kind}\n"
    for labels, value in samples:
        yield f"tributary_{name}{labels} {_number(value)}\n"


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{key}="{_escape(value)}"' for key, value in labels.items()) + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
