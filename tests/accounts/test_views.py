from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace
from tests.conftest import PASSWORD


def url(name: str, workspace: Workspace, **kwargs: int) -> str:
    return reverse(name, kwargs={"slug": workspace.slug, **kwargs})


@pytest.mark.django_db
def test_sign_up_rejects_a_weak_password_next_to_the_field(client: Client) -> None:
    response = client.post(reverse("accounts:signup"), {
        "full_name": "Erin", "email": "erin@example.com", "password": "12345678", "workspace_name": "E",
    })
    assert response.status_code == 200
    assert "password" in response.context["form"].errors
    assert not User.objects.filter(email="erin@example.com").exists()


def test_sign_in_is_by_email_whatever_its_case_and_is_audited(client: Client, alice: User) -> None:
    response = client.post(reverse("accounts:login"), {"username": "ALICE@example.com", "password": PASSWORD})
    assert response.status_code == 302
    assert AuditEvent.objects.filter(action=AuditAction.LOGGED_IN, actor=alice).count() == 1


def test_a_failed_sign_in_is_audited_without_the_password(client: Client, alice: User) -> None:
    client.post(reverse("accounts:login"), {"username": alice.email, "password": "wrong-password"})
    row = AuditEvent.objects.get(action=AuditAction.LOGIN_FAILED)
    assert row.details == {"email": alice.email}
    assert "wrong-password" not in str(row.details)


def test_repeated_failed_sign_ins_lock_the_account_out(client: Client, alice: User) -> None:
    for _ in range(5):
        client.post(reverse("accounts:login"), {"username": alice.email, "password": "wrong-password"})
    response = client.post(reverse("accounts:login"), {"username": alice.email, "password": PASSWORD})
    assert response.status_code == 429
    assert AuditEvent.objects.filter(action=AuditAction.LOCKED_OUT).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.LOGGED_IN).exists()


def test_home_sends_a_user_to_their_workspace(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.get(reverse("home"))
    assert response["Location"] == url("workspace_home", workspace)


def test_switching_workspace_remembers_the_choice(alice: User, alice_client: Client) -> None:
    from accounts import services
    from accounts.audit import Actor

    second = services.workspace_create(actor=Actor(user=alice), name="Second Shop")
    alice_client.get(url("workspace_home", second))
    assert alice_client.get(reverse("home"))["Location"] == url("workspace_home", second)
    page = alice_client.get(url("members", second))
    assert page.context["workspace"] == second
    assert {m.workspace.name for m in page.context["user_memberships"]} == {"Alice Analytics", "Second Shop"}


def test_owner_adds_a_member_by_email_through_htmx(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("member_add", workspace), {"email": "dora@example.com", "role": "member"},
                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"dora@example.com" in response.content
    assert Membership.objects.filter(workspace=workspace, user__email="dora@example.com").exists()


def test_an_invalid_email_is_reported_next_to_the_field(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("member_add", workspace), {"email": "not-an-email", "role": "member"},
                                 HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    assert "email" in response.context["form"].errors


def test_a_member_sees_members_but_no_management_controls(bob_client: Client, workspace: Workspace) -> None:
    response = bob_client.get(url("members", workspace))
    assert response.status_code == 200
    assert response.context["form"] is None
    assert url("member_add", workspace).encode() not in response.content


def test_a_member_trying_to_add_someone_gets_403_and_an_audit_row(bob: User, bob_client: Client,
                                                                 workspace: Workspace) -> None:
    response = bob_client.post(url("member_add", workspace), {"email": "x@example.com", "role": "owner"})
    assert response.status_code == 403
    denied = AuditEvent.objects.get(action=AuditAction.ACCESS_DENIED)
    assert denied.actor == bob and denied.workspace == workspace
    assert denied.details["path"] == url("member_add", workspace)


def test_a_member_cannot_read_the_audit_log(bob_client: Client, workspace: Workspace) -> None:
    assert bob_client.get(url("audit_log", workspace)).status_code == 403


def test_demoting_the_last_owner_shows_why_it_was_refused(alice: User, alice_client: Client,
                                                         workspace: Workspace) -> None:
    own = Membership.objects.get(user=alice, workspace=workspace)
    response = alice_client.post(url("member_role", workspace, pk=own.pk), {"role": "member"}, follow=True)
    assert "last owner" in response.content.decode()
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_owner_changes_a_role_and_removes_a_member(alice_client: Client, bob: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=bob, workspace=workspace)
    alice_client.post(url("member_role", workspace, pk=membership.pk), {"role": "admin"})
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    alice_client.post(url("member_remove", workspace, pk=membership.pk))
    assert not Membership.objects.filter(pk=membership.pk).exists()
    codes = set(AuditEvent.objects.filter(workspace=workspace).values_list("action", flat=True))
    assert {AuditAction.MEMBER_ROLE_CHANGED, AuditAction.MEMBER_REMOVED} <= codes


def test_another_workspaces_membership_id_is_a_404(alice_client: Client, workspace: Workspace,
                                                    charlie: User, charlie_workspace: Workspace) -> None:
    foreign = Membership.objects.get(user=charlie)
    response = alice_client.post(url("member_remove", workspace, pk=foreign.pk))
    assert response.status_code == 404
    assert Membership.objects.filter(pk=foreign.pk).exists()


def test_the_audit_log_filters_by_action_group_and_actor(alice: User, alice_client: Client, bob: User,
                                                        workspace: Workspace) -> None:
    alice_client.post(url("member_add", workspace), {"email": "dora@example.com", "role": "member"})
    everything = alice_client.get(url("audit_log", workspace)).context["page"].object_list
    members_only = alice_client.get(url("audit_log", workspace), {"group": "member"}).context["page"].object_list
    by_bob = alice_client.get(url("audit_log", workspace), {"actor": bob.pk}).context["page"].object_list
    assert {e.action for e in everything} >= {AuditAction.WORKSPACE_CREATED, AuditAction.MEMBER_INVITED}
    assert {e.action for e in members_only} == {AuditAction.MEMBER_INVITED}
    assert list(by_bob) == []


def test_the_audit_log_names_a_python_library_by_its_name_and_version(alice_client: Client,
                                                                       workspace: Workspace) -> None:
    alice_client.post(url("member_add", workspace), {"email": "dora@example.com", "role": "member"},
                      HTTP_USER_AGENT="python-requests/2.34.2")
    page = alice_client.get(url("audit_log", workspace)).content.decode()
    assert '<span class="ua" title="python-requests/2.34.2">python-requests 2.34</span>' in page
    assert "Python 2.34" not in page


def test_the_audit_log_is_paginated(alice: User, alice_client: Client, workspace: Workspace) -> None:
    from accounts.audit import Actor, audit_record

    for n in range(60):
        audit_record(actor=Actor(user=alice), action=AuditAction.WORKSPACE_RENAMED, workspace=workspace,
                     details={"n": n})
    # The 60, the workspace's creation and alice's sign-in; her sign-up came before the workspace.
    total = AuditEvent.objects.filter(actor=alice).exclude(action=AuditAction.SIGNED_UP).count()
    first = alice_client.get(url("audit_log", workspace)).context["page"]
    second = alice_client.get(url("audit_log", workspace), {"page": 2}).context["page"]
    assert len(first.object_list) == 50 and len(second.object_list) == total - 50
    assert first.paginator.count == total
    assert first.object_list[0].details == {"n": 59}


def test_the_audit_log_shows_sign_ins_of_members_but_not_of_outsiders(alice: User, charlie: User,
                                                                      workspace: Workspace) -> None:
    Client().post(reverse("accounts:login"), {"username": charlie.email, "password": PASSWORD})
    client = Client()
    client.post(reverse("accounts:login"), {"username": alice.email, "password": PASSWORD})
    events = client.get(url("audit_log", workspace)).context["page"].object_list
    sign_ins = [e.actor for e in events if e.action == AuditAction.LOGGED_IN]
    assert sign_ins == [alice]


def test_workspace_rename_is_for_managers_only(alice_client: Client, bob_client: Client,
                                               workspace: Workspace) -> None:
    assert bob_client.post(url("workspace_settings", workspace), {"name": "Hijacked"}).status_code == 403
    alice_client.post(url("workspace_settings", workspace), {"name": "Renamed"})
    workspace.refresh_from_db()
    assert workspace.name == "Renamed"


def test_healthz_answers_ok(client: Client, db: None) -> None:
    assert client.get(reverse("healthz")).json() == {"status": "ok"}


def test_the_admin_shows_audit_events_read_only_even_to_superusers(alice: User) -> None:
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client = Client()
    client.force_login(alice)
    row = AuditEvent.objects.first()
    assert row is not None
    assert client.get(reverse("admin:accounts_auditevent_changelist")).status_code == 200
    change = client.get(reverse("admin:accounts_auditevent_change", args=[row.pk]))
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert client.get(reverse("admin:accounts_auditevent_add")).status_code == 403
    assert client.post(reverse("admin:accounts_auditevent_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    assert AuditEvent.objects.filter(pk=row.pk).exists()


def test_the_only_owner_is_told_why_they_cannot_leave_instead_of_offered_a_button(
        alice_client: Client, bob_client: Client, bob: User, workspace: Workspace) -> None:
    note = "You are the only owner: make someone else an owner before you leave."
    page = alice_client.get(url("members", workspace)).content.decode()
    assert note in page and "Leave workspace" not in page
    panel = alice_client.get(url("members", workspace), HTTP_HX_REQUEST="true").content.decode()
    assert note in panel and "Leave workspace" not in panel
    assert "Leave workspace" in bob_client.get(url("members", workspace)).content.decode()  # a member may leave

    Membership.objects.filter(user=bob, workspace=workspace).update(role=Role.OWNER)
    page = alice_client.get(url("members", workspace)).content.decode()
    assert note not in page and "Leave workspace" in page


def test_a_panel_asking_after_the_session_ended_sends_the_whole_page_to_sign_in(
        client: Client, workspace: Workspace) -> None:
    page = url("members", workspace)
    answer = client.get(page, HTTP_HX_REQUEST="true", HTTP_HX_CURRENT_URL=f"http://testserver{page}?tab=x")
    assert answer.status_code == 204 and not answer.content
    assert answer["HX-Redirect"] == f"{reverse('accounts:login')}?next=%2Fw%2F{workspace.slug}%2Fsettings%2Fmembers%2F%3Ftab%3Dx"
    # Outside htmx the usual redirect; inside it, another redirect is left alone.
    assert client.get(page)["Location"].startswith(reverse("accounts:login") + "?next=")
    assert client.get(reverse("home"), HTTP_HX_REQUEST="true").status_code == 204


def test_the_audit_log_shows_a_members_account_events_only_from_when_they_joined(
        alice: User, alice_client: Client, workspace: Workspace) -> None:
    from accounts import services
    from accounts.audit import Actor, audit_record
    from tests.conftest import make_user

    erin = make_user("erin@example.com", "Erin's Own")
    audit_record(actor=Actor(user=erin, ip="203.0.113.9"), action=AuditAction.LOGGED_IN)
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email=erin.email, role=Role.MEMBER)
    audit_record(actor=Actor(user=erin, ip="198.51.100.4"), action=AuditAction.LOGGED_IN)
    page = alice_client.get(url("audit_log", workspace))
    erins = [e for e in page.context["page"].object_list if e.actor_id == erin.pk]
    assert [(e.action, e.ip) for e in erins] == [(AuditAction.LOGGED_IN, "198.51.100.4")]
    assert b"203.0.113.9" not in page.content and b"Erin&#x27;s Own" not in page.content


def test_an_owner_whose_co_owner_is_only_invited_is_told_why_they_cannot_leave(
        alice: User, alice_client: Client, workspace: Workspace) -> None:
    from accounts import services
    from accounts.audit import Actor
    from integrations.selectors.health import managers_of

    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="owen@example.com", role=Role.OWNER)
    page = alice_client.get(url("members", workspace)).content.decode()
    assert "You are the only owner who has signed in" in page and "Leave workspace" not in page
    assert managers_of(workspace.pk) == ["alice@example.com"]  # whom members are told to ask


def test_opening_a_forms_address_shows_a_page_that_leads_back(alice_client: Client, workspace: Workspace) -> None:
    address = url("member_add", workspace)
    page = alice_client.get(address, HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page.status_code == 405 and page["Allow"] == "POST"
    assert b"This address only takes a form" in page.content
    assert f'href="/w/{workspace.slug}/settings/members/"'.encode() in page.content
    # A client that is not a browser page load keeps the bare 405.
    assert alice_client.get(address).content == b""
