"""An invitation does not squat an address: its owner claims the account from a password reset
or from signing up, and the pages never say whether an address is registered."""
from __future__ import annotations

import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace
from tests.accounts.support import ask_for_password_link
from tests.conftest import PASSWORD, wait_for

NEW_PASSWORD = "lantern-quartz-meadow-93"


def invite(alice: User, workspace: Workspace, email: str = "dora@example.com", worker: bool = False) -> User:
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email=email, role=Role.ADMIN)
    if worker:  # the invitation itself goes out; these tests are about what comes after
        wait_for(lambda: len(mail.outbox) == 1)
        mail.outbox.clear()
    return User.objects.get(email=email)


def choose_password_from(client: Client, body: str) -> Any:
    link = re.search(r"https?://[^\s]+/account/password/reset/[^\s]+/", body)
    assert link, body
    path = "/" + link.group(0).split("://", 1)[1].split("/", 1)[1]
    form = client.get(path, follow=True)
    assert form.status_code == 200 and form.context["validlink"], "the link should open the form"
    client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    return client.get(reverse("home"), follow=True)  # signed in straight away


def sign_up(client: Client, email: str) -> Any:
    return client.post(reverse("accounts:signup"), {
        "full_name": "Dora", "email": email, "password": "plum-orchard-42", "workspace_name": "Dora's Shop",
    }, follow=True)


def without_csrf_token(content: bytes) -> bytes:
    return re.sub(rb'"X-CSRFToken": "[^"]+"', b"", content)



def test_an_invitee_claims_the_account_through_a_password_reset(client: Client, alice: User,
                                                                workspace: Workspace) -> None:
    dora = invite(alice, workspace)
    response = ask_for_password_link(client, "Dora@Example.com", follow=True)
    assert b"Check your inbox" in response.content
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["dora@example.com"]
    assert mail.outbox[0].subject == "Choose a password for your Tributary account"
    landed = choose_password_from(client, str(mail.outbox[0].body))
    assert landed.context["workspace"] == workspace  # signed in, in the workspace she was invited to
    dora.refresh_from_db()
    assert dora.check_password(NEW_PASSWORD)
    accepted = AuditEvent.objects.get(action=AuditAction.MEMBER_INVITATION_ACCEPTED)
    assert (accepted.workspace, accepted.actor) == (workspace, dora)
    assert not AuditEvent.objects.filter(action=AuditAction.PASSWORD_RESET).exists()


def test_the_members_page_no_longer_shows_a_claimed_invitation_as_pending(client: Client, alice: User,
                                                                         alice_client: Client,
                                                                         workspace: Workspace) -> None:
    invite(alice, workspace)
    members = reverse("members", args=[workspace.slug])
    assert b"Invitation sent" in alice_client.get(members).content
    ask_for_password_link(client, "dora@example.com")
    choose_password_from(client, str(mail.outbox[0].body))
    assert b"Invitation sent" not in alice_client.get(members).content


def test_a_claim_link_works_once(client: Client, alice: User, workspace: Workspace) -> None:
    invite(alice, workspace)
    ask_for_password_link(client, "dora@example.com")
    body = str(mail.outbox[0].body)
    choose_password_from(client, body)
    with pytest.raises(AssertionError, match="the link should open the form"):
        choose_password_from(Client(), body)


def test_a_reset_of_a_registered_account_is_still_a_reset(client: Client, alice: User) -> None:
    ask_for_password_link(client, alice.email)
    assert mail.outbox[0].subject == "Reset your Tributary password"
    choose_password_from(client, str(mail.outbox[0].body))
    assert AuditEvent.objects.filter(action=AuditAction.PASSWORD_RESET, actor=alice).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.MEMBER_INVITATION_ACCEPTED).exists()


def test_a_deactivated_invitee_gets_nothing(client: Client, alice: User, workspace: Workspace) -> None:
    dora = invite(alice, workspace)
    User.objects.filter(pk=dora.pk).update(is_active=False)
    ask_for_password_link(client, "dora@example.com")
    assert mail.outbox == []


@pytest.mark.django_db(transaction=True)
def test_an_invitee_who_signs_up_is_emailed_a_link_to_claim_the_account(celery_worker: Any, alice: User,
                                                                        workspace: Workspace) -> None:
    dora = invite(alice, workspace, worker=True)
    client = Client()
    response = sign_up(client, "DORA@example.com")
    assert response.redirect_chain[-1][0] == reverse("accounts:signup_sent")
    assert b"Check your inbox" in response.content and b"already exists" not in response.content
    assert "_auth_user_id" not in client.session
    assert not Workspace.objects.filter(name="Dora's Shop").exists()
    wait_for(lambda: len(mail.outbox) == 1)
    message = mail.outbox[0]
    assert message.to == ["dora@example.com"] and message.subject == "Claim your Tributary account"
    assert '"Alice Analytics"' in str(message.body)
    landed = choose_password_from(client, str(message.body))
    assert landed.context["workspace"] == workspace
    dora.refresh_from_db()
    assert dora.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action=AuditAction.MEMBER_INVITATION_ACCEPTED, workspace=workspace,
                                     actor=dora).count() == 1
    assert Membership.objects.get(user=dora).role == Role.ADMIN


@pytest.mark.django_db(transaction=True)
def test_signing_up_with_a_registered_address_reveals_nothing_and_emails_its_owner(celery_worker: Any,
                                                                                   alice: User,
                                                                                   workspace: Workspace) -> None:
    invite(alice, workspace, worker=True)
    for_invitee = sign_up(Client(), "dora@example.com")
    for_registered = sign_up(Client(), "Alice@Example.com")
    # The same page, byte for byte but for the per-response CSRF mask, for an unclaimed invitation and a full account.
    assert for_registered.redirect_chain == for_invitee.redirect_chain
    assert without_csrf_token(for_registered.content) == without_csrf_token(for_invitee.content)
    wait_for(lambda: len(mail.outbox) == 2)
    to_alice = next(m for m in mail.outbox if m.to == ["alice@example.com"])
    assert to_alice.subject == "You already have a Tributary account"
    assert not re.search(r"/account/password/reset/[^\s/]+/[^\s/]+/", str(to_alice.body))  # no link to set one
    assert reverse("accounts:login") in to_alice.body
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert set(Workspace.objects.values_list("name", flat=True)) == {"Alice Analytics"}
    rows = AuditEvent.objects.filter(action=AuditAction.SIGN_UP_EXISTING).order_by("id")
    assert [(row.details["email"], row.details["invited"]) for row in rows] == [
        ("dora@example.com", True), ("alice@example.com", False)]
