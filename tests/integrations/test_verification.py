"""Every verification outcome, against the emulator over HTTP."""
from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.models import Connection, Health, Outcome, Verification
from tests.conftest import new_write_key


def connect(alice: User, workspace: Workspace, key: str, region: str = "us", name: str = "Production") -> Connection:
    return services.connection_create(actor=Actor(user=alice, ip="203.0.113.9"), workspace=workspace,
                                      name=name, region=region, write_key=key)


def check(connection: Connection) -> Verification:
    run = connection.latest_verification
    assert run is not None
    result = services.verification_run(verification_id=run.pk)
    assert result is not None
    connection.refresh_from_db()
    return result


def statuses(run: Verification) -> dict[str, str]:
    return {c["check"]: c["status"] for c in run.checks}


def test_a_known_key_in_the_right_region_passes_every_check(segment: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    connection = connect(alice, workspace, key, region="eu")
    run = check(connection)
    assert run.outcome == Outcome.PASSED and connection.health == Health.HEALTHY
    assert statuses(run) == {"key_format": "passed", "cdn_lookup": "passed", "region": "passed",
                             "test_event": "passed"}
    assert run.summary.startswith("Key recognised by Segment · region EU confirmed · test event accepted")
    assert run.test_message_id in run.summary
    arrived = segment.events(write_key=key, message_id=run.test_message_id)
    assert [e["payload"]["event"] for e in arrived] == ["Segment Connection Tested"]


def test_an_unknown_key_fails_with_a_next_step(segment: Any, alice: User, workspace: Workspace) -> None:
    connection = connect(alice, workspace, new_write_key())
    run = check(connection)
    assert run.outcome == Outcome.FAILED and connection.health == Health.FAILING
    assert statuses(run) == {"key_format": "passed", "cdn_lookup": "failed", "region": "skipped",
                             "test_event": "skipped"}
    assert "does not recognise this write key" in run.summary
    assert run.test_message_id == ""


def test_a_key_of_the_other_region_is_caught_before_events_vanish(segment: Any, alice: User,
                                                                  workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    connection = connect(alice, workspace, key, region="us")
    run = check(connection)
    assert connection.health == Health.FAILING
    assert statuses(run)["region"] == "failed"
    assert "belongs to an EU source" in run.summary and "Change the region to EU" in run.summary
    assert segment.stats(key)["requests"] == 0 or segment.events(write_key=key) == []


def test_a_rate_limited_check_says_when_to_try_again(segment: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    segment.set_fault(key, scope="cdn", status=429, retry_after=17, seconds=30)
    connection = connect(alice, workspace, key)
    run = check(connection)
    assert run.outcome == Outcome.INCOMPLETE and connection.health == Health.DEGRADED
    assert run.retry_after == 17 and "Try again in 17 s" in run.summary


def test_a_server_error_is_an_incomplete_check_not_a_bad_key(segment: Any, alice: User,
                                                             workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    segment.set_fault(key, scope="tracking", status=503, count=1)
    connection = connect(alice, workspace, key)
    run = check(connection)
    assert connection.health == Health.DEGRADED
    assert statuses(run) == {"key_format": "passed", "cdn_lookup": "passed", "region": "passed",
                             "test_event": "failed"}
    assert "unexpected answer to the test event: HTTP 503" in run.summary


def test_a_timeout_says_segment_did_not_answer(segment: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    segment.set_fault(key, scope="cdn", latency_ms=2500, count=1)
    connection = connect(alice, workspace, key)
    run = check(connection)
    assert connection.health == Health.DEGRADED
    assert "timed out" in run.summary


def test_an_unreachable_segment_is_reported_as_such(segment: Any, settings: Any, alice: User,
                                                   workspace: Workspace) -> None:
    from segment_emulator.testing import free_ports

    settings.SEGMENT_CDN = f"http://127.0.0.1:{free_ports(1)[0]}/v1"  # nothing listens there
    connection = connect(alice, workspace, new_write_key())
    run = check(connection)
    assert connection.health == Health.DEGRADED
    assert "could not be reached" in run.summary


def test_a_key_revoked_in_segment_is_noticed_by_the_next_check(segment: Any, alice: User,
                                                               workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = connect(alice, workspace, key)
    assert check(connection).outcome == Outcome.PASSED
    segment.unregister_key(key)
    assert services.verifications_schedule_daily() == 1
    connection.refresh_from_db()
    assert check(connection).outcome == Outcome.FAILED and connection.health == Health.FAILING


def test_a_verdict_that_pauses_delivery_writes_the_connections_health_once(segment: Any, alice: User,
                                                                          workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = connect(alice, workspace, key)
    assert check(connection).outcome == Outcome.PASSED
    segment.unregister_key(key)
    assert services.verifications_schedule_daily() == 1
    connection.refresh_from_db()
    with CaptureQueriesContext(db) as queries:
        assert check(connection).outcome == Outcome.FAILED
    assert connection.health == Health.FAILING and "does not recognise this write key" in connection.paused_reason
    table = f'UPDATE "{Connection._meta.db_table}"'
    assert len([q for q in queries if q["sql"].startswith(table) and '"health"' in q["sql"]]) == 1
    [paused] = AuditEvent.objects.filter(action=AuditAction.CONNECTION_PAUSED, target_id=str(connection.pk))
    assert paused.details["reason"] == connection.paused_reason


def test_each_check_run_is_audited_with_its_outcome(segment: Any, alice: User, workspace: Workspace) -> None:
    connection = connect(alice, workspace, new_write_key())
    run = check(connection)
    row = AuditEvent.objects.get(action=AuditAction.CONNECTION_CHECKED)
    assert row.actor == alice and row.ip == "203.0.113.9" and row.target_id == str(connection.pk)
    assert row.details["outcome"] == "failed" and row.details["trigger"] == "created"
    assert row.details["summary"] == run.summary


def test_a_finished_check_is_not_run_again(segment: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = connect(alice, workspace, key)
    first = check(connection)
    before = segment.stats(key)["requests"]
    again = services.verification_run(verification_id=first.pk)
    assert again is not None and again.finished_at == first.finished_at
    assert segment.stats(key)["requests"] == before


def test_more_than_five_checks_a_minute_are_refused(segment: Any, alice: User, workspace: Workspace) -> None:
    connection = connect(alice, workspace, new_write_key())  # the first check
    for _ in range(4):
        services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    with pytest.raises(services.ChecksThrottled) as refused:
        services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
    assert 1 <= refused.value.seconds <= 61
    assert connection.verifications.count() == 5
    assert AuditEvent.objects.filter(action=AuditAction.CONNECTION_CHECK_THROTTLED).count() == 1


def test_an_unreadable_credential_sends_nothing_and_says_so(segment: Any, alice: User, workspace: Workspace) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    connection = connect(alice, workspace, key)
    Connection.objects.filter(pk=connection.pk).update(write_key_encrypted=connection.write_key_encrypted[:-8] + "AAAAAAA=")
    run = check(connection)
    assert connection.health == Health.UNREADABLE
    assert "Credential unreadable: paste the key again" in run.summary
    assert segment.stats(key)["requests"] == 0


@pytest.mark.django_db(transaction=True)
def test_creating_a_connection_runs_its_check_on_a_real_worker(segment: Any, celery_worker: Any, alice: User,
                                                               workspace: Workspace) -> None:
    import time

    key = new_write_key()
    segment.register_key(key, "us")
    connection = connect(alice, workspace, key)
    deadline = time.monotonic() + 15
    while connection.health == Health.PENDING and time.monotonic() < deadline:
        time.sleep(0.1)
        connection.refresh_from_db()
    assert connection.health == Health.HEALTHY
