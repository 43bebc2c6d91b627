"""A connection's dead letters: the list, the dry run and its cap, replaying a filter or a
selection to the emulator through a real Celery worker, the replay's row as its lock (one at a
time, by the database's constraint), its claim and its heartbeat, the replay history,
discarding, the audit rows, and who may do what."""
from __future__ import annotations

import html
import threading
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.dead_letters.replay import dead_letters_replay_run
from integrations.dead_letters.selection import Selection
from integrations.dead_letters.services import (
    QUEUED_FOR,
    SILENT_FOR,
    ReplayRefused,
    dead_letters_discard,
    dead_letters_replay,
)
from integrations.ingest.messages import normalise
from integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterReplay,
    DeliveryAttempt,
    Health,
    ReplayStatus,
)
from integrations.segment import client as segment_client
from integrations.segment.protocol import RELAY_NAMESPACE
from integrations.tasks import replay_dead_letters
from tests.conftest import new_write_key, wait_for


def url(name: str, connection: Connection, query: str = "") -> str:
    path = reverse(f"integrations:{name}", kwargs={"slug": connection.workspace.slug, "pk": connection.pk})
    return f"{path}?{query}" if query else path



def connect(alice: User, workspace: Workspace, segment: Any = None, name: str = "Production") -> tuple[Connection, str]:
    key = new_write_key()
    if segment is not None:
        segment.register_key(key, "us")
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name=name, region="us",
                                            write_key=key)
    # As if its check had passed: nothing is sent with a key before one does.
    connection.checked_key = connection.cleared_token()
    Connection.objects.filter(pk=connection.pk).update(checked_key=connection.checked_key)
    return connection, key


def plant(connection: Connection, names: list[str], *, reason: str = "rejected", first_seq: int = 1,
          ago: timedelta = timedelta(0), blob: int = 0) -> list[DeadLetter]:
    """Dead letters as delivery or expiry leaves them: the stored body, Segment's answer."""
    planted = []
    for offset, name in enumerate(names):
        received = timezone.now() - ago - timedelta(minutes=5)
        message = normalise({"type": "track", "event": name, "userId": f"user-{offset}", "properties": {"n": offset},
                             "messageId": f"emit-{uuid.uuid4()}"}, received_at=received)
        # A body too large for Segment can only be planted: ingest refuses it (event_too_large).
        body = message.body[:-1] + b',"blob":"' + b"x" * blob + b'"}' if blob else message.body
        planted.append(DeadLetter.objects.create(
            connection=connection, seq=first_seq + offset, message_id=message.message_id, type="track", name=name,
            body=body, reason=reason, status=400 if reason == "rejected" else None,
            response='{"error":"rejected"}' if reason == "rejected" else "Not delivered within 168 hours.",
            received_at=received, created_at=timezone.now() - ago))
    return planted


def sent_id(connection: Connection, message_id: str) -> str:
    return str(uuid.uuid5(uuid.uuid5(RELAY_NAMESPACE, str(connection.pk)), message_id))


def arrived_ids(segment: Any, key: str) -> list[str]:
    return [e["payload"]["messageId"] for e in segment.events(write_key=key, limit=10_000)
            if e["payload"].get("event") != "Segment Connection Tested"]


def replay_results(connection: Connection) -> list[DeadLetterReplay]:
    """The connection's replays that ended, oldest first."""
    return list(DeadLetterReplay.objects.filter(connection=connection, status__in=["done", "failed"]).order_by("id"))


def segment_accepts_everything(patch: pytest.MonkeyPatch, calls: list[int] | None = None) -> None:
    """Segment as the worker's side meets it, for tests that run the replay in-process."""
    def post(*args: Any) -> segment_client.Answer:
        if calls is not None:
            calls.append(1)
        return segment_client.Answer(200, '{"success":true}')

    patch.setattr(segment_client, "post", post)


def wait_for_check(connection: Connection) -> None:
    """The connection's own check posts a test event; let it finish before faults are set."""
    wait_for(lambda: Connection.objects.get(pk=connection.pk).health != Health.PENDING)


# --- the list ---------------------------------------------------------------------------


def test_the_list_shows_each_dead_letter_with_its_reason_newest_first(db: None, alice_client: Client, alice: User,
                                                                       workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Old Refusal"], ago=timedelta(hours=2))
    plant(connection, ["Timed Out"], reason="expired", first_seq=2)
    response = alice_client.get(url("dead_letters", connection))
    page = response.content.decode()
    assert response.status_code == 200
    assert page.index("Timed Out") < page.index("Old Refusal")
    assert "Rejected by Segment" in page and "HTTP 400" in page and "Expired" in page
    assert "Not delivered within 168 hours." in page
    assert "Segment drops messageIds it saw in the last 24 hours" in page
    assert "1\u20132 of 2 dead letters" in page


def test_filters_narrow_the_list_and_a_backwards_window_is_refused_next_to_the_field(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed", "Signed Up"])
    plant(connection, ["Order Completed"], reason="expired", first_seq=3, ago=timedelta(days=2))
    listed = alice_client.get(url("dead_letters", connection, "name=order+completed&reason=rejected"))
    assert [d.name for d in listed.context["page"]] == ["Order Completed"]
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    recent = alice_client.get(url("dead_letters", connection, f"since={since}"))
    assert recent.context["page"].paginator.count == 2
    backwards = alice_client.get(url("dead_letters", connection, f"since={since}&until=2020-01-01T00:00"))
    assert backwards.status_code == 422
    assert "“To” must be after “From”" in str(backwards.context["form"].errors["until"])


def test_opening_a_dead_letter_shows_the_event_as_sent_under_the_connections_message_id(
        db: None, alice_client: Client, bob_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    letter = plant(connection, ["Order Completed"])[0]
    for client in (alice_client, bob_client):
        body = html.unescape(client.get(url("dead_letter_body", connection, f"id={letter.pk}")).content.decode())
        assert f'"messageId": "{sent_id(connection, letter.message_id)}"' in body
        assert '"event": "Order Completed"' in body


def test_an_outsider_gets_404_on_every_dead_letter_page(db: None, charlie_client: Client, alice: User,
                                                        workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    letter = plant(connection, ["Order Completed"])[0]
    for name, method in (("dead_letters", "get"), ("dead_letter_body", "get"), ("dead_letters_confirm", "get"),
                         ("dead_letters_replay", "post"), ("dead_letters_replay_status", "get"),
                         ("dead_letters_discard", "post")):
        response = getattr(charlie_client, method)(url(name, connection, f"id={letter.pk}&picked=1&ids={letter.pk}"))
        assert response.status_code == 404, name
    assert DeadLetter.objects.filter(pk=letter.pk, replays=0).exists()


def test_a_dead_letter_of_another_workspace_is_a_404_even_with_a_connection_of_ones_own(
        db: None, charlie_client: Client, charlie: User, charlie_workspace: Workspace, alice: User,
        workspace: Workspace) -> None:
    alices, _ = connect(alice, workspace)
    letter = plant(alices, ["Private"])[0]
    charlies, _ = connect(charlie, charlie_workspace)
    assert charlie_client.get(url("dead_letter_body", charlies, f"id={letter.pk}")).status_code == 404
    charlie_client.post(url("dead_letters_discard", charlies), {"picked": "1", "ids": [letter.pk]})
    assert DeadLetter.objects.filter(pk=letter.pk).exists()


def test_a_member_sees_the_list_but_cannot_replay_or_discard(db: None, bob_client: Client, alice: User,
                                                             bob: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    letter = plant(connection, ["Order Completed"])[0]
    Connection.objects.filter(pk=connection.pk).update(paused_reason="Segment refused the write key (HTTP 401).")
    page = bob_client.get(url("dead_letters", connection)).content.decode()
    assert "Order Completed" in page and "Owners and admins replay and discard" in page
    assert 'name="ids"' not in page and "Replay all" not in page
    # Nothing tells a member how to replay: no blocker to clear, no replay advice, a note instead.
    assert 'data-testid="dead-letter-member-note"' in page and "Replays are not possible right now" not in page
    assert "A replay sends each event" not in page
    assert bob_client.get(url("dead_letters_confirm", connection, "action=replay")).status_code == 403
    assert bob_client.post(url("dead_letters_replay", connection), {}).status_code == 403
    assert bob_client.post(url("dead_letters_discard", connection), {"picked": "1", "ids": [letter.pk]}).status_code == 403
    assert DeadLetter.objects.filter(pk=letter.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).exists()
    assert AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED, actor=bob).count() == 3
    with pytest.raises(PermissionDenied):  # the service refuses too, whatever calls it
        dead_letters_replay(actor=Actor(user=bob), connection=connection, selection=Selection())
    with pytest.raises(PermissionDenied):
        dead_letters_discard(actor=Actor(user=bob), connection=connection, selection=Selection())


# --- the dry run and the cap ------------------------------------------------------------


def test_the_dry_run_counts_what_the_filter_matches_and_names_the_cap(db: None, alice_client: Client, alice: User,
                                                                      workspace: Workspace, settings: Any) -> None:
    settings.DEAD_LETTER_REPLAY_CAP = 3
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 5)
    plant(connection, ["Signed Up"], first_seq=6)
    response = alice_client.get(url("dead_letters_confirm", connection, "action=replay&name=Order+Completed"),
                                headers={"HX-Request": "true"})
    plan = response.context["plan"]
    assert (plan.matched, plan.count, plan.capped) == (5, 3, True)
    page = response.content.decode()
    assert "Replay 3 dead letters to “Production”?" in page
    assert "The filter matches 5 dead letters; a replay sends at most 3." in page
    assert 'name="until"' in page  # pinned: later dead letters are not swept in
    assert not AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).exists()  # a dry run only
    small = alice_client.get(url("dead_letters_confirm", connection, "action=discard&name=Signed+Up"))
    assert small.context["plan"].count == 1 and "Discard 1 dead letter?" in small.content.decode()


def test_ticking_nothing_is_refused_rather_than_widened_to_everything(db: None, alice_client: Client, alice: User,
                                                                      workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 2)
    response = alice_client.get(url("dead_letters_confirm", connection, "action=discard&picked=1"),
                                headers={"HX-Request": "true"})
    assert response.status_code == 422 and "Tick the dead letters" in response.content.decode()
    assert alice_client.post(url("dead_letters_discard", connection), {"picked": "1"},
                             headers={"HX-Request": "true"}).status_code == 422
    assert DeadLetter.objects.count() == 2


# --- replaying ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_filtered_replay_resends_exactly_that_set_under_the_original_message_ids_and_segment_drops_a_second(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(alice, workspace, segment)
    wait_for_check(connection)
    chosen = plant(connection, ["Order Completed"] * 3)
    others = plant(connection, ["Signed Up"], first_seq=4) + plant(connection, ["Order Completed"], first_seq=5,
                                                                  reason="expired")
    client = Client()
    client.force_login(alice)
    response = client.post(url("dead_letters_replay", connection), {"name": "Order Completed", "reason": "rejected"},
                           headers={"HX-Request": "true"})
    assert response.status_code == 200 and "Replay queued" in response.content.decode()
    wait_for(lambda: len(replay_results(connection)) == 1)
    expected = [sent_id(connection, d.message_id) for d in chosen]
    assert arrived_ids(segment, key) == expected  # in log order, nothing else
    [first] = replay_results(connection)
    assert (first.status, first.total, first.accepted, first.refused, first.not_sent, first.failure) == (
        "done", 3, 3, 0, 0, "")
    assert first.requested_by == alice and first.selection["name"] == "Order Completed"
    assert first.started_at is not None and first.finished_at is not None
    for letter in DeadLetter.objects.filter(pk__in=[d.pk for d in chosen]):
        assert letter.replays == 1 and letter.replayed_at is not None and letter.status == 400  # kept, marked
    assert not DeadLetter.objects.filter(pk__in=[d.pk for d in others], replays__gt=0).exists()
    attempts = DeliveryAttempt.objects.filter(connection=connection, replay=True)
    assert [(a.status, a.events) for a in attempts] == [(200, 3)]

    # The same replay again: Segment answers 200 and drops every event as already seen.
    since = segment.last_request_id()
    dead_letters_replay(actor=Actor(user=alice), connection=connection,
                                     selection=Selection(name="Order Completed", reason="rejected"))
    wait_for(lambda: len(replay_results(connection)) == 2)
    assert arrived_ids(segment, key) == expected
    [again] = [r for r in segment.requests(write_key=key, since=since) if r["path"].endswith("/batch")]
    assert again["messageIds"] == expected and again["accepted"] == 0 and again["dropped"] == {"duplicate": 3}
    assert DeadLetter.objects.filter(pk__in=[d.pk for d in chosen], replays=2).count() == 3


@pytest.mark.django_db(transaction=True)
def test_the_cap_replays_the_oldest_in_log_order_and_a_selection_only_what_was_ticked(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, settings: Any) -> None:
    settings.DEAD_LETTER_REPLAY_CAP = 2
    connection, key = connect(alice, workspace, segment)
    wait_for_check(connection)
    letters = plant(connection, ["A", "B", "C", "D"])
    dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    wait_for(lambda: len(replay_results(connection)) == 1)
    assert arrived_ids(segment, key) == [sent_id(connection, d.message_id) for d in letters[:2]]

    dead_letters_replay(actor=Actor(user=alice), connection=connection,
                                     selection=Selection(ids=(letters[3].pk,)))
    wait_for(lambda: len(replay_results(connection)) == 2)
    assert arrived_ids(segment, key)[2:] == [sent_id(connection, letters[3].message_id)]
    assert DeadLetter.objects.get(pk=letters[2].pk).replays == 0


@pytest.mark.django_db(transaction=True)
def test_a_refused_replay_keeps_segments_new_answer_while_the_rest_of_the_batch_is_accepted(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    connection, key = connect(alice, workspace, segment)
    wait_for_check(connection)
    fine = plant(connection, ["Fine", "Fine"])
    poison = plant(connection, ["Huge"], first_seq=3, blob=40_000)[0]  # over Segment's 32 KB
    DeadLetter.objects.filter(pk=poison.pk).update(status=None, response="earlier answer")
    dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    wait_for(lambda: len(replay_results(connection)) == 1)
    [result] = replay_results(connection)
    assert (result.status, result.accepted, result.refused, result.not_sent) == ("done", 2, 1, 0)
    assert arrived_ids(segment, key) == [sent_id(connection, d.message_id) for d in fine]
    refused = DeadLetter.objects.get(pk=poison.pk)
    assert refused.status == 400 and refused.response != "earlier answer" and refused.replayed_at is None
    assert refused.replays == 1


def test_a_replay_is_refused_while_the_connection_is_paused_disabled_or_unreadable(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"])
    Connection.objects.filter(pk=connection.pk).update(paused_reason="Segment does not know this write key.")
    response = alice_client.post(url("dead_letters_replay", connection), {}, headers={"HX-Request": "true"})
    assert response.status_code == 422
    assert "Delivery to this source is paused: Segment does not know this write key." in response.content.decode()
    without_htmx = alice_client.post(url("dead_letters_replay", connection), {}, follow=True)
    assert "Delivery to this source is paused" in without_htmx.content.decode()
    confirm = alice_client.get(url("dead_letters_confirm", connection, "action=replay"), headers={"HX-Request": "true"})
    assert "This replay cannot run now." in confirm.content.decode()
    assert "Replay 1 event" not in confirm.content.decode()

    Connection.objects.filter(pk=connection.pk).update(paused_reason="", enabled=False)
    with pytest.raises(ReplayRefused, match="disabled"):
        dead_letters_replay(actor=Actor(user=alice), connection=Connection.objects.get(pk=connection.pk),
                                         selection=Selection())
    Connection.objects.filter(pk=connection.pk).update(enabled=True, write_key_encrypted="v1:not-decryptable")
    with pytest.raises(ReplayRefused, match="cannot be decrypted"):
        dead_letters_replay(actor=Actor(user=alice), connection=Connection.objects.get(pk=connection.pk),
                                         selection=Selection())
    assert not AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).exists()
    assert not DeadLetterReplay.objects.exists()


def test_a_second_replay_of_one_connection_is_refused_while_the_first_is_queued(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed", "Signed Up"])
    first = alice_client.post(url("dead_letters_replay", connection), {"name": "Signed Up"},
                              headers={"HX-Request": "true"})
    assert first.status_code == 200 and "Replay queued" in first.content.decode()
    second = alice_client.post(url("dead_letters_replay", connection), {}, headers={"HX-Request": "true"})
    assert second.status_code == 422
    refusal = second.content.decode()
    assert "A replay of this connection is already queued or running" in refusal
    assert "asked for by alice@example.com, now queued" in refusal
    assert DeadLetterReplay.objects.filter(connection=connection).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).count() == 1
    confirm = alice_client.get(url("dead_letters_confirm", connection, "action=replay"), headers={"HX-Request": "true"})
    assert "Another replay of this connection is queued" in confirm.content.decode()
    assert "Replay 2 events" not in confirm.content.decode()


def test_the_database_refuses_a_second_replay_even_one_queued_by_another_process(
        db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"])
    # Another web process's replay, committed a moment ago: nothing in this process knows of it.
    DeadLetterReplay.objects.create(connection=connection, requested_by=None, total=1)
    with pytest.raises(ReplayRefused, match="already queued or running \\(asked for by the system, now queued\\)"):
        dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    assert DeadLetterReplay.objects.count() == 1
    assert not AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).exists()


@pytest.mark.django_db(transaction=True)
def test_two_replays_asked_for_at_the_same_moment_queue_exactly_one(alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 3)
    start, outcomes = threading.Barrier(2), []

    def ask() -> None:
        start.wait()
        try:
            dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
            outcomes.append("queued")
        except ReplayRefused as refused:
            outcomes.append(str(refused))
        finally:
            from django.db import connection as database

            database.close()

    with pytest.MonkeyPatch.context() as patch:  # the task itself is not under test here
        patch.setattr("integrations.enqueue.replay_dead_letters", lambda replay_id: None)
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert sorted(outcomes)[1] == "queued" and "already queued or running" in sorted(outcomes)[0]
    assert DeadLetterReplay.objects.filter(connection=connection).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).count() == 1


def test_a_replay_whose_worker_stopped_is_marked_failed_when_someone_looks_and_no_longer_blocks(
        db: None, alice_client: Client, bob_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 4)
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    # Its worker claimed it, reported one batch, then died: the heartbeat stops moving.
    DeadLetterReplay.objects.filter(pk=replay.pk).update(
        status=ReplayStatus.SENDING, accepted=1, updated_at=timezone.now() - timedelta(minutes=1))
    bob_client.get(url("dead_letters", connection))
    assert DeadLetterReplay.objects.get(pk=replay.pk).status == "sending"  # a minute's silence is a live run
    DeadLetterReplay.objects.filter(pk=replay.pk).update(updated_at=timezone.now() - SILENT_FOR - timedelta(seconds=5))

    page = bob_client.get(url("dead_letters", connection)).content.decode()  # a member looking is enough
    stopped = DeadLetterReplay.objects.get(pk=replay.pk)
    assert (stopped.status, stopped.accepted, stopped.not_sent) == ("failed", 1, 3)
    assert stopped.failure == "The worker stopped; run the replay again." and stopped.finished_at is not None
    assert "Replay stopped: 1 accepted, 0 refused, 3 not sent." in page
    assert "The worker stopped; run the replay again." in page
    assert '<div id="dead-letter-panel" class="dl-panel" aria-live="polite">' in page  # no longer polling

    again = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    assert DeadLetterReplay.objects.get(pk=again.pk).status == "queued"
    # The dead run's task, delivered again late, finds nothing of its own to claim.
    assert dead_letters_replay_run(replay_id=replay.pk) is None
    assert DeadLetterReplay.objects.get(pk=replay.pk).status == "failed"


def test_a_replay_no_worker_started_in_time_is_failed_by_the_next_request_and_never_runs(
        db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"])
    waiting = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    DeadLetterReplay.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - QUEUED_FOR + timedelta(minutes=1))
    with pytest.raises(ReplayRefused, match="already queued or running"):  # queued for 14 minutes: still waiting
        dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    DeadLetterReplay.objects.filter(pk=waiting.pk).update(updated_at=timezone.now() - QUEUED_FOR - timedelta(minutes=1))
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    given_up = DeadLetterReplay.objects.get(pk=waiting.pk)
    assert (given_up.status, given_up.not_sent) == ("failed", 1) and "within 15 minutes" in given_up.failure
    with pytest.MonkeyPatch.context() as patch:
        calls: list[int] = []
        segment_accepts_everything(patch, calls)
        assert dead_letters_replay_run(replay_id=waiting.pk) is None  # its task, arriving late
        assert calls == []
        assert dead_letters_replay_run(replay_id=replay.pk).status == "done"  # type: ignore[union-attr]


@pytest.mark.django_db(transaction=True)
def test_the_task_run_twice_for_one_replay_sends_once(segment: Any, celery_worker: Any, alice: User,
                                                      workspace: Workspace) -> None:
    connection, key = connect(alice, workspace, segment)
    wait_for_check(connection)
    letters = plant(connection, ["Order Completed"] * 3)
    since = segment.last_request_id()
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    wait_for(lambda: len(replay_results(connection)) == 1)
    # The broker delivers the same message again (a worker lost before its ack): nothing is sent.
    replay_dead_letters.apply(args=(replay.pk,))
    batches = [r for r in segment.requests(write_key=key, since=since) if r["path"].endswith("/batch")]
    assert [r["messageIds"] for r in batches] == [[sent_id(connection, d.message_id) for d in letters]]
    assert DeliveryAttempt.objects.filter(connection=connection, replay=True).count() == 1
    assert set(DeadLetter.objects.values_list("replays", flat=True)) == {1}
    assert DeadLetterReplay.objects.get(pk=replay.pk).accepted == 3


@pytest.mark.django_db(transaction=True)
def test_two_workers_running_one_replay_at_the_same_moment_send_it_once(alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 2)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("integrations.enqueue.replay_dead_letters", lambda replay_id: None)
        replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
        calls: list[int] = []
        segment_accepts_everything(patch, calls)
        start, ran = threading.Barrier(2), []

        def run() -> None:
            start.wait()
            try:
                ran.append(dead_letters_replay_run(replay_id=replay.pk))
            finally:
                from django.db import connection as database

                database.close()

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert calls == [1] and sum(result is not None for result in ran) == 1
    assert DeadLetterReplay.objects.get(pk=replay.pk).accepted == 2


def test_the_replay_request_is_audited_with_the_filter_and_counts_never_bodies(
        db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    letters = plant(connection, ["Order Completed"] * 2)
    replay = dead_letters_replay(actor=Actor(user=alice, ip="203.0.113.9"), connection=connection,
                                 selection=Selection(name="Order Completed", reason="rejected"))
    [request] = AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED)
    assert request.actor == alice and request.ip == "203.0.113.9" and request.target_id == str(connection.pk)
    assert request.details["replay"] == replay.pk and request.details["connection"] == "Production"
    assert (request.details["matched"], request.details["dead_letters"], request.details["cap"]) == (2, 2, 10_000)
    assert request.details["filter"]["name"] == "Order Completed" and request.details["filter"]["reason"] == "rejected"
    assert "until" in request.details["filter"]
    # The worker's side, run here against a Segment that accepts everything: its result is the
    # replay's row, not another audit row.
    with pytest.MonkeyPatch.context() as patch:
        segment_accepts_everything(patch)
        dead_letters_replay_run(replay_id=replay.pk)
    assert AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).count() == 1
    assert DeadLetterReplay.objects.get(pk=replay.pk).accepted == 2
    assert letters[0].message_id not in str(request.details) and "user-0" not in str(request.details)


def test_a_replay_that_cannot_go_on_ends_failed_with_the_reason_and_what_was_not_sent(
        db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 3)
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_client, "post", lambda *args: segment_client.Answer(401, '{"error":"unauthorized"}'))
        ended = dead_letters_replay_run(replay_id=replay.pk)
    assert ended is not None and (ended.status, ended.accepted, ended.refused, ended.not_sent) == ("failed", 0, 3, 0)
    assert ended.failure.startswith("Segment answered 401 and the replay stopped there.")

    # Queued, then the connection is disabled before a worker takes it: nothing is sent.
    queued = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    Connection.objects.filter(pk=connection.pk).update(enabled=False)
    with pytest.MonkeyPatch.context() as patch:
        calls: list[int] = []
        segment_accepts_everything(patch, calls)
        ended = dead_letters_replay_run(replay_id=queued.pk)
    assert ended is not None and (ended.status, ended.accepted, ended.not_sent) == ("failed", 0, 3) and calls == []
    assert ended.failure.startswith("This connection is disabled")


@pytest.mark.parametrize(("status", "tries"), [(503, 3), (501, 1), (505, 1)])
def test_a_replay_tries_a_server_error_again_but_not_a_501_or_505(
        status: int, tries: int, db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 2)
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    calls: list[int] = []

    def post(*args: Any) -> segment_client.Answer:
        calls.append(1)
        return segment_client.Answer(status, '{"error":"unavailable"}', retry_after=0)  # no wait between tries

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(segment_client, "post", post)
        ended = dead_letters_replay_run(replay_id=replay.pk)
    assert ended is not None and (ended.status, ended.accepted, ended.refused) == ("failed", 0, 2)
    assert ended.failure.startswith(f"Segment answered {status} and the replay stopped there.")
    assert len(calls) == tries
    attempts = DeliveryAttempt.objects.filter(connection=connection, replay=True).order_by("attempt")
    assert [(a.attempt, a.status, a.outcome) for a in attempts] == [
        (n, status, "retrying" if status == 503 else "refused") for n in range(1, tries + 1)]


def test_the_replay_panel_shows_progress_then_the_result_and_reloads_the_list_and_history(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    plant(connection, ["Order Completed"] * 4)
    replay = dead_letters_replay(actor=Actor(user=alice), connection=connection, selection=Selection())
    status = url("dead_letters_replay_status", connection, f"replay={replay.pk}")
    queued = alice_client.get(status, headers={"HX-Request": "true"})
    assert "Replay queued" in queued.content.decode() and 'hx-trigger="every 1s"' in queued.content.decode()
    assert "HX-Trigger" not in queued
    DeadLetterReplay.objects.filter(pk=replay.pk).update(status=ReplayStatus.SENDING, accepted=1, refused=1)
    sending = alice_client.get(status, headers={"HX-Request": "true"}).content.decode()
    assert "Replaying to Segment" in sending and "2 of 4 sent so far: 1 accepted, 1 refused." in sending
    DeadLetterReplay.objects.filter(pk=replay.pk).update(status=ReplayStatus.QUEUED, accepted=0, refused=0)
    with pytest.MonkeyPatch.context() as patch:
        segment_accepts_everything(patch)
        dead_letters_replay_run(replay_id=replay.pk)
    done = alice_client.get(status, headers={"HX-Request": "true"})
    page = done.content.decode()
    assert "Replay done: 4 accepted, 0 refused." in page and "every 1s" not in page
    assert done["HX-Trigger"] == "dead-letters-changed"
    assert 'id="replay-history"' in page and 'hx-swap-oob="true"' in page  # the history follows
    assert "Replay done" in alice_client.get(url("dead_letters", connection)).content.decode()
    assert alice_client.get(url("dead_letters_replay_status", connection, "replay=999999")).status_code == 404
    other, _ = connect(alice, workspace, name="Staging")
    assert alice_client.get(url("dead_letters_replay_status", other, f"replay={replay.pk}")).status_code == 404


def test_the_page_lists_the_latest_replays_with_who_asked_how_many_and_how_they_ended(
        db: None, alice_client: Client, bob_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    empty = bob_client.get(url("dead_letters", connection)).content.decode()
    assert "No replays yet" in empty and "When an owner or admin replays dead letters" in empty
    now = timezone.now()
    for hours, status, counts in ((7, "done", (1, 0, 0)), (6, "done", (5, 0, 0)), (5, "done", (8, 2, 0)),
                                  (4, "failed", (3, 0, 4)), (3, "done", (2, 0, 0)), (2, "done", (9, 0, 0))):
        DeadLetterReplay.objects.create(
            connection=connection, requested_by=alice, requested_at=now - timedelta(hours=hours), status=status,
            total=sum(counts), accepted=counts[0], refused=counts[1], not_sent=counts[2],
            selection={"name": f"Event {hours}"} if hours != 4 else {"ids": [1, 2, 3, 4, 5, 6, 7]},
            failure="The worker stopped; run the replay again." if status == "failed" else "")
    DeadLetterReplay.objects.create(connection=connection, requested_by=None, status="sending", total=6, accepted=2)
    response = bob_client.get(url("dead_letters", connection))
    rows = [r.record for r in response.context["replays"]]
    assert [r.status for r in rows] == ["sending", "done", "done", "failed", "done"]  # the latest 5, newest first
    history = response.content.decode().split('<section id="replay-history"')[1]
    assert "Named “Event 2”" in history and "7 picked by hand" in history and "Event 7" not in history
    assert "8 accepted · 2 refused" in history and "3 accepted · 0 refused · 4 not sent" in history
    assert "The worker stopped; run the replay again." in history and "System" in history
    assert history.count('data-testid="replay-row"') == 5 and f">{alice.display_name}<" in history
    panel = response.content.decode().split('id="dead-letter-panel"')[1].split('id="dead-letter-list"')[0]
    assert "Replaying to Segment" in panel and "2 of 6 sent so far" in panel


# --- discarding -------------------------------------------------------------------------


def test_discarding_a_filter_or_a_selection_deletes_just_those_and_is_audited(
        db: None, alice_client: Client, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    expired = plant(connection, ["Old"] * 3, reason="expired")
    kept = plant(connection, ["Order Completed"] * 2, first_seq=4)
    response = alice_client.post(url("dead_letters_discard", connection), {"reason": "expired"},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200 and "3 dead letters discarded." in response.content.decode()
    assert response["HX-Trigger"] == "dead-letters-changed"
    assert not DeadLetter.objects.filter(pk__in=[d.pk for d in expired]).exists()
    alice_client.post(url("dead_letters_discard", connection), {"picked": "1", "ids": [kept[0].pk]})
    assert list(DeadLetter.objects.values_list("pk", flat=True)) == [kept[1].pk]
    rows = list(AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_DISCARDED).order_by("id"))
    assert [r.details["dead_letters"] for r in rows] == [3, 1]
    assert rows[0].details["filter"]["reason"] == "expired" and rows[1].details["selection"] == [kept[0].pk]
    assert all(r.actor == alice and r.target_id == str(connection.pk) for r in rows)
    nothing = alice_client.post(url("dead_letters_discard", connection), {"reason": "expired"})
    assert nothing.status_code == 302 and DeadLetter.objects.count() == 1


# --- the admin --------------------------------------------------------------------------


def test_the_admin_lists_dead_letters_read_only_and_replays_them_audited_as_the_operator(
        db: None, alice: User, workspace: Workspace) -> None:
    connection, _ = connect(alice, workspace)
    letters = plant(connection, ["Order Completed", "Signed Up"])
    operator = User.objects.create_user("ops@tributary.example", "x" * 20, is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)
    changelist = reverse("admin:integrations_deadletter_changelist")
    listed = client.get(changelist, {"reason": "rejected", "replayed": "no"})
    assert listed.status_code == 200 and "Order Completed" in listed.content.decode()
    assert "Order Completed" not in client.get(changelist, {"reason": "expired"}).content.decode()
    assert client.get(reverse("admin:integrations_deadletter_change", args=[letters[0].pk])).status_code == 200
    assert client.post(reverse("admin:integrations_deadletter_delete", args=[letters[0].pk])).status_code == 403
    client.post(changelist, {"action": "replay", "_selected_action": [letters[0].pk]})
    [request] = AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED)
    assert request.actor == operator and request.details["selection"] == [letters[0].pk]
    assert request.workspace == workspace
    # A second replay of the same connection is refused while the first waits, and says so.
    response = client.post(changelist, {"action": "replay", "_selected_action": [letters[1].pk]}, follow=True)
    assert "Not replayed: Production" in response.content.decode()
    assert "already queued or running" in response.content.decode()
    assert AuditEvent.objects.filter(action=AuditAction.DEAD_LETTERS_REPLAYED).count() == 1
    # The replay itself, read-only, with the operator as the one who asked.
    [replay] = DeadLetterReplay.objects.all()
    assert replay.requested_by == operator and replay.selection == {"ids": [letters[0].pk]}
    replays = client.get(reverse("admin:integrations_deadletterreplay_changelist"), {"status": "queued"})
    assert replays.status_code == 200 and "ops@tributary.example" in replays.content.decode()
    assert client.get(reverse("admin:integrations_deadletterreplay_change", args=[replay.pk])).status_code == 200
    assert client.get(reverse("admin:integrations_deadletterreplay_add")).status_code == 403
    assert client.post(reverse("admin:integrations_deadletterreplay_delete", args=[replay.pk])).status_code == 403
