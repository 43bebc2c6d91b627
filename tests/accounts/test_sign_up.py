"""Signing up proves the address first: the form makes nothing but a request and an e-mail,
and the account and its workspace are made from the e-mailed link. So nobody can hold an
address they cannot read, nor be added to a workspace under someone else's."""
from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts import services, tasks
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, SignUpRequest, User, Workspace
from accounts.tokens import sign_up_token
from tests.conftest import PASSWORD, wait_for

CHOSEN = "plum-orchard-42"


def sign_up(client: Client, email: str, workspace_name: str = "Erin Labs") -> Any:
    return client.post(reverse("accounts:signup"), {
        "full_name": "Erin", "email": email, "password": CHOSEN, "workspace_name": workspace_name,
    }, follow=True)


def link_in(body: str) -> str:
    found = re.search(r"https?://\S+(/account/signup/confirm/\S+/)", body)
    assert found, body
    return found.group(1)


def emailed_link(email: str) -> str:
    """Send the waiting request's e-mail as the worker would, and return its link's path."""
    tasks.send_sign_up_link(SignUpRequest.objects.get(email=email).pk)
    message = mail.outbox[-1]
    assert message.to == [email] and message.subject.startswith("Confirm your e-mail address")
    return link_in(str(message.body))


@pytest.mark.django_db(transaction=True)
def test_the_account_is_made_only_from_the_emailed_link(celery_worker: Any) -> None:
    client = Client()
    response = sign_up(client, "Erin@Example.com")
    assert response.redirect_chain[-1][0] == reverse("accounts:signup_sent")
    assert b"Check your inbox" in response.content and "_auth_user_id" not in client.session
    assert not User.objects.exists() and not Workspace.objects.exists()
    wait_for(lambda: len(mail.outbox) == 1)  # the worker sent it
    assert mail.outbox[0].to == ["erin@example.com"] and '"Erin Labs"' in str(mail.outbox[0].body)
    link = link_in(str(mail.outbox[0].body))

    # Opening the link (as a mail scanner would) makes nothing.
    shown = client.get(link)
    assert shown.status_code == 200 and b"Finish signing up" in shown.content and b"erin@example.com" in shown.content
    assert not User.objects.exists()

    landed = client.post(link, follow=True)
    workspace = Workspace.objects.get(name="Erin Labs")
    assert landed.redirect_chain[-1][0] == reverse("integrations:index", kwargs={"slug": workspace.slug})
    assert b"Your workspace is ready" in landed.content
    erin = User.objects.get(email="erin@example.com")
    assert erin.check_password(CHOSEN) and erin.full_name == "Erin"
    assert Membership.objects.get(workspace=workspace).user == erin and Membership.objects.get().role == Role.OWNER
    assert AuditEvent.objects.filter(action=AuditAction.SIGNED_UP, actor=erin).count() == 1
    assert not SignUpRequest.objects.exists()

    again = Client().post(link)
    assert again.status_code == 410 and b"already been used or has expired" in again.content
    assert Workspace.objects.count() == 1


@pytest.mark.django_db
def test_someone_who_signs_up_with_an_address_they_cannot_read_gets_nothing_from_an_invitation(
        client: Client, alice: User, workspace: Workspace) -> None:
    sign_up(Client(), "dora@example.com", workspace_name="Squatter")
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="dora@example.com",
                            role=Role.ADMIN)
    dora = User.objects.get(email="dora@example.com")
    assert not dora.has_usable_password()  # an invitation, whose e-mail goes to the address
    refused = client.post(reverse("accounts:login"), {"username": "dora@example.com", "password": CHOSEN})
    assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert not Workspace.objects.filter(name="Squatter").exists()


@pytest.mark.django_db
def test_the_link_claims_an_invitation_made_under_the_address_meanwhile(client: Client, alice: User,
                                                                      workspace: Workspace) -> None:
    sign_up(Client(), "dora@example.com", workspace_name="Dora's Shop")
    link = emailed_link("dora@example.com")
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="dora@example.com",
                            role=Role.MEMBER)
    client.post(link)
    dora = User.objects.get(email="dora@example.com")
    assert dora.check_password(CHOSEN) and client.session["_auth_user_id"] == str(dora.pk)
    assert {m.workspace.name: m.role for m in Membership.objects.filter(user=dora)} == {
        "Alice Analytics": Role.MEMBER, "Dora's Shop": Role.OWNER}
    assert AuditEvent.objects.filter(action=AuditAction.MEMBER_INVITATION_ACCEPTED, workspace=workspace,
                                     actor=dora).count() == 1


@pytest.mark.django_db
def test_a_link_for_an_address_that_got_an_account_meanwhile_changes_nothing(client: Client) -> None:
    sign_up(Client(), "erin@example.com")
    link = emailed_link("erin@example.com")
    erin = services.user_sign_up(actor=Actor.system(), email="erin@example.com", password=PASSWORD,
                                 full_name="Erin", workspace_name="First")
    answer = client.post(link, follow=True)
    assert answer.redirect_chain[-1][0] == reverse("accounts:login")
    assert b"already has an account" in answer.content and "_auth_user_id" not in client.session
    erin.refresh_from_db()
    assert erin.check_password(PASSWORD) and set(Workspace.objects.values_list("name", flat=True)) == {"First"}


@pytest.mark.django_db
@pytest.mark.parametrize("token", ["abc", "1-", "-abc", "1-0000", "99999999999999999999-abc", "\u0661-abc"])
def test_a_malformed_or_forged_link_says_it_cannot_be_used(client: Client, token: str) -> None:
    sign_up(Client(), "erin@example.com")
    for answer in (client.get(f"/account/signup/confirm/{token}/"),
                   client.post(f"/account/signup/confirm/{token}/")):
        assert answer.status_code in (200, 410) and b"already been used or has expired" in answer.content
    assert not User.objects.exists()


@pytest.mark.django_db
def test_a_link_expires_after_three_days(client: Client) -> None:
    sign_up(Client(), "erin@example.com")
    link = emailed_link("erin@example.com")
    SignUpRequest.objects.update(created_at=timezone.now() - timedelta(days=3, seconds=1))
    assert b"already been used or has expired" in client.post(link).content
    assert not User.objects.exists()


@pytest.mark.django_db
def test_signing_up_again_sends_one_email_a_minute_and_only_the_newest_link_works(client: Client) -> None:
    sign_up(Client(), "erin@example.com", workspace_name="Typo Lbas")
    first = SignUpRequest.objects.get()
    sign_up(Client(), "erin@example.com", workspace_name="Erin Labs")
    assert list(SignUpRequest.objects.all()) == [first]  # within the minute: no second e-mail
    old_link = emailed_link("erin@example.com")
    SignUpRequest.objects.update(created_at=timezone.now() - timedelta(minutes=2))
    sign_up(Client(), "erin@example.com", workspace_name="Erin Labs")
    assert SignUpRequest.objects.get().workspace_name == "Erin Labs"
    assert b"already been used or has expired" in client.post(old_link).content
    client.post(emailed_link("erin@example.com"))
    assert list(Workspace.objects.values_list("name", flat=True)) == ["Erin Labs"]


@pytest.mark.django_db
def test_the_link_is_made_in_the_worker_from_the_id_alone(client: Client) -> None:
    sign_up(client, "erin@example.com")
    request = SignUpRequest.objects.get()
    assert CHOSEN not in request.password and request.password.count("$") >= 2  # hashed
    assert emailed_link("erin@example.com") == reverse("accounts:signup_confirm", args=[sign_up_token(request)])
    assert emailed_link("erin@example.com") == reverse("accounts:signup_confirm", args=[sign_up_token(request)])


@pytest.mark.django_db
def test_operators_see_waiting_sign_ups_without_their_password(alice: User) -> None:
    sign_up(Client(), "erin@example.com")
    request = SignUpRequest.objects.get()
    alice.is_staff = alice.is_superuser = True
    alice.save()
    operator = Client()
    operator.force_login(alice)
    listing = operator.get(reverse("admin:accounts_signuprequest_changelist")).content.decode()
    assert "erin@example.com" in listing and "Erin Labs" in listing
    detail = operator.get(reverse("admin:accounts_signuprequest_change", args=[request.pk])).content.decode()
    assert request.password not in detail and request.password.split("$")[-1] not in detail
    assert 'name="_save"' not in detail
