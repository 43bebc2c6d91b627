"""A connection's figures as its Deliveries and Attempts tabs show them: backlog, counts and
latency per window and per day, the attempt log, the live panel, and who may see what.
Figures are checked against deliveries a real worker made to the emulator, faults included."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, DeliveryCount, Event
from integrations.relay.accounting import failures_record
from integrations.selectors.usage import (
    Backlog,
    attempts_page,
    connection_backlog,
    connection_daily_usage,
    connection_totals,
)
from tests.conftest import new_write_key
from tests.integrations.support import (
    admin_rows,
    dead_letter,
    deliver_with_faults,
    figures,
    record,
    state,
    url,
)

# --- end to end: a real worker delivering to the emulator --------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_page_counts_what_a_real_worker_delivered_retried_and_dead_lettered(
        segment: Any, celery_worker: Any, alice: User, alice_client: Client, workspace: Workspace,
        settings: Any) -> None:
    connection, key = deliver_with_faults(segment, alice, workspace, settings)
    page = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    cells = figures(page)
    batches = [r for r in segment.requests(write_key=key, kind="tracking") if r["path"] == "/v1/batch"]
    assert cells["delivered-hour"] == cells["delivered-day"] == cells["delivered-week"] == "9"
    assert cells["failed-hour"] == cells["undelivered-hour"] == "1"
    assert cells["retried-hour"] == "6"  # 3 events in each of the two refused requests
    assert cells["api-calls-hour"] == str(len(batches))
    statuses = [r["status"] for r in batches]
    assert cells["failed-calls-hour"] == str(statuses.count(503) + statuses.count(400))
    assert statuses.count(503) == 2 and statuses.count(400) >= 1 and statuses.count(200) == len(batches) - 2 - statuses.count(400)
    p50, p95 = cells["latency-hour"].split(" / ")
    assert re.fullmatch(r"\d+ ms|\d+\.\d s", p50) and re.fullmatch(r"\d+ ms|\d+\.\d s", p95)
    assert state(page) == "Degraded"  # a dead letter in the last 24 hours
    assert "1 event could not be delivered to this source" in page
    assert url("dead_letters", workspace, pk=connection.pk) in page
    assert key not in page

    log = alice_client.get(url("connection_attempts", workspace, pk=connection.pk)).content.decode()
    assert log.count('data-testid="attempt-row"') == len(batches)
    assert log.count("HTTP 503") == 2 and log.count("HTTP 400") == statuses.count(400) and "HTTP 200" in log
    assert "try 3" in log  # the 3 events that waited out two 503s
    retrying = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"outcome": "retrying"})
    assert retrying.content.decode().count('data-testid="attempt-row"') == 2
    assert key not in log


# --- backlog and counts ------------------------------------------------------------------


def test_the_backlog_is_the_log_end_minus_the_position_and_its_age_the_next_event(
        connection: Connection, workspace: Workspace) -> None:
    for n in range(4):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=1)
    second = timezone.now() - timedelta(minutes=3)
    Event.objects.filter(workspace=workspace, seq=2).update(received_at=second)
    connection.refresh_from_db()
    backlog = connection_backlog(connection=connection)
    assert (backlog.waiting, backlog.oldest_received_at) == (3, second)
    Connection.objects.filter(pk=connection.pk).update(delivered_seq=4)
    connection.refresh_from_db()
    assert connection_backlog(connection=connection) == Backlog(0, None)


def test_counts_fall_into_the_last_hour_day_and_week(connection: Connection) -> None:
    record(connection, ago=timedelta(minutes=1), events=5, latency=0.04)
    record(connection, ago=timedelta(hours=5), events=7, latency=3.0)
    record(connection, ago=timedelta(days=3), events=11, latency=3.0)
    record(connection, ago=timedelta(days=9), events=13)
    record(connection, ago=timedelta(hours=2), events=2, status=429, outcome=AttemptOutcome.RETRYING)
    failures_record(connection_id=connection.pk, at=timezone.now() - timedelta(days=2), events=1)
    hour, day, week = connection_totals(connection=connection, now=timezone.now())
    assert (hour.delivered, day.delivered, week.delivered) == (5, 12, 23)
    assert (hour.retried, day.retried, week.retried) == (0, 2, 2)
    assert (hour.failed, day.failed, week.failed) == (0, 0, 1)
    assert (hour.api_calls, day.api_calls, week.api_calls) == (1, 3, 4)
    assert (hour.failed_calls, day.failed_calls, week.failed_calls) == (0, 1, 1)
    assert hour.p95 is not None and hour.p95 <= 0.05  # every event of the last hour took 40 ms
    assert day.p50 is not None and 2.5 <= day.p50 <= 5.0


def test_failed_api_calls_are_said_apart_from_the_events_delivered(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    """6 calls, 5 of them failing: nothing reads as if the 6 calls had delivered."""
    for attempt in range(1, 6):
        record(connection, ago=timedelta(minutes=30 - attempt), events=36, status=503,
               outcome=AttemptOutcome.RETRYING, attempt=attempt)
    record(connection, ago=timedelta(minutes=1), events=1)
    overview = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
    panel = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    for page in (overview, panel):
        note = re.search(r'data-testid="api-calls-24h">([^<]*)<', page)
        assert note and note.group(1) == "event delivered · 6 API calls, 5 failed"
        assert "in 6 API calls" not in page
    cells = figures(panel)
    assert (cells["delivered-day"], cells["api-calls-day"], cells["failed-calls-day"]) == ("1", "6", "5")
    assert cells["retried-day"] == "180"
    assert "Retries <span class=\"figure-help\">an event counts once per failed request" in panel


def test_the_dead_letter_caption_says_none_wait_when_there_are_none(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    def caption() -> str:
        page = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
        found = re.search(r'data-testid="dead-letters-note"><a [^>]*>([^<]*)<', page)
        assert found
        return found.group(1)

    assert caption() == "none waiting for a replay"
    dead_letter(connection, 1)
    assert caption() == "not delivered yet"


def test_latency_never_reads_above_the_slowest_event_in_a_wide_bucket(connection: Connection) -> None:
    # An outage of 9.4 minutes: every event waited that long, inside the bucket from 5 minutes
    # to an hour, whose interpolated p95 alone would read almost an hour.
    record(connection, ago=timedelta(minutes=1), events=20, latency=564.0)
    hour = connection_totals(connection=connection, now=timezone.now())[0]
    assert hour.p95 == 564.0 and hour.p50 == 564.0


def test_a_window_with_rows_counted_before_the_maximum_existed_is_not_clamped(connection: Connection) -> None:
    record(connection, ago=timedelta(minutes=1), events=10, latency=0.3)
    DeliveryCount.objects.filter(connection=connection).update(latency_max=0)
    hour = connection_totals(connection=connection, now=timezone.now())[0]
    assert hour.p95 is not None and hour.p95 > 0.4


# --- the chart ---------------------------------------------------------------------------


def test_the_chart_has_thirty_days_with_zeros_where_nothing_happened(connection: Connection) -> None:
    record(connection, events=4)
    record(connection, events=6)
    record(connection, ago=timedelta(days=3), events=9)
    record(connection, ago=timedelta(days=29), events=1)
    record(connection, ago=timedelta(days=31), events=100)  # before the chart
    today = timezone.now().date()
    usage = connection_daily_usage(connection=connection, today=today)
    assert len(usage) == 30 and usage[0].day == today - timedelta(days=29) and usage[-1].day == today
    by_day = {u.day: (u.delivered, u.api_calls) for u in usage}
    assert by_day[today] == (10, 2)
    assert by_day[today - timedelta(days=3)] == (9, 1)
    assert by_day[today - timedelta(days=29)] == (1, 1)
    assert sum(u.delivered for u in usage) == 20 and sum(1 for u in usage if u.delivered == 0) == 27


# --- the attempt log ---------------------------------------------------------------------


def test_the_attempt_log_pages_newest_first_and_back(alice_client: Client, workspace: Workspace,
                                                      connection: Connection) -> None:
    for n in range(120):
        record(connection, ago=timedelta(seconds=200 - n), events=n + 1)
    page = attempts_page(connection=connection)
    assert [a.events for a in page.attempts] == list(range(120, 70, -1)) and page.newer is None
    second = attempts_page(connection=connection, before=page.older)
    assert [a.events for a in second.attempts] == list(range(70, 20, -1))
    last = attempts_page(connection=connection, before=second.older)
    assert [a.events for a in last.attempts] == list(range(20, 0, -1)) and last.older is None
    back = attempts_page(connection=connection, after=last.newer)
    assert [a.events for a in back.attempts] == [a.events for a in second.attempts]
    assert attempts_page(connection=connection, after=back.newer).newer is None

    assert page.older is not None
    response = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"before": page.older})
    body = response.content.decode()
    assert body.count('data-testid="attempt-row"') == 50 and f"after={second.newer}" in body


def test_the_attempt_log_filters_by_outcome_and_shows_replays(alice_client: Client, workspace: Workspace,
                                                               connection: Connection) -> None:
    record(connection, events=3)
    record(connection, events=2, status=400, outcome=AttemptOutcome.REJECTED, reply='{"error":"payload too large"}')
    record(connection, events=1, replay=True)
    response = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"outcome": "rejected"})
    body = response.content.decode()
    assert body.count('data-testid="attempt-row"') == 1 and "payload too large" in body
    assert "Outcome “Rejected”" in body
    everything = alice_client.get(url("connection_attempts", workspace, pk=connection.pk)).content.decode()
    assert everything.count('data-testid="attempt-row"') == 3 and "badge-replay" in everything
    empty = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"outcome": "refused"})
    assert "No attempts with this outcome" in empty.content.decode()


def test_an_unknown_outcome_is_explained_next_to_the_filter(alice_client: Client, workspace: Workspace,
                                                              connection: Connection) -> None:
    record(connection)
    response = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"outcome": "exploded"})
    assert response.status_code == 422
    assert "Choose one of the listed outcomes; “exploded” is not one. Showing every outcome." in \
        response.content.decode().replace("&ldquo;", "“").replace("&rdquo;", "”")
    assert response.content.decode().count('data-testid="attempt-row"') == 1


def test_a_broken_page_link_says_so_and_shows_the_newest(alice_client: Client, workspace: Workspace,
                                                          connection: Connection) -> None:
    record(connection)
    response = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"before": "abc"})
    body = response.content.decode()
    assert response.status_code == 422 and "That page link is not valid" in body
    assert body.count('data-testid="attempt-row"') == 1


def test_the_filter_swaps_only_the_table_for_htmx(alice_client: Client, workspace: Workspace,
                                                  connection: Connection) -> None:
    record(connection)
    response = alice_client.get(url("connection_attempts", workspace, pk=connection.pk), {"outcome": "delivered"},
                                HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert body.lstrip().startswith("<section id=\"attempts\"") or 'id="attempts"' in body.split("\n", 5)[-1]
    assert "<html" not in body and 'data-testid="attempt-row"' in body


# --- the live panel ----------------------------------------------------------------------


def test_the_panel_polls_itself_and_answers_alone(alice_client: Client, workspace: Workspace,
                                                   connection: Connection) -> None:
    partial = url("connection_deliveries", workspace, pk=connection.pk)
    page = alice_client.get(partial).content.decode()
    assert f'hx-get="{partial}" hx-trigger="every 5s" data-poll' in page
    record(connection, events=42)
    panel = alice_client.get(partial, HTTP_HX_REQUEST="true").content.decode()
    assert panel.lstrip().startswith("<div id=\"deliveries-panel\"") and "<html" not in panel
    assert figures(panel)["delivered-hour"] == "42"


def test_the_page_stays_within_a_fixed_number_of_queries_however_much_history(
        alice_client: Client, workspace: Workspace, connection: Connection,
        django_assert_max_num_queries: Any) -> None:
    for days in range(0, 30, 2):
        record(connection, ago=timedelta(days=days, minutes=5), events=50)
    failures_record(connection_id=connection.pk, at=timezone.now(), events=3)
    emit.track(workspace, "Signed Up", user_id="u1")
    dead_letter(connection, 1)
    # Signing in, the membership and the session's save take 6 of them; the banner 2.
    for tab in ("connection", "connection_deliveries", "connection_checks", "connection_settings"):
        with django_assert_max_num_queries(20):
            assert alice_client.get(url(tab, workspace, pk=connection.pk)).status_code == 200
    # The polled parts: the figures panel (6 reads), the top (4), the top with the overview (7).
    with django_assert_max_num_queries(13):
        assert alice_client.get(url("connection_deliveries", workspace, pk=connection.pk),
                                HTTP_HX_REQUEST="true").status_code == 200
    with django_assert_max_num_queries(11):
        assert alice_client.get(url("connection_state", workspace, pk=connection.pk)).status_code == 200
    with django_assert_max_num_queries(14):
        assert alice_client.get(url("connection_state", workspace, pk=connection.pk),
                                {"tab": "overview"}).status_code == 200


# --- who sees what -----------------------------------------------------------------------


def test_an_outsider_gets_404_on_the_deliveries_of_a_connection(charlie_client: Client, workspace: Workspace,
                                                                 connection: Connection) -> None:
    for name in ("connection", "connection_deliveries", "connection_attempts", "connection_state",
                 "connection_checks", "connection_settings"):
        assert charlie_client.get(url(name, workspace, pk=connection.pk)).status_code == 404


def test_another_workspaces_connection_is_a_404_even_to_its_owner(alice_client: Client, workspace: Workspace,
                                                                  charlie: User, charlie_workspace: Workspace) -> None:
    theirs = services.connection_create(actor=Actor(user=charlie), workspace=charlie_workspace, name="Theirs",
                                        region="us", write_key=new_write_key())
    for name in ("connection_deliveries", "connection_attempts", "connection_state", "connection_checks",
                 "connection_settings"):
        assert alice_client.get(url(name, workspace, pk=theirs.pk)).status_code == 404


def test_a_member_sees_the_deliveries_but_no_forms(bob_client: Client, workspace: Workspace,
                                                   connection: Connection) -> None:
    record(connection, events=8)
    page = bob_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    assert figures(page)["delivered-hour"] == "8" and "Replace write key" not in page
    assert bob_client.get(url("connection_attempts", workspace, pk=connection.pk)).status_code == 200


# --- operators in the admin --------------------------------------------------------------


def test_operators_read_the_attempt_log_by_outcome_status_replay_and_name(
        operator_client: Client, alice: User, workspace: Workspace, connection: Connection) -> None:
    staging = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging", region="eu",
                                         write_key=new_write_key())
    record(connection, events=3, reply='{"success":true,"marker":"first"}')
    record(connection, events=1, status=429, outcome=AttemptOutcome.RETRYING, reply="Too Many Requests, marker two")
    record(connection, events=2, status=None, outcome=AttemptOutcome.RETRYING, reply="No answer from Segment (timeout).")
    record(staging, events=5, replay=True, reply="replayed marker")
    everything = admin_rows(operator_client, "deliveryattempt")
    assert everything.count('class="field-started_at') == 4
    assert "Production (•••• " in everything and connection.write_key() not in everything
    assert "Too Many Requests, marker two" in admin_rows(operator_client, "deliveryattempt", status="429")
    no_answer = admin_rows(operator_client, "deliveryattempt", status="none")
    assert "No answer from Segment" in no_answer and no_answer.count('class="field-started_at') == 1
    assert admin_rows(operator_client, "deliveryattempt", outcome="retrying").count('class="field-started_at') == 2
    assert "replayed marker" in admin_rows(operator_client, "deliveryattempt", replay__exact="1")
    by_name = admin_rows(operator_client, "deliveryattempt", q="Staging")
    assert by_name.count('class="field-started_at') == 1 and "replayed marker" in by_name
    assert admin_rows(operator_client, "deliveryattempt", q=workspace.slug).count('class="field-started_at') == 4


def test_operators_read_the_counts_with_percentiles_and_change_nothing(
        operator_client: Client, connection: Connection) -> None:
    attempt = record(connection, events=10, latency=0.3)
    page = admin_rows(operator_client, "deliverycount")
    # 10 events of 0.3 s, in the bucket from 0.25 to 0.5 s: interpolation alone would say 0.375 s
    # and 0.4875 s, but no percentile reads above the slowest event seen.
    assert 'class="field-latency_p50">0.300 s</td>' in page and 'class="field-latency_p95">0.300 s</td>' in page
    assert "Production (•••• " in page
    assert connection.write_key() not in page
    count = DeliveryCount.objects.get(connection=connection)
    for model, pk in (("deliveryattempt", attempt.pk), ("deliverycount", count.pk)):
        change = reverse(f"admin:integrations_{model}_change", args=[pk])
        assert 'name="_save"' not in operator_client.get(change).content.decode()
        assert operator_client.post(change, {"events": 999}).status_code == 403
        assert operator_client.get(reverse(f"admin:integrations_{model}_add")).status_code == 403
