"""The Segment workspace pages: the token, picking a source, the "In Segment" tab and deleting
a source, through the views against the emulator over HTTP."""
from __future__ import annotations

import logging
import secrets
from io import StringIO
from typing import Any

import pytest
from celery.signals import before_task_publish
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace
from integrations import services as connection_services
from integrations.models import Connection, PublicApiCall, SegmentSource
from integrations.segment_workspace import services
from segment_emulator.testing import run_emulator
from tests.conftest import login, make_user
from tests.integrations.segment.conftest import PublicSegment


def url(workspace: Workspace, name: str, **kwargs: Any) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


def with_token(public_segment: PublicSegment, alice: User, workspace: Workspace, token: str | None = None,
               region: str = "us") -> None:
    services.segment_token_save(actor=Actor(user=alice), workspace=workspace, token=token or public_segment.token,
                                region=region)


def picked(public_segment: PublicSegment, alice: User, workspace: Workspace, name: str = "Checkout") -> Connection:
    source_id, _ = public_segment.new_source(name)
    with_token(public_segment, alice, workspace)
    return services.segment_source_pick(actor=Actor(user=alice), workspace=workspace, source_id=source_id)


def part(client: Client, workspace: Workspace, connection: Connection, name: str) -> str:
    response = client.get(url(workspace, "in_segment_part", pk=connection.pk) + f"?name={name}",
                          HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    return response.content.decode()


def test_the_token_page_saves_and_says_what_segment_answered(public_segment: PublicSegment, alice_client: Client,
                                                             workspace: Workspace) -> None:
    response = alice_client.post(url(workspace, "segment_workspace"), {"token": "sgp_wrong_000000", "region": "us"})
    assert response.status_code == 422 and "lacks the permission" in response.content.decode()
    response = alice_client.post(url(workspace, "segment_workspace"),
                                 {"token": public_segment.token, "region": "us"}, follow=True)
    page = response.content.decode()
    assert "Accepted by Segment" in page and "Emulated Segment (US)" in page
    assert public_segment.token not in page and f"•••• {public_segment.token[-4:]}" in page


def test_a_member_sees_the_token_state_but_no_form(public_segment: PublicSegment, alice: User, bob_client: Client,
                                                   workspace: Workspace) -> None:
    with_token(public_segment, alice, workspace)
    page = bob_client.get(url(workspace, "segment_workspace")).content.decode()
    assert "Emulated Segment (US)" in page and 'name="token"' not in page
    response = bob_client.post(url(workspace, "segment_workspace"), {"token": public_segment.token, "region": "us"})
    assert response.status_code == 403


def test_connect_lists_sources_and_picking_one_connects_it_with_its_write_key(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    source_id, write_key = public_segment.new_source("Checkout web")
    with_token(public_segment, alice, workspace)
    assert alice_client.get(url(workspace, "connection_create"))["Location"] == url(workspace, "segment_source_pick")
    listing = alice_client.get(url(workspace, "segment_source_list") + "?q=checkout web").content.decode()
    assert "Checkout web" in listing and "1 of" in listing
    response = alice_client.post(url(workspace, "segment_source_pick"), {"source_id": source_id})
    connection = Connection.objects.get(name="Checkout web")
    assert response["Location"] == url(workspace, "connection", pk=connection.pk)
    assert connection.write_key() == write_key and connection.latest_verification is not None
    assert SegmentSource.objects.get(connection=connection).source_id == source_id
    assert AuditEvent.objects.get(action=AuditAction.SEGMENT_SOURCE_PICKED).details["segment_source_id"] == source_id
    again = alice_client.get(url(workspace, "segment_source_list") + "?q=checkout web").content.decode()
    assert "Connected as Checkout web" in again


def test_without_source_admin_the_page_says_so_and_offers_pasting(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    source_id, _ = public_segment.new_source("Read only source")
    with_token(public_segment, alice, workspace, public_segment.new_token(role="read_only"))
    response = alice_client.post(url(workspace, "segment_source_pick"),
                                 {"source_id": source_id, "source_name": "Read only source"})
    page = response.content.decode()
    assert response.status_code == 422 and "lacks the Source Admin role" in page
    assert 'name="write_key"' in page and 'value="Read only source"' in page
    assert not Connection.objects.exists()


def test_a_source_deleted_in_segment_meanwhile_is_said_so(public_segment: PublicSegment, alice: User,
                                                          alice_client: Client, workspace: Workspace) -> None:
    source_id, write_key = public_segment.new_source("Gone soon")
    with_token(public_segment, alice, workspace)
    public_segment.emulator.unregister_key(write_key)
    response = alice_client.post(url(workspace, "segment_source_pick"), {"source_id": source_id})
    assert response.status_code == 422 and "deleted in Segment meanwhile" in response.content.decode()
    assert not Connection.objects.exists()


def test_the_in_segment_tab_reads_each_part(public_segment: PublicSegment, alice: User, alice_client: Client,
                                            workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace)
    page = alice_client.get(url(workspace, "in_segment", pk=connection.pk)).content.decode()
    assert "In Segment" in page and "Asking Segment for labels" in page
    assert "No labels." in part(alice_client, workspace, connection, "labels")
    destinations = part(alice_client, workspace, connection, "destinations")
    assert "Google Analytics 4" in destinations and "Last 14 days" in destinations and "••••" in destinations
    assert "Postgres" in part(alice_client, workspace, connection, "warehouses")
    schema = part(alice_client, workspace, connection, "schema")
    assert "Events not in the tracking plan are allowed." in schema and "sent without the offending traits" in schema
    usage = part(alice_client, workspace, connection, "usage")
    assert 'data-testid="usage-table"' in usage and "<svg" in usage


def test_a_connection_made_by_pasting_is_matched_by_its_write_key(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    source_id, write_key = public_segment.new_source("Pasted")
    with_token(public_segment, alice, workspace)
    connection = connection_services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Pasted",
                                                       region="us", write_key=write_key)
    assert "Asking Segment for labels" in part(alice_client, workspace, connection, "match")
    assert SegmentSource.objects.get(connection=connection).source_id == source_id


def test_usage_shows_segments_daily_count_beside_tributarys(public_segment: PublicSegment, alice: User,
                                                            alice_client: Client, workspace: Workspace) -> None:
    source_id, write_key = public_segment.new_source("Counted")
    for _ in range(3):
        public_segment.emulator.send("track", {"userId": "u", "event": "E"}, write_key=write_key)
    with_token(public_segment, alice, workspace)
    connection = services.segment_source_pick(actor=Actor(user=alice), workspace=workspace, source_id=source_id)
    usage = part(alice_client, workspace, connection, "usage")
    assert "Segment: 3; Tributary: 0" in usage and "They differ on 1 day" in usage


def test_a_checks_test_event_counts_on_tributarys_side_so_both_sides_agree(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    source_id, _ = public_segment.new_source("Checked")
    with_token(public_segment, alice, workspace)
    connection = services.segment_source_pick(actor=Actor(user=alice), workspace=workspace, source_id=source_id)
    assert connection.latest_verification is not None
    run = connection_services.verification_run(verification_id=connection.latest_verification.pk)
    assert run is not None and run.outcome == "passed" and run.test_message_id
    usage = part(alice_client, workspace, connection, "usage")
    assert "Segment: 1; Tributary: 1" in usage and "Both sides agree." in usage


def test_labels_are_added_and_created_and_an_unknown_one_is_refused(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace)
    labels_url = url(workspace, "in_segment_labels", pk=connection.pk)
    response = alice_client.post(labels_url, {"label": "environment:production"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Label added in Segment." in response.content.decode()
    unknown = alice_client.post(labels_url, {"label": "nope:never"}, HTTP_HX_REQUEST="true")
    assert unknown.status_code == 422 and "There is no label “nope:never”" in unknown.content.decode()
    value = secrets.token_hex(4)
    created = alice_client.post(labels_url, {"key": "tier", "value": value}, HTTP_HX_REQUEST="true")
    assert created.status_code == 200 and f"tier:{value}" in created.content.decode()
    actions = list(AuditEvent.objects.filter(action__startswith="segment_workspace.label").values_list("action", flat=True))
    assert sorted(actions) == sorted([AuditAction.SEGMENT_LABEL_ADDED, AuditAction.SEGMENT_LABEL_CREATED,
                                      AuditAction.SEGMENT_LABEL_ADDED])


def test_creating_a_label_needs_an_owner_token(public_segment: PublicSegment, alice: User, alice_client: Client,
                                               workspace: Workspace) -> None:
    source_id, _ = public_segment.new_source("Admin only")
    with_token(public_segment, alice, workspace, public_segment.new_token(role="source_admin"))
    connection = services.segment_source_pick(actor=Actor(user=alice), workspace=workspace, source_id=source_id)
    response = alice_client.post(url(workspace, "in_segment_labels", pk=connection.pk),
                                 {"key": "tier", "value": "x" + secrets.token_hex(3)}, HTTP_HX_REQUEST="true")
    assert response.status_code == 422 and "Workspace Owner role" in response.content.decode()


def test_a_token_revoked_mid_session_is_said_so_in_place(public_segment: PublicSegment, alice: User,
                                                         alice_client: Client, workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace)
    public_segment.emulator.revoke_public_token(public_segment.token)
    page = part(alice_client, workspace, connection, "warehouses")
    assert "Segment refused the token" in page and "Replace the token" in page


def test_deleting_the_source_needs_its_name_and_disables_the_connection(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace, name="Doomed")
    write_key = connection.write_key()
    delete_url = url(workspace, "in_segment_delete", pk=connection.pk)
    wrong = alice_client.post(delete_url, {"confirm_name": "doomed"})
    assert wrong.status_code == 422 and "as Segment shows it: “Doomed”" in wrong.content.decode()
    registered = public_segment.emulator.keys()
    assert write_key in registered
    response = alice_client.post(delete_url, {"confirm_name": "Doomed"})
    assert response.status_code == 302
    connection.refresh_from_db()
    registered = public_segment.emulator.keys()
    assert not connection.enabled and write_key not in registered
    event = AuditEvent.objects.get(action=AuditAction.SEGMENT_SOURCE_DELETED)
    assert event.details["segment_answer"] == "SUCCESS"
    assert AuditEvent.objects.filter(action=AuditAction.CONNECTION_DISABLED).exists()
    assert "was deleted in Segment" in alice_client.get(url(workspace, "in_segment", pk=connection.pk)).content.decode()


def test_only_owners_delete_a_source(public_segment: PublicSegment, alice: User, workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace, name="Kept")
    admin = make_user("dana@example.com")
    Membership.objects.create(workspace=workspace, user=admin, role=Role.ADMIN)
    response = login(admin).post(url(workspace, "in_segment_delete", pk=connection.pk), {"confirm_name": "Kept"})
    assert response.status_code == 403
    connection.refresh_from_db()
    registered = public_segment.emulator.keys()
    assert connection.enabled and connection.write_key() in registered


def test_ten_thousand_sources_are_listed_and_searched(alice: User, alice_client: Client, workspace: Workspace,
                                                      settings: Any) -> None:
    with run_emulator(public_token=["sgp_many_sources_0001:owner:eu"]) as emulator:
        emulator.add_sources(10_000, region="eu", prefix="bulk")
        settings.SEGMENT_PUBLIC_API_EU = emulator.eu_url
        settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS = 60
        with_token(PublicSegment(emulator, ""), alice, workspace, "sgp_many_sources_0001", region="eu")
        all_of_them = alice_client.get(url(workspace, "segment_source_list")).content.decode()
        assert "10,000 sources in Segment; the first 200 are shown" in all_of_them
        found = alice_client.get(url(workspace, "segment_source_list") + "?q=bulk 009999").content.decode()
        assert "1 of 10,000 sources match" in found and "bulk 009999" in found


@pytest.mark.django_db(transaction=True)
def test_the_canary_token_never_leaves_in_full(public_segment: PublicSegment, alice: User, bob: User,
                                               workspace: Workspace, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    published: list[str] = []

    def record(body: Any = None, headers: Any = None, **kwargs: Any) -> None:
        published.append(repr(body) + repr(headers))

    before_task_publish.connect(record, weak=False)
    canary = public_segment.new_token()
    owner, member = login(alice), login(bob)
    pages = [owner.post(url(workspace, "segment_workspace"), {"token": canary + " x", "region": "us"}),
             owner.post(url(workspace, "segment_workspace"), {"token": canary, "region": "eu"}),
             owner.post(url(workspace, "segment_workspace"), {"token": canary, "region": "us"}, follow=True)]
    source_id, _ = public_segment.new_source("Canary source")
    pages.append(owner.post(url(workspace, "segment_source_pick"), {"source_id": source_id}, follow=True))
    connection = Connection.objects.get(name="Canary source")
    for client in (owner, member):
        pages.append(client.get(url(workspace, "segment_workspace")))
        pages.append(client.get(url(workspace, "in_segment", pk=connection.pk)))
        for name in ("labels", "destinations", "usage"):
            pages.append(client.get(url(workspace, "in_segment_part", pk=connection.pk) + f"?name={name}"))
    alice.is_staff = alice.is_superuser = True
    alice.save()
    for admin_url in (reverse("admin:integrations_segmenttoken_changelist"),
                      reverse("admin:integrations_publicapicall_changelist"),
                      reverse("admin:accounts_auditevent_changelist")):
        pages.append(owner.get(admin_url))
    assert all(p.status_code in (200, 422) for p in pages), [p.status_code for p in pages]
    dump = StringIO()
    call_command("dumpdata", "accounts", "integrations", stdout=dump)
    before_task_publish.disconnect(record)
    assert published  # the pick queued the connection's check
    texts = {"pages": "".join(p.content.decode() for p in pages), "logs": caplog.text, "dump": dump.getvalue(),
             "broker": "".join(published)}
    assert {where: text.count(canary) for where, text in texts.items()} == {"pages": 0, "logs": 0, "dump": 0,
                                                                             "broker": 0}
    assert canary[-4:] in texts["pages"] and PublicApiCall.objects.filter(workspace=workspace).exists()


def test_replacing_the_write_key_finds_the_source_of_the_new_key(public_segment: PublicSegment, alice: User,
                                                                  alice_client: Client, workspace: Workspace) -> None:
    connection = picked(public_segment, alice, workspace, name="Before")
    other_id, other_key = public_segment.new_source("After")
    connection_services.connection_replace_key(actor=Actor(user=alice), connection=connection, write_key=other_key)
    page = alice_client.get(url(workspace, "in_segment", pk=connection.pk)).content.decode()
    assert "Asking Segment for this connection" in page  # the old link no longer counts
    part(alice_client, workspace, connection, "match")
    assert SegmentSource.objects.get(connection=connection).source_id == other_id


def test_a_connection_in_the_other_region_than_the_token_is_said_so(
        public_segment: PublicSegment, alice: User, alice_client: Client, workspace: Workspace) -> None:
    with_token(public_segment, alice, workspace)
    connection = connection_services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Europe",
                                                       region="eu", write_key=secrets.token_hex(16))
    page = part(alice_client, workspace, connection, "match")
    assert "sends to a source in the EU region, but the token belongs to the Segment workspace" in page
    assert not SegmentSource.objects.filter(connection=connection).exists()
