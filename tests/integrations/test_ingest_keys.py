"""Ingest keys: created and shown once, stored as a hash, revoked, audited; the API keys page,
the admin action and the `create_ingest_key` command. Outsiders get 404s in tests/test_tenancy.py."""
from __future__ import annotations

import logging
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace
from integrations.ingest import keys as ingest_keys
from integrations.ingest.keys import (
    ingest_key_authenticate,
    ingest_key_create,
    ingest_key_get_for_workspace,
    ingest_key_revoke,
    ingest_keys_for_workspace,
)
from integrations.models import IngestKey
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def url(name: str, workspace: Workspace, **kwargs: int) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


def create(user: User, workspace: Workspace, name: str = "Production") -> tuple[IngestKey, str]:
    return ingest_key_create(actor=Actor(user=user), workspace=workspace, name=name)


# --- services ----------------------------------------------------------------------------


def test_a_created_key_authenticates_as_its_workspace(alice: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    found = ingest_key_authenticate(key)
    assert found == ingest_key and found.workspace == workspace
    assert key.startswith("trb_") and len(key) >= 40


def test_only_the_hash_and_the_last_four_characters_are_stored(alice: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    stored = IngestKey.objects.filter(pk=ingest_key.pk).values().get()
    assert key not in repr(stored)
    assert stored["key_hash"] == IngestKey.hash(key) and stored["hint"] == key[-4:]


def test_keys_are_unique_and_other_strings_do_not_authenticate(alice: User, workspace: Workspace) -> None:
    _, first = create(alice, workspace, "Production")
    _, second = create(alice, workspace, "Staging")
    assert first != second
    for attempt in ("", first[:-1], first + "x", first.upper(), " " + first, "trb_", "x" * 10_000):
        assert ingest_key_authenticate(attempt) is None, attempt


def test_a_revoked_key_no_longer_authenticates(alice: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=ingest_key)
    assert ingest_key_authenticate(key) is None
    assert IngestKey.objects.get(pk=ingest_key.pk).revoked_at is not None


def test_a_key_revoked_by_another_process_stops_working_within_seconds(
        alice: User, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_key, key = create(alice, workspace)
    assert ingest_key_authenticate(key) is not None  # remembered by this process
    # Revoked by another web process: this one only learns it from the database.
    IngestKey.objects.filter(pk=ingest_key.pk).update(revoked_at=timezone.now())
    later = time.monotonic() + ingest_keys.RECENT_SECONDS + 0.1
    monkeypatch.setattr(ingest_keys, "monotonic", lambda: later)
    assert ingest_key_authenticate(key) is None


def test_revoking_twice_changes_nothing_and_is_audited_once(alice: User, workspace: Workspace) -> None:
    ingest_key, _ = create(alice, workspace)
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=ingest_key)
    revoked_at = IngestKey.objects.get(pk=ingest_key.pk).revoked_at
    stale_copy = IngestKey.objects.get(pk=ingest_key.pk)
    stale_copy.revoked_at = None  # as a page loaded before the first revocation would hold it
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=stale_copy)
    assert stale_copy.revoked_at == revoked_at
    assert IngestKey.objects.get(pk=ingest_key.pk).revoked_at == revoked_at
    assert AuditEvent.objects.filter(action=AuditAction.INGEST_KEY_REVOKED).count() == 1


def test_a_name_is_required_and_trimmed(alice: User, workspace: Workspace) -> None:
    with pytest.raises(ValidationError) as error:
        create(alice, workspace, "   ")
    assert "Give the key a name" in str(error.value.message_dict["name"])
    with pytest.raises(ValidationError) as error:
        create(alice, workspace, "x" * 81)
    assert "80 characters or fewer" in str(error.value.message_dict["name"])
    ingest_key, _ = create(alice, workspace, "  Production  ")
    assert ingest_key.name == "Production"
    assert not AuditEvent.objects.filter(action=AuditAction.INGEST_KEY_CREATED, details__name="").exists()


def test_names_are_unique_among_active_keys_only(alice: User, workspace: Workspace,
                                                 charlie_workspace: Workspace, charlie: User) -> None:
    first, _ = create(alice, workspace, "Production")
    with pytest.raises(ValidationError) as error:
        create(alice, workspace, "production")
    assert "An active key is already called “production”" in str(error.value.message_dict["name"])
    create(charlie, charlie_workspace, "Production")  # another workspace may use the name
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=first)
    replacement, _ = create(alice, workspace, "Production")  # a revoked key frees its name
    assert replacement.is_active and IngestKey.objects.filter(workspace=workspace).count() == 2


def test_members_cannot_create_or_revoke_keys(alice: User, bob: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    with pytest.raises(PermissionDenied):
        create(bob, workspace, "Bob's")
    with pytest.raises(PermissionDenied):
        ingest_key_revoke(actor=Actor(user=bob), ingest_key=ingest_key)
    assert ingest_key_authenticate(key) == ingest_key
    assert IngestKey.objects.count() == 1


def test_an_outsider_cannot_create_a_key_in_someone_elses_workspace(charlie: User, workspace: Workspace) -> None:
    with pytest.raises(PermissionDenied):
        create(charlie, workspace)


def test_admins_the_system_and_operators_may_create_keys(alice: User, bob: User, workspace: Workspace) -> None:
    Membership.objects.filter(user=bob).update(role=Role.ADMIN)
    create(bob, workspace, "By an admin")
    ingest_key_create(actor=Actor.system(), workspace=workspace, name="By the system")
    operator = make_user("ops@tributary.example")
    operator.is_staff = True
    operator.save()
    create(operator, workspace, "By an operator")
    assert ingest_keys_for_workspace(workspace=workspace).count() == 3


def test_creating_and_revoking_are_audited_with_name_and_hint_never_the_key(alice: User,
                                                                           workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    ingest_key_revoke(actor=Actor(user=alice, ip="203.0.113.9"), ingest_key=ingest_key)
    events = list(AuditEvent.objects.filter(action__startswith="ingest_key.").order_by("pk"))
    assert [e.action for e in events] == [AuditAction.INGEST_KEY_CREATED, AuditAction.INGEST_KEY_REVOKED]
    for event in events:
        assert event.actor == alice and event.workspace == workspace
        assert event.target_type == "ingestkey" and event.target_id == str(ingest_key.pk)
        assert event.details == {"name": "Production", "hint": f"trb_…{key[-4:]}"}
    assert events[1].ip == "203.0.113.9"
    dump = repr(list(AuditEvent.objects.values()))
    assert key not in dump and key[4:-4] not in dump


def test_last_used_is_recorded_at_most_once_a_minute(alice: User, workspace: Workspace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ingest_key, key = create(alice, workspace)
    assert ingest_key.last_used_at is None
    first = ingest_key_authenticate(key)
    assert first is not None and first.last_used_at is not None
    used_at = IngestKey.objects.get(pk=ingest_key.pk).last_used_at
    assert used_at == first.last_used_at

    # Within the minute: no write at all, and within a few seconds not even the lookup.
    with CaptureQueriesContext(db_connection) as queries:
        for _ in range(5):
            assert ingest_key_authenticate(key) is not None
    assert len(queries) == 0
    assert IngestKey.objects.get(pk=ingest_key.pk).last_used_at == used_at

    # A minute later the next use is recorded again.
    IngestKey.objects.filter(pk=ingest_key.pk).update(last_used_at=used_at - timedelta(seconds=61))
    monkeypatch.setattr(ingest_keys, "RECENT_SECONDS", 0.0)
    again = ingest_key_authenticate(key)
    assert again is not None and again.last_used_at is not None and again.last_used_at > used_at


def test_a_concurrent_request_that_already_recorded_the_use_is_not_overwritten(alice: User,
                                                                              workspace: Workspace) -> None:
    """The staleness test is in the UPDATE itself: a copy read before another server recorded
    the use does not write again."""
    ingest_key, _ = create(alice, workspace)
    stale = IngestKey.objects.get(pk=ingest_key.pk)  # read while last_used_at was still empty
    recorded = timezone.now()
    IngestKey.objects.filter(pk=ingest_key.pk).update(last_used_at=recorded)  # the other server
    ingest_keys._touch(stale)
    assert IngestKey.objects.get(pk=ingest_key.pk).last_used_at == recorded
    assert stale.last_used_at is None


def test_authenticating_loads_the_workspace_in_the_same_query(alice: User, workspace: Workspace,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _, key = create(alice, workspace)
    ingest_key_authenticate(key)  # records the use; the next call within the minute only reads
    monkeypatch.setattr(ingest_keys, "RECENT_SECONDS", 0.0)  # as a process that has not seen the key lately
    with CaptureQueriesContext(db_connection) as queries:
        found = ingest_key_authenticate(key)
        assert found is not None and found.workspace.slug == workspace.slug
    assert len(queries) == 1


def test_a_key_of_another_workspace_is_a_404(alice: User, workspace: Workspace, charlie: User,
                                             charlie_workspace: Workspace) -> None:
    from django.http import Http404

    theirs, _ = create(charlie, charlie_workspace)
    with pytest.raises(Http404):
        ingest_key_get_for_workspace(workspace=workspace, pk=theirs.pk)
    assert ingest_key_get_for_workspace(workspace=charlie_workspace, pk=theirs.pk) == theirs


def test_the_list_shows_active_keys_first(alice: User, workspace: Workspace) -> None:
    old, _ = create(alice, workspace, "Old")
    create(alice, workspace, "Current")
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=old)
    create(alice, workspace, "Newest")
    names = [k.name for k in ingest_keys_for_workspace(workspace=workspace)]
    assert names == ["Newest", "Current", "Old"]


# --- the API keys page ---------------------------------------------------------------------


def test_an_owner_creates_a_key_and_sees_it_once(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("ingest_key_create", workspace), {"name": "Production"})
    assert response.status_code == 200
    key = response.context["created_key"]
    html = response.content.decode()
    # In the reveal and in the four ready-made calls beneath it; in no later answer.
    assert html.count(key) == 5 and "This is the only time the key is shown" in html
    assert f"-u '{key}:'" in html and '"$TRIBUTARY_KEY:"' not in html
    assert "no-store" in response["Cache-Control"]
    assert ingest_key_authenticate(key) is not None

    again = alice_client.get(url("api_keys", workspace)).content.decode()
    assert key not in again and f"trb_…{key[-4:]}" in again and 'data-ingest-key="Production"' in again
    assert "This is the only time the key is shown" not in again
    assert '-u "$TRIBUTARY_KEY:"' in again and 'os.environ["TRIBUTARY_KEY"]' in again
    assert key not in str(alice_client.session.items()) and key not in str(alice_client.cookies)


def test_htmx_gets_the_panel_with_the_new_key(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("ingest_key_create", workspace), {"name": "Production"},
                                 HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.startswith('<div id="api-keys-panel"') or 'id="api-keys-panel"' in html
    assert response.context["created_key"] in html


def test_a_duplicate_name_comes_back_next_to_the_field(alice_client: Client, alice: User,
                                                       workspace: Workspace) -> None:
    create(alice, workspace, "Production")
    response = alice_client.post(url("ingest_key_create", workspace), {"name": "Production"})
    assert response.status_code == 422
    assert "An active key is already called “Production”" in str(response.context["form"].errors["name"])
    assert not response.context["created_key"]
    assert IngestKey.objects.count() == 1


def test_an_empty_name_is_refused(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("ingest_key_create", workspace), {"name": ""})
    assert response.status_code == 422 and "name" in response.context["form"].errors
    assert not IngestKey.objects.exists()


def test_an_owner_revokes_a_key_from_the_page(alice_client: Client, alice: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    response = alice_client.post(url("ingest_key_revoke", workspace, pk=ingest_key.pk))
    assert response["Location"] == url("api_keys", workspace)
    assert ingest_key_authenticate(key) is None
    page = alice_client.get(response["Location"]).content.decode()
    assert "“Production” (trb_…" in page and "revoked" in page and "Revoked" in page
    assert url("ingest_key_revoke", workspace, pk=ingest_key.pk) not in page  # nothing left to revoke


def test_revoking_with_htmx_answers_with_the_panel(alice_client: Client, alice: User,
                                                   workspace: Workspace) -> None:
    ingest_key, _ = create(alice, workspace)
    response = alice_client.post(url("ingest_key_revoke", workspace, pk=ingest_key.pk), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html and "revoked" in html


def test_the_empty_page_explains_how_to_send_events(alice_client: Client, workspace: Workspace,
                                                    settings: Any) -> None:
    settings.SITE_URL = "https://relay.example.com"
    html = alice_client.get(url("api_keys", workspace)).content.decode()
    assert "No ingest keys yet" in html
    assert 'analytics.host = "https://relay.example.com"' in html
    for path in ("/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias", "/v1/batch"):
        assert path in html
    assert "writeKey" in html and "Basic auth" in html


def test_the_list_says_when_each_key_was_last_used(alice_client: Client, alice: User,
                                                   workspace: Workspace) -> None:
    _, recent_key = create(alice, workspace, "Production")
    old, old_key = create(alice, workspace, "Staging")
    create(alice, workspace, "Unused")
    ingest_key_authenticate(recent_key)
    ingest_key_authenticate(old_key)
    IngestKey.objects.filter(pk=old.pk).update(last_used_at=timezone.now() - timedelta(hours=3, minutes=5))
    html = alice_client.get(url("api_keys", workspace)).content.decode()

    def row(name: str) -> str:
        return html.split(f'data-ingest-key="{name}"')[1].split("</tr>")[0]

    assert "Within the last minute" in row("Production")
    assert "3\xa0hours, 5\xa0minutes ago" in row("Staging")
    assert "Never" in row("Unused")


def test_a_member_sees_the_keys_but_no_forms(bob_client: Client, alice: User, workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    response = bob_client.get(url("api_keys", workspace))
    html = response.content.decode()
    assert response.status_code == 200 and response.context["form"] is None
    assert 'data-ingest-key="Production"' in html and f"trb_…{key[-4:]}" in html and key not in html
    assert url("ingest_key_create", workspace) not in html
    assert url("ingest_key_revoke", workspace, pk=ingest_key.pk) not in html
    assert "<form" not in html.split('id="content"')[1].split("</main>")[0]


def test_a_member_gets_403_on_create_and_revoke_and_the_attempts_are_audited(bob: User, bob_client: Client,
                                                                            alice: User,
                                                                            workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    assert bob_client.post(url("ingest_key_create", workspace), {"name": "Mine"}).status_code == 403
    assert bob_client.post(url("ingest_key_revoke", workspace, pk=ingest_key.pk)).status_code == 403
    assert IngestKey.objects.count() == 1 and ingest_key_authenticate(key) is not None
    denied = AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED, actor=bob, workspace=workspace)
    assert sorted(e.details["path"] for e in denied) == sorted([
        url("ingest_key_create", workspace), url("ingest_key_revoke", workspace, pk=ingest_key.pk)])


def test_revoking_a_key_of_another_workspace_is_a_404(alice_client: Client, charlie: User,
                                                      charlie_workspace: Workspace, workspace: Workspace) -> None:
    theirs, key = create(charlie, charlie_workspace)
    response = alice_client.post(url("ingest_key_revoke", workspace, pk=theirs.pk))
    assert response.status_code == 404
    assert ingest_key_authenticate(key) == theirs


def test_a_failure_while_showing_the_key_leaves_no_key_behind(alice: User, workspace: Workspace,
                                                              monkeypatch: Any, caplog: Any) -> None:
    """If the one page that shows the key cannot be rendered, nobody ever saw it: it must not
    exist. The error report of the crash does not quote it either."""
    from django.views.debug import ExceptionReporter

    from integrations.views import ingest as views

    seen: list[str] = []
    real_create = ingest_keys.ingest_key_create

    def spy(**kwargs: Any) -> tuple[IngestKey, str]:
        ingest_key, key = real_create(**kwargs)
        seen.append(key)
        return ingest_key, key

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("template exploded")

    monkeypatch.setattr(ingest_keys, "ingest_key_create", spy)
    monkeypatch.setattr(views, "render", broken)
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.post(url("ingest_key_create", workspace), {"name": "Production"})

    assert response.status_code == 500
    assert seen and not IngestKey.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditAction.INGEST_KEY_CREATED).exists()
    record = next(r for r in caplog.records if r.name == "django.request" and r.exc_info)
    exc_type, exc_value, traceback = record.exc_info
    report = ExceptionReporter(record.request, exc_type, exc_value, traceback, is_email=True)
    text = report.get_traceback_text() + report.get_traceback_html()
    assert "template exploded" in text and seen[0] not in text


# --- the canary ----------------------------------------------------------------------------


def test_a_new_keys_plaintext_is_in_exactly_one_response_and_in_no_log_record(
    alice: User, bob: User, workspace: Workspace, caplog: Any
) -> None:
    caplog.set_level(logging.DEBUG)
    alice.is_staff = alice.is_superuser = True
    alice.save()
    owner, member = Client(), Client()
    owner.force_login(alice)
    member.force_login(bob)
    bodies: list[str] = []

    def visit(client: Client, method: str, path: str, data: dict[str, Any] | None = None, **headers: str) -> Any:
        response = getattr(client, method)(path, data or {}, **headers)
        bodies.append(response.content.decode() + repr(response.headers) + repr(dict(client.session)))
        return response

    visit(owner, "get", url("api_keys", workspace))
    created = visit(owner, "post", url("ingest_key_create", workspace), {"name": "Production"},
                    HTTP_HX_REQUEST="true")
    key = created.context["created_key"]
    visit(owner, "post", url("ingest_key_create", workspace), {"name": "Production"})  # a duplicate
    visit(owner, "post", url("ingest_key_create", workspace), {"name": "Staging"})
    ingest_key = IngestKey.objects.get(name="Production")
    assert ingest_key_authenticate(key) == ingest_key
    for client in (owner, member):
        visit(client, "get", url("api_keys", workspace))
        visit(client, "get", reverse("audit_log", kwargs={"slug": workspace.slug}))
    for path in (reverse("admin:integrations_ingestkey_changelist"),
                 reverse("admin:integrations_ingestkey_changelist") + "?status=active",
                 reverse("admin:integrations_ingestkey_change", args=[ingest_key.pk]),
                 reverse("admin:accounts_auditevent_changelist")):
        visit(owner, "get", path)
    visit(owner, "post", url("ingest_key_revoke", workspace, pk=ingest_key.pk), HTTP_HX_REQUEST="true")
    visit(owner, "get", url("api_keys", workspace))
    dump = StringIO()
    call_command("dumpdata", "accounts", "integrations", stdout=dump)

    assert [i for i, body in enumerate(bodies) if key in body] == [1]
    assert sum(r.getMessage().count(key) + repr(r.__dict__).count(key) for r in caplog.records) == 0
    assert key not in dump.getvalue()
    # The scan could see the key: the hint is on the pages, the hash in the dump.
    assert sum(f"trb_…{key[-4:]}" in body for body in bodies) > 5
    assert IngestKey.hash(key) in dump.getvalue()


# --- the command and the admin ---------------------------------------------------------------


def test_the_command_prints_only_a_working_key(workspace: Workspace) -> None:
    out = StringIO()
    call_command("create_ingest_key", "--workspace", workspace.slug, "--name", "Deploy", stdout=out)
    key = out.getvalue().strip()
    assert out.getvalue() == key + "\n"
    found = ingest_key_authenticate(key)
    assert found is not None and found.workspace == workspace and found.name == "Deploy"
    assert found.created_by is None
    event = AuditEvent.objects.get(action=AuditAction.INGEST_KEY_CREATED)
    assert event.actor is None and event.workspace == workspace and key not in repr(event.details)


def test_the_command_refuses_an_unknown_workspace_and_a_taken_name(alice: User, workspace: Workspace) -> None:
    with pytest.raises(CommandError, match="No workspace has the slug “nope”"):
        call_command("create_ingest_key", "--workspace", "nope", "--name", "Deploy", stdout=StringIO())
    create(alice, workspace, "Deploy")
    with pytest.raises(CommandError, match="already called “Deploy”"):
        call_command("create_ingest_key", "--workspace", workspace.slug, "--name", "Deploy", stdout=StringIO())
    assert IngestKey.objects.count() == 1


@pytest.fixture
def operator_client(db: None) -> Client:
    operator = make_user("ops@tributary.example")
    operator.is_staff = operator.is_superuser = True
    operator.save()
    client = Client()
    client.force_login(operator)
    return client


def test_the_admin_lists_keys_without_their_hash_and_cannot_edit_them(operator_client: Client, alice: User,
                                                                      workspace: Workspace) -> None:
    ingest_key, key = create(alice, workspace)
    listing = operator_client.get(reverse("admin:integrations_ingestkey_changelist") + "?q=alice")
    assert listing.status_code == 200 and list(listing.context["cl"].result_list) == [ingest_key]
    change = operator_client.get(reverse("admin:integrations_ingestkey_change", args=[ingest_key.pk]))
    for page in (listing, change):
        html = page.content.decode()
        assert f"trb_…{key[-4:]}" in html and ingest_key.key_hash not in html and key not in html
    assert 'name="name"' not in change.content.decode()
    assert operator_client.get(reverse("admin:integrations_ingestkey_add")).status_code == 403


def test_an_operator_revokes_keys_from_the_admin_and_it_is_audited(operator_client: Client, alice: User,
                                                                   workspace: Workspace) -> None:
    first, first_key = create(alice, workspace, "Production")
    second, _ = create(alice, workspace, "Staging")
    ingest_key_revoke(actor=Actor(user=alice), ingest_key=second)
    response = operator_client.post(reverse("admin:integrations_ingestkey_changelist"), {
        "action": "revoke", "_selected_action": [str(first.pk), str(second.pk)]}, follow=True)
    assert "1 key(s) revoked, 1 already revoked." in response.content.decode()
    assert ingest_key_authenticate(first_key) is None
    event = AuditEvent.objects.filter(action=AuditAction.INGEST_KEY_REVOKED).latest("pk")
    assert event.actor_email == "ops@tributary.example" and event.target_id == str(first.pk)


def test_a_new_key_is_not_shown_with_another_workspaces_page(alice: User, workspace: Workspace,
                                                             charlie_client: Client,
                                                             charlie_workspace: Workspace) -> None:
    create(alice, workspace)
    html = charlie_client.get(url("api_keys", charlie_workspace)).content.decode()
    assert "data-ingest-key" not in html and "No ingest keys yet" in html

