"""`/metrics` for operators: closed without a token, Prometheus' text format with one, and
numbers that match what a real worker delivered to the emulator."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.db.models import Sum
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, DeliveryAttempt, Event
from integrations.models.deliveries import LATENCY_BOUNDS
from integrations.relay.accounting import Sent, attempt_record, failures_record
from tests.conftest import new_write_key
from tests.integrations.support import deliver_with_faults

TOKEN = "operators-only-6f1c2a9e"

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = rf'({NAME})="((?:[^"\\\n]|\\[\\"n])*)"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{((?:{LABEL})(?:,{LABEL})*)?\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus' text exposition format 0.0.4, strictly: HELP and TYPE before a family's
    samples, each family once, label values unescaped, histograms cumulative and ending
    with +Inf equal to _count. Returns {(name, labels): value}."""
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    types: dict[str, str] = {}
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, f"HELP without text: {line}"
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in TYPES and name not in types, f"bad or repeated TYPE: {line}"
            types[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name, labels_text, value = match.group(1), match.group(2) or "", match.group(7)
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
            assert family in types, f"{name} has no TYPE before it"
            pairs = re.findall(LABEL, labels_text)
            labels = frozenset((k, v.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")) for k, v in pairs)
            assert (name, labels) not in samples, f"repeated sample {line}"
            samples[(name, labels)] = float(value)
    for family in (n for n, kind in types.items() if kind == "histogram"):
        check_histograms(family, samples)
    return samples


def check_histograms(family: str, samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> None:
    series: dict[frozenset[tuple[str, str]], list[tuple[float, float]]] = {}
    for (name, labels), value in samples.items():
        if name == f"{family}_bucket":
            le = dict(labels)["le"]
            series.setdefault(labels - {("le", le)}, []).append((float(le), value))
    assert series, f"{family} has no buckets"
    for labels, buckets in series.items():
        buckets.sort()
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), f"{family} buckets are not cumulative"
        assert buckets[-1][0] == float("inf") and buckets[-1][1] == samples[(f"{family}_count", labels)]
        assert (f"{family}_sum", labels) in samples


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[(f"tributary_{name}", frozenset(labels.items()))]


def scrape(client: Client) -> str:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    return response.content.decode()


@pytest.fixture
def token(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                      region="us", write_key=new_write_key())


# --- who may read it ---------------------------------------------------------------------


def test_without_a_configured_token_metrics_do_not_exist(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 404


@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_a_missing_or_wrong_token_is_refused_with_401(client: Client, token: str, header: str | None,
                                                      db: None) -> None:
    response = client.get("/metrics", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "tributary_" not in response.content.decode()


def test_signing_in_is_not_a_token(alice_client: Client, token: str) -> None:
    assert alice_client.get("/metrics").status_code == 401


# --- what it says ------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_numbers_match_what_a_real_worker_delivered_to_segment(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, client: Client, token: str,
        settings: Any) -> None:
    connection, key = deliver_with_faults(segment, alice, workspace, settings)
    samples = parse(scrape(client))
    labels = {"workspace": workspace.slug, "connection_id": str(connection.pk), "connection": "Production"}

    batches = [r for r in segment.requests(write_key=key, kind="tracking") if r["path"] == "/v1/batch"]
    accepted = [e for e in segment.events(write_key=key, limit=1000) if "tributary" in e["payload"]["context"]]
    assert value(samples, "events_ingested_total", workspace=workspace.slug) == 10
    assert value(samples, "events_delivered_total", **labels) == len(accepted) == 9
    assert value(samples, "events_dead_lettered_total", **labels) == 1
    assert value(samples, "events_retried_total", **labels) == 6
    assert value(samples, "api_calls_total", **labels) == len(batches)
    assert value(samples, "api_calls_failed_total", **labels, outcome="retrying") == 2
    rejected = sum(1 for r in batches if r["status"] == 400)  # 1 or 2: see deliver_with_faults
    assert rejected >= 1 and value(samples, "api_calls_failed_total", **labels, outcome="rejected") == rejected
    assert value(samples, "api_calls_failed_total", **labels, outcome="refused") == 0
    sent = DeliveryAttempt.objects.filter(connection=connection).aggregate(n=Sum("bytes"))["n"]
    assert value(samples, "sent_bytes_total", **labels) == sent
    assert value(samples, "backlog_events", **labels) == 0 and value(samples, "backlog_oldest_seconds", **labels) == 0
    assert value(samples, "connection_enabled", **labels) == 1 and value(samples, "connection_paused", **labels) == 0
    assert value(samples, "delivery_latency_seconds_count", **labels) == 9
    assert value(samples, "delivery_latency_seconds_bucket", **labels, le="+Inf") == 9
    assert value(samples, "delivery_latency_seconds_sum", **labels) > 0
    assert key not in str(samples)


def test_counters_start_at_midnight_utc_and_histograms_carry_every_bound(
        client: Client, token: str, connection: Connection, workspace: Workspace) -> None:
    now = timezone.now()
    attempt_record(connection_id=connection.pk, sent=Sent(1, 4, 4, 1200), started_at=now, duration_ms=30,
                   status=200, outcome=AttemptOutcome.DELIVERED, reply="", latencies=[0.07, 0.07, 0.3, 4000.0])
    since_midnight = (now - now.replace(hour=0, minute=0, second=0, microsecond=0)).total_seconds()
    yesterday = now - timedelta(seconds=since_midnight + 600)
    attempt_record(connection_id=connection.pk, sent=Sent(5, 9, 5, 1500), started_at=yesterday, duration_ms=30,
                   status=200, outcome=AttemptOutcome.DELIVERED, reply="", latencies=[0.07] * 5)
    failures_record(connection_id=connection.pk, at=yesterday, events=3)
    samples = parse(scrape(client))
    labels = {"workspace": workspace.slug, "connection_id": str(connection.pk), "connection": "Production"}
    assert value(samples, "events_delivered_total", **labels) == 4
    assert value(samples, "events_dead_lettered_total", **labels) == 0
    assert value(samples, "api_calls_total", **labels) == 1 and value(samples, "sent_bytes_total", **labels) == 1200
    buckets = {float(dict(k[1])["le"]): v for k, v in samples.items()
               if k[0] == "tributary_delivery_latency_seconds_bucket" and ("connection_id", str(connection.pk)) in k[1]}
    assert sorted(buckets) == [*LATENCY_BOUNDS, float("inf")]
    assert (buckets[0.05], buckets[0.1], buckets[0.25], buckets[0.5], buckets[3600.0], buckets[float("inf")]) == (
        0, 2, 2, 3, 3, 4)
    # _sum from midpoints: 2 x 0.075 + 0.375 + 3600 (the open bucket at its lower bound).
    assert value(samples, "delivery_latency_seconds_sum", **labels) == pytest.approx(3600.525)


def test_the_backlog_and_pause_of_each_connection(client: Client, token: str, alice: User, workspace: Workspace,
                                                  connection: Connection) -> None:
    idle = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Idle", region="eu",
                                      write_key=new_write_key())
    for n in range(3):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    Event.objects.filter(workspace=workspace, seq=1).update(received_at=timezone.now() - timedelta(seconds=90))
    Connection.objects.filter(pk=idle.pk).update(delivered_seq=3)
    services.connection_pause(connection_id=connection.pk, health="failing", reason="Unknown key.")
    samples = parse(scrape(client))
    waiting = {"workspace": workspace.slug, "connection_id": str(connection.pk), "connection": "Production"}
    caught_up = {"workspace": workspace.slug, "connection_id": str(idle.pk), "connection": "Idle"}
    assert value(samples, "backlog_events", **waiting) == 3
    assert 90 <= value(samples, "backlog_oldest_seconds", **waiting) < 120
    assert value(samples, "connection_paused", **waiting) == 1
    assert value(samples, "backlog_events", **caught_up) == 0 and value(samples, "connection_paused", **caught_up) == 0
    assert value(samples, "events_delivered_total", **caught_up) == 0  # no counts yet: zeros, not missing


def test_label_values_are_escaped(client: Client, token: str, connection: Connection, alice: User,
                                  workspace: Workspace) -> None:
    services.connection_rename(actor=Actor(user=alice), connection=connection, name='Prod "EU" \\ main')
    text = scrape(client)
    assert 'connection="Prod \\"EU\\" \\\\ main"' in text
    samples = parse(text)
    assert value(samples, "backlog_events", workspace=workspace.slug, connection_id=str(connection.pk),
                 connection='Prod "EU" \\ main') == 0


def test_a_scrape_reads_a_fixed_number_of_times_however_many_connections(
        client: Client, token: str, alice: User, workspace: Workspace, django_assert_max_num_queries: Any) -> None:
    for n in range(12):
        extra = services.connection_create(actor=Actor(user=alice), workspace=workspace, name=f"Source {n}",
                                           region="us", write_key=new_write_key())
        attempt_record(connection_id=extra.pk, sent=Sent(1, 1, 1, 300), started_at=timezone.now(), duration_ms=5,
                       status=503, outcome=AttemptOutcome.RETRYING, reply="")
    with django_assert_max_num_queries(6):
        scrape(client)
