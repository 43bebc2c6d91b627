"""Appending to the event log: duplicates caught however they race, and a duplicate check
whose plan does not depend on the planner's statistics."""
from __future__ import annotations

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from accounts.models import Workspace
from integrations.ingest.messages import normalise
from integrations.models import Event, EventStream
from integrations.relay import log


def message(message_id: str, name: str = "Order Completed") -> log.Message:
    return normalise({"type": "track", "event": name, "userId": "u1", "messageId": message_id},
                     received_at=timezone.now())


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
    with db_connection.cursor() as cursor:
        cursor.execute("ANALYZE integrations_event")
    for start in range(0, 8000, 1000):
        log.events_append(workspace_id=workspace.pk,
                          messages=[message(f"workspace-{n:032d}") for n in range(start, start + 1000)])
    with db_connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + log.already_logged_sql("message_id"),
                       [[f"workspace-{n:032d}" for n in range(8000, 8100)], workspace.pk])
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "event_unique_message_id" in plan and "message_id = t.value" in plan, plan
    assert "Filter" not in plan, plan
