"""A connection's health as every page shows it: the one word, why, what to do next and
who can do it; the workspace's "needs attention" banner; and the empty states that say how
many events are held and why."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.ingest import emit
from integrations.models import AttemptOutcome, Connection, DeadLetter, Event, Health, Outcome, Verification
from integrations.selectors.health import HELD, ConnectionHealth, connection_state, workspace_attention
from integrations.selectors.overview import connection_overview
from tests.conftest import new_write_key
from tests.integrations.support import admin_rows, checked, dead_letter, figures, record, state, url

# --- health ------------------------------------------------------------------------------


def health(connection: Connection, *, can_manage: bool = True) -> ConnectionHealth:
    connection.refresh_from_db()
    found = connection_overview(connection=connection, can_manage=can_manage).health
    # The top of every tab derives it with fewer reads; it must say the same.
    assert connection_state(connection=connection, can_manage=can_manage) == found
    return found


def test_a_new_connection_says_checking_until_its_check_passes_and_never_healthy_before(
        alice: User, workspace: Workspace, segment: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    new = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production", region="us",
                                     write_key=key)
    found = health(new)
    assert (found.word, found.checking, found.alert) == ("Checking", True, False)
    assert found.summary.startswith("Checking the key with Segment…")
    for n in range(12):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    assert "12 events wait for the verdict" in health(new).summary
    found = health(checked(new))
    assert (found.word, found.issues) == ("Healthy", [])
    assert found.summary == "Sending the 12 events that waited for the check; the oldest arrived 0 s ago."


def test_a_new_connection_is_healthy_once_checked_and_says_nothing_was_sent_yet(connection: Connection) -> None:
    found = health(connection)
    assert (found.state, found.word, found.issues) == ("healthy", "Healthy", [])
    assert "No events sent yet" in found.summary


def test_an_unknown_key_says_why_what_to_do_and_that_events_are_kept(
        alice: User, workspace: Workspace, segment: Any) -> None:
    new = checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging",
                                             region="us", write_key=new_write_key()))
    emit.track(workspace, "Signed Up", user_id="u1")
    found = health(new)
    assert (found.word, found.alert, found.short) == ("Paused", True, "delivery is paused")
    assert "Events are kept and will be sent once a check passes." in found.summary
    assert found.summary.startswith("Nothing is sent. 1 event waits: nothing is lost.")
    assert found.issues[0].reason.startswith("Segment does not recognise this write key")
    assert (found.issues[0].action, found.issues[0].action_label) == ("replace-key", "Replace the write key")


def test_a_key_in_the_other_region_links_to_the_region_control(
        alice: User, workspace: Workspace, segment: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    new = checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                             region="us", write_key=key))
    found = health(new)
    assert found.word == "Paused" and found.issues[0].reason.startswith("Wrong region: this key belongs to an EU source")
    assert found.issues[0].action == "region" and "no need to paste it" in found.issues[0].next_step
    services.connection_change_region(actor=Actor(user=alice), connection=new, region="eu")
    assert health(new).word == "Checking"
    assert health(checked(new)).word == "Healthy"


def test_an_incomplete_check_leaves_the_connection_waiting_and_says_so(
        alice: User, workspace: Workspace, segment: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "us")
    segment.set_fault(key, scope="cdn", status=503, count=1)
    new = checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                             region="us", write_key=key))
    assert new.awaiting_check and new.latest_verification is not None
    assert new.latest_verification.outcome == Outcome.INCOMPLETE
    found = health(new)
    assert (found.word, found.alert) == ("Waiting for a check", True)
    assert found.issues[0].reason.startswith("The check could not finish")
    assert "Run the check again" in found.issues[0].next_step and found.issues[0].action == "check"
    assert HELD in found.summary
    assert "ask alice@example.com" in health(new, can_manage=False).issues[0].next_step


def test_a_healthy_connection_with_events_on_the_way_counts_them(connection: Connection, workspace: Workspace) -> None:
    record(connection)
    for n in range(3):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    found = health(connection)
    assert found.state == "healthy" and found.summary.startswith("3 events on the way")


def test_a_disabled_connection_says_who_can_enable_it(alice: User, connection: Connection) -> None:
    services.connection_set_enabled(actor=Actor(user=alice), connection=connection, enabled=False)
    as_member = health(connection, can_manage=False)
    assert as_member.state == "disabled"
    assert "Owners and admins can enable it: ask alice@example.com" in as_member.issues[0].next_step
    assert "Enable it in Settings" in health(connection).issues[0].next_step
    assert health(connection).alert is False  # disabled on purpose: not for the banner


def test_a_paused_connection_gives_its_reason_and_the_fix(connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING,
                              reason="Segment does not recognise this write key.")
    found = health(connection)
    assert found.state == "paused"
    assert found.issues[0].reason == "Segment does not recognise this write key."
    assert found.issues[0].next_step.startswith("Next: correct the write key or region")
    as_member = health(connection, can_manage=False).issues[0].next_step
    assert as_member == "Owners and admins can correct the write key or region: ask alice@example.com."
    services.connection_pause(connection_id=connection.pk, health=Health.UNREADABLE, reason="Credential unreadable.")
    unreadable = health(connection)
    assert unreadable.word == "Credential unreadable" and "Paste the write key again" in unreadable.issues[0].next_step


def test_a_retrying_connection_says_what_segment_answered_and_when_it_tries_again(
        connection: Connection, workspace: Workspace) -> None:
    emit.track(workspace, "Signed Up", user_id="u1")
    record(connection, events=1, status=503, outcome=AttemptOutcome.RETRYING, reply="Service Unavailable", attempt=3)
    Connection.objects.filter(pk=connection.pk).update(failures=3, next_attempt_at=timezone.now() + timedelta(seconds=40))
    found = health(connection)
    assert found.state == "retrying"
    assert "Segment answered HTTP 503 to the last attempt" in found.issues[0].reason
    assert "Attempt 4 is due in 3" in found.issues[0].reason  # 39 or 40 s


def test_no_answer_and_rate_limits_are_told_apart(connection: Connection, workspace: Workspace) -> None:
    emit.track(workspace, "Signed Up", user_id="u1")
    Connection.objects.filter(pk=connection.pk).update(failures=1)
    record(connection, events=1, status=None, outcome=AttemptOutcome.RETRYING, reply="No answer from Segment (timeout).")
    assert "Segment did not answer the last attempt (No answer from Segment (timeout))" in health(connection).issues[0].reason
    record(connection, events=1, status=429, outcome=AttemptOutcome.RETRYING, reply="Too Many Requests")
    assert "rate-limiting this source" in health(connection).issues[0].reason


def retrying(connection: Connection, workspace: Workspace, *, status: int | None = 503,
             due_in: timedelta = timedelta(minutes=4)) -> None:
    """As after an outage of some minutes: an event waits, Segment refused the last tries, and
    the next is minutes away."""
    emit.track(workspace, "Signed Up", user_id="u1")
    record(connection, events=1, status=status, outcome=AttemptOutcome.RETRYING, reply="Service Unavailable",
           attempt=9)
    Connection.objects.filter(pk=connection.pk).update(failures=9, next_attempt_at=timezone.now() + due_in)


def test_a_retrying_connection_offers_to_retry_now_to_those_who_manage_it(
        connection: Connection, workspace: Workspace) -> None:
    retrying(connection, workspace)
    issue = health(connection).issues[0]
    assert issue.retry_now and re.search(r"Attempt 10 is due in 3 min, at \d\d:\d\d:\d\d UTC", issue.reason)
    assert "retry now" in issue.next_step


def test_retry_now_brings_the_next_try_forward_once_and_is_audited(
        alice: User, connection: Connection, workspace: Workspace, monkeypatch: Any,
        django_capture_on_commit_callbacks: Any) -> None:
    woken: list[int] = []
    monkeypatch.setattr(services, "connection_wake_now", lambda *, connection_id: woken.append(connection_id))
    retrying(connection, workspace)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.connection_retry_now(actor=Actor(user=alice), connection=connection) is True
    connection.refresh_from_db()
    assert connection.next_attempt_at is not None and connection.next_attempt_at <= timezone.now()
    assert connection.failures == 9, "the failure count stays: a failing retry waits as long as it would have"
    assert woken == [connection.pk]
    row = AuditEvent.objects.get(action=AuditAction.CONNECTION_RETRIED_NOW)
    assert (row.actor_id, row.details["failures"], row.details["name"]) == (alice.pk, 9, "Production")
    assert "Attempt 10 is due now" in health(connection).issues[0].reason and not health(connection).issues[0].retry_now
    # Pressed twice (two tabs): nothing more to bring forward.
    assert services.connection_retry_now(actor=Actor(user=alice), connection=connection) is False
    assert woken == [connection.pk] and AuditEvent.objects.filter(action=AuditAction.CONNECTION_RETRIED_NOW).count() == 1


def test_no_retry_now_while_segment_itself_asked_for_the_wait(
        alice: User, connection: Connection, workspace: Workspace) -> None:
    retrying(connection, workspace, status=429)
    issue = health(connection).issues[0]
    assert not issue.retry_now and "waits as long as Segment asked" in issue.next_step
    assert services.connection_retry_now(actor=Actor(user=alice), connection=connection) is False
    connection.refresh_from_db()
    assert connection.next_attempt_at is not None and connection.next_attempt_at > timezone.now()


def test_a_healthy_connection_has_nothing_to_retry(alice: User, connection: Connection) -> None:
    assert services.connection_retry_now(actor=Actor(user=alice), connection=connection) is False
    assert not AuditEvent.objects.filter(action=AuditAction.CONNECTION_RETRIED_NOW).exists()


def box_polls_every(html: str) -> str:
    """The seconds between the health box's own requests."""
    found = re.search(r'<section id="connection-state"[^>]*hx-trigger="every (\d+)s"', html)
    assert found, "no health box"
    return found.group(1)


def test_the_retry_button_is_for_owners_and_admins_and_answers_in_place(
        alice_client: Client, bob_client: Client, charlie_client: Client, workspace: Workspace,
        connection: Connection, monkeypatch: Any) -> None:
    monkeypatch.setattr(services, "connection_wake_now", lambda *, connection_id: None)
    retrying(connection, workspace)
    page = url("connection", workspace, pk=connection.pk)
    retry = url("connection_retry", workspace, pk=connection.pk)
    before = alice_client.get(page).content.decode()
    assert 'data-testid="retry-now"' in before and box_polls_every(before) == "5"
    assert 'data-testid="retry-now"' not in bob_client.get(page).content.decode()
    assert bob_client.post(retry).status_code == 403
    assert charlie_client.post(retry).status_code == 404
    assert alice_client.get(retry).status_code == 405
    connection.refresh_from_db()
    assert connection.next_attempt_at is not None and connection.next_attempt_at > timezone.now()

    box = alice_client.post(retry, {"tab": "overview"}, HTTP_HX_REQUEST="true")
    assert box.status_code == 200
    html = box.content.decode()
    assert html.lstrip().startswith('<section id="connection-state"') and "Attempt 10 is due now" in html
    assert 'data-testid="retry-now"' not in html and "tab=overview" in html
    assert box_polls_every(html) == "1", "the box asks every second until the try's outcome is known"
    answer = alice_client.post(retry, follow=True)
    assert answer.redirect_chain[-1][0] == page
    assert "Nothing to bring forward" in answer.content.decode()


def test_an_old_backlog_makes_the_connection_degraded(connection: Connection, workspace: Workspace) -> None:
    emit.track(workspace, "Signed Up", user_id="u1")
    emit.track(workspace, "Signed Up", user_id="u2")
    Event.objects.filter(workspace=workspace, seq=1).update(received_at=timezone.now() - timedelta(minutes=12))
    Verification.objects.filter(connection=connection).update(  # checked long before
        created_at=timezone.now() - timedelta(hours=2), finished_at=timezone.now() - timedelta(hours=2))
    found = health(connection)
    assert found.state == "degraded"
    assert found.issues[0].reason == "The oldest of 2 waiting events arrived 12 min ago."
    assert "attempt log" in found.issues[0].next_step


def test_dead_letters_of_the_last_day_make_the_connection_degraded(connection: Connection) -> None:
    for seq in range(1, 5):
        dead_letter(connection, seq, ago=timedelta(hours=30))
    assert health(connection).state == "healthy"  # older than 24 hours
    dead_letter(connection, 5)
    dead_letter(connection, 6)
    found = health(connection)
    assert found.state == "degraded"
    assert found.issues[0].reason.startswith("2 events that became dead letters in the last 24 hours are not delivered")
    assert found.issues[0].action == "dead-letters"


def test_dead_letters_a_replay_delivered_count_as_delivered_and_health_recovers(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    first, second = dead_letter(connection, 1), dead_letter(connection, 2)
    assert health(connection).word == "Degraded"
    DeadLetter.objects.filter(pk=first.pk).update(replays=1, replayed_at=timezone.now())
    assert health(connection).issues[0].reason.startswith("1 event that became a dead letter in the last 24 hours is")
    DeadLetter.objects.filter(pk=second.pk).update(replays=1, replayed_at=timezone.now())
    assert health(connection).word == "Healthy"
    page = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    cells = figures(page)
    # The history is kept (2 became dead letters today) and none is left undelivered.
    assert (cells["failed-day"], cells["undelivered-day"]) == ("2", "0")
    assert "could not be delivered" not in page and "Nothing undelivered" in page
    assert DeadLetter.objects.filter(connection=connection).count() == 2


def test_the_page_shows_the_health_it_was_given(alice_client: Client, workspace: Workspace,
                                                connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    page = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
    assert state(page) == "Paused" and "Unknown key." in page and "state-card is-paused" in page


# --- the banner --------------------------------------------------------------------------


def banner(client: Client, workspace: Workspace) -> str:
    page = client.get(reverse("members", kwargs={"slug": workspace.slug})).content.decode()
    found = re.search(r'data-testid="attention-banner">(.*?)</div>\s*</div>', page, re.S)
    polled = client.get(url("attention", workspace)).content.decode()
    assert (found.group(1) if found else "") in polled  # what the poll brings is what the page showed
    return found.group(1) if found else ""


def test_no_banner_while_every_connection_is_fine(alice_client: Client, workspace: Workspace,
                                                   connection: Connection) -> None:
    record(connection)
    dead_letter(connection, 1)
    dead_letter(connection, 2)
    assert banner(alice_client, workspace) == ""  # Degraded on its page, but below the threshold
    page = alice_client.get(reverse("members", kwargs={"slug": workspace.slug})).content.decode()
    assert f'hx-get="{url("attention", workspace)}" hx-trigger="every 5s, health-changed from:body" data-poll' in page


def test_the_banner_names_a_paused_connection_on_every_page_of_its_workspace(
        alice_client: Client, bob_client: Client, charlie_client: Client, workspace: Workspace,
        charlie_workspace: Workspace, connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    text = banner(bob_client, workspace)
    assert "Production</a>: delivery is paused" in text
    assert url("connection", workspace, pk=connection.pk) in text
    assert "Production" in banner(alice_client, workspace)
    page = alice_client.get(url("connection_attempts", workspace, pk=connection.pk)).content.decode()
    assert 'data-testid="attention-banner"' in page
    assert banner(charlie_client, charlie_workspace) == ""


def test_the_banner_shows_dead_letters_past_the_threshold(alice_client: Client, workspace: Workspace,
                                                          connection: Connection, settings: Any) -> None:
    settings.DEAD_LETTER_ALERT_THRESHOLD = 5
    for seq in range(1, 5):
        dead_letter(connection, seq, ago=timedelta(hours=2))
    assert banner(alice_client, workspace) == ""
    last = dead_letter(connection, 5)
    assert "Production</a>: 5 undelivered dead letters in 24 hours" in banner(alice_client, workspace)
    DeadLetter.objects.filter(pk=last.pk).update(replays=1, replayed_at=timezone.now())
    assert banner(alice_client, workspace) == ""  # a replay delivered one: below the threshold again


def test_the_banner_follows_a_fix_and_a_newly_failing_connection(
        alice: User, alice_client: Client, workspace: Workspace, connection: Connection, segment: Any) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    assert "Production</a>: delivery is paused" in banner(alice_client, workspace)
    services.connection_resume(connection_id=connection.pk)
    assert banner(alice_client, workspace) == ""
    staging = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging",
                                         region="us", write_key=new_write_key())
    assert banner(alice_client, workspace) == ""  # checking: no verdict yet
    checked(staging)
    assert "Staging</a>: delivery is paused" in banner(alice_client, workspace)


def test_the_banner_shows_a_connection_retrying_for_minutes(alice_client: Client, workspace: Workspace,
                                                            connection: Connection) -> None:
    emit.track(workspace, "Signed Up", user_id="u1")
    Connection.objects.filter(pk=connection.pk).update(failures=2)
    assert banner(alice_client, workspace) == ""  # retrying, but only for a moment
    Event.objects.filter(workspace=workspace, seq=1).update(received_at=timezone.now() - timedelta(minutes=8))
    assert "Production</a>: retrying for 8 min" in banner(alice_client, workspace)


def test_the_banner_costs_at_most_two_queries(alice_client: Client, workspace: Workspace, connection: Connection,
                                              django_assert_num_queries: Any) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    with django_assert_num_queries(2):
        assert len(workspace_attention(workspace=workspace)) == 1


# --- operators in the admin --------------------------------------------------------------


def test_operators_see_the_health_word_the_page_shows(operator_client: Client, connection: Connection) -> None:
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING, reason="Unknown key.")
    page = operator_client.get(reverse("admin:integrations_connection_change", args=[connection.pk])).content.decode()
    assert "Paused: Nothing is sent." in page and "Unknown key." in page
    assert admin_rows(operator_client, "connection").count("Production") >= 1


# --- empty states while events are held -------------------------------------------------


def test_the_empty_states_say_how_many_events_are_held_and_why_instead_of_claiming_delivery(
        alice_client: Client, alice: User, workspace: Workspace, segment: Any) -> None:
    new = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Unknown", region="us",
                                     write_key=new_write_key())
    for n in range(3):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    for name in ("connection_deliveries", "dead_letters"):  # its first check has not run yet
        page = alice_client.get(url(name, workspace, pk=new.pk)).content.decode()
        assert "Nothing undelivered" not in page and "accepted by Segment or is still on its way" not in page
        assert "3 events are held, waiting for a check" in page, name
    checked(new)  # the emulator does not know the key: the check pauses the connection
    for name in ("connection_deliveries", "dead_letters"):
        page = alice_client.get(url(name, workspace, pk=new.pk)).content.decode()
        assert "3 events are held: delivery is paused" in page, name
    Connection.objects.filter(pk=new.pk).update(paused_reason="", checked_key=new.cleared_token(), failures=4,
                                                next_attempt_at=timezone.now() + timedelta(seconds=30))
    page = alice_client.get(url("dead_letters", workspace, pk=new.pk)).content.decode()
    assert "3 events are held: Segment has not accepted the last 4 requests" in page


def test_the_empty_states_still_say_everything_was_delivered_when_nothing_waits(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    page = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    assert "Nothing undelivered" in page and "held-note" not in page
    page = alice_client.get(url("dead_letters", workspace, pk=connection.pk)).content.decode()
    assert "accepted by Segment or is still on its way" in page and "held-note" not in page


def test_a_total_outage_says_retrying_and_never_that_events_still_reach_segment(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    record(connection, ago=timedelta(minutes=20))  # delivered before the outage
    emit.track(workspace, "Signed Up", user_id="u1")
    Event.objects.filter(workspace=workspace, seq=1).update(received_at=timezone.now() - timedelta(minutes=9))
    for n in range(5):
        record(connection, ago=timedelta(minutes=9 - 2 * n), events=1, status=500,
               outcome=AttemptOutcome.RETRYING, reply="Internal Server Error", attempt=n + 1)
    due = timezone.now() + timedelta(seconds=50)
    Connection.objects.filter(pk=connection.pk).update(failures=5, next_attempt_at=due)
    dead_letter(connection, 7)  # a degraded reason too: the outage still decides the word
    found = health(connection)
    assert (found.state, found.word) == ("retrying", "Retrying")
    assert found.summary == (f"Segment has not accepted the last 5 requests (HTTP 500); the next try is at "
                             f"{due:%H:%M:%S} UTC. Events are kept and sent in order.")
    assert "reach Segment" not in found.summary
    assert found.alert and "retrying for 9 min" in found.short
    page = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
    assert state(page) == "Retrying" and "state-card is-retrying" in page and "Events still reach" not in page
    Connection.objects.filter(pk=connection.pk).update(failures=0, next_attempt_at=None)
    assert health(connection).state == "degraded"  # a delivered batch ends the outage; the dead letter stays


def test_events_that_waited_for_a_check_are_sent_healthy_right_after_it_passes(
        alice: User, workspace: Workspace, segment: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    new = checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                             region="us", write_key=key))
    for n in range(3):
        emit.track(workspace, "Signed Up", user_id=f"u{n}")
    Event.objects.filter(workspace=workspace).update(received_at=timezone.now() - timedelta(minutes=15))
    assert health(new).word == "Paused"
    services.connection_change_region(actor=Actor(user=alice), connection=new, region="eu")
    found = health(checked(new))
    assert (found.word, found.issues) == ("Healthy", [])
    assert found.summary == "Sending the 3 events that waited for the check; the oldest arrived 15 min ago."
    # Still not sent long after the check: that is slow delivery again, with its advice.
    Verification.objects.filter(connection=new).update(finished_at=timezone.now() - timedelta(minutes=6))
    found = health(new)
    assert found.word == "Degraded" and "Look at the attempt log" in found.issues[0].next_step
