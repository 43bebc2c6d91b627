"""Appending to the event log: duplicates caught however they race, and a duplicate check
whose plan does not depend on the planner's statistics."""
from __future__ import annotations

import pytest
from django.db import DatabaseError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from accounts.models import Workspace
from integrations.ingest.messages import normalise
from integrations.models import Event, EventStream
from integrations.relay import log


def message(message_id: str, name: str = "Order Completed") -> log.Message:
    return normalise({"type": "track", "event": name, "userId": "u1", "messageId": message_id},
                     received_at=timezone.now())


@pytest.mark.skipif(db_connection.vendor == "postgresql",
                    reason="PostgreSQL checks under the workspace's lock: test_log_partitions.py races it")
def test_a_message_id_stored_by_a_concurrent_request_after_the_check_is_stored_once(
        db: None, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    log.events_append(workspace_id=workspace.pk, messages=[message("m-1")])
    # As if another request stored m-1 between this request's check and its insert: the
    # check sees nothing the first time, and the unique constraint has the last word.
    checks = []
    real_check = log._already_logged

    def stale_first_check(workspace_id: int, column: str, values: set[str]) -> set[str]:
        checks.append(column)
        return set() if len(checks) == 1 else real_check(workspace_id, column, values)

    monkeypatch.setattr(log, "_already_logged", stale_first_check)
    with transaction.atomic():  # as emit.message runs, inside the caller's transaction
        appended = log.events_append(workspace_id=workspace.pk, messages=[message("m-1"), message("m-2")])
    assert (appended.stored, appended.duplicates) == (1, ["m-1"])
    assert list(Event.objects.order_by("seq").values_list("seq", "message_id")) == [(1, "m-1"), (2, "m-2")]
    assert EventStream.objects.get(workspace=workspace).last_seq == 2


def test_repeats_within_one_batch_are_stored_once(db: None, workspace: Workspace) -> None:
    appended = log.events_append(workspace_id=workspace.pk, messages=[message("a"), message("b"), message("a")])
    assert (appended.stored, appended.duplicates) == (2, ["a"])


@pytest.mark.skipif(db_connection.vendor != "postgresql", reason="a PostgreSQL planner property")
def test_the_duplicate_check_probes_the_index_even_when_statistics_predate_the_workspace(
        db: None, workspace: Workspace, charlie_workspace: Workspace) -> None:
    # Statistics that know only another workspace, then a burst for this one: with the
    # workspace as a literal, PostgreSQL scanned all of this workspace's events per value.
    # (Long messageIds, as SDKs send UUIDs: the index's size tips the planner's choice.)
    log.events_append(workspace_id=charlie_workspace.pk,
                      messages=[message(f"charlie-{n:032d}") for n in range(20_000)])
    today = f"integrations_event_p{timezone.now():%Y%m%d}"
    with db_connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {today}")
    for start in range(0, 8000, 1000):
        log.events_append(workspace_id=workspace.pk,
                          messages=[message(f"workspace-{n:032d}") for n in range(start, start + 1000)])
    plans = _plans_inside_the_append(workspace, [f"workspace-{n:032d}" for n in range(8000, 8100)])
    check = next(plan for plan in plans if "INSERT INTO integrations_event" in plan)
    # One probe of today's (workspace, messageId) index per value, never a scan of today's rows.
    assert f"Index Only Scan using {today}_message_id_workspace_id_idx" in check, check
    assert f"Seq Scan on {today}" not in check and f"Bitmap Heap Scan on {today}" not in check, check


@pytest.mark.skipif(db_connection.vendor != "postgresql", reason="a PostgreSQL planner property")
def test_the_plan_kept_by_a_session_probes_the_index_of_a_partition_that_was_empty_when_planned(
        db: None, workspace: Workspace) -> None:
    # The append keeps one plan per session. Made while today's partition was recorded as
    # empty, a plan free to choose would scan it sequentially, and keep doing so as it fills.
    today = f"integrations_event_p{timezone.now():%Y%m%d}"
    with db_connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {today}")
    for start in range(0, 6000, 1000):  # the first call plans; the plan is kept after it
        log.events_append(workspace_id=workspace.pk,
                          messages=[message(f"filled-{n:032d}") for n in range(start, start + 1000)])
    plans = _plans_inside_the_append(workspace, [f"filled-{n:032d}" for n in range(6000, 6100)])
    check = next(plan for plan in plans if "INSERT INTO integrations_event" in plan)
    assert f"Index Only Scan using {today}_message_id_workspace_id_idx" in check, check
    assert f"Seq Scan on {today}" not in check and f"Bitmap Heap Scan on {today}" not in check, check


def _plans_inside_the_append(workspace: Workspace, message_ids: list[str]) -> list[str]:
    """The plans of the statements the append function runs, as auto_explain reports them."""
    messages = [message(m) for m in message_ids]
    raw = db_connection.connection
    plans: list[str] = []
    raw.add_notice_handler(lambda notice: plans.append(notice.message_primary or ""))
    with db_connection.cursor() as cursor:
        try:
            cursor.execute("LOAD 'auto_explain'")
        except DatabaseError:
            pytest.skip("auto_explain is not available to this database user")
        cursor.execute("SET LOCAL auto_explain.log_min_duration = 0")
        cursor.execute("SET LOCAL auto_explain.log_nested_statements = on")
        cursor.execute("SET LOCAL client_min_messages = log")
        log.events_append(workspace_id=workspace.pk, messages=messages)
        cursor.execute("SET LOCAL client_min_messages = notice")
    return plans
