"""Password change, reset by e-mail, and an invitee choosing a first password from the link."""
from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Role, User, Workspace
from tests.accounts.support import ask_for_password_link
from tests.conftest import PASSWORD, wait_for

NEW_PASSWORD = "lantern-quartz-meadow-93"


def follow_reset_link(client: Client, body: str) -> str:
    link = re.search(r"http://[^\s]+/account/password/reset/[^\s]+/", body)
    assert link, body
    # The first visit swaps the token for a session and redirects to the set-password form.
    response = client.get(link.group(0).split("127.0.0.1:8000", 1)[-1].split("testserver", 1)[-1], follow=True)
    assert response.status_code == 200 and response.context["validlink"]
    return response.redirect_chain[-1][0]


def test_changing_the_password_needs_the_old_one_and_is_audited(alice: User, alice_client: Client) -> None:
    url = reverse("accounts:password_change")
    wrong = alice_client.post(url, {"old_password": "nope", "new_password1": NEW_PASSWORD,
                                    "new_password2": NEW_PASSWORD})
    assert "old_password" in wrong.context["form"].errors
    alice_client.post(url, {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(action=AuditAction.PASSWORD_CHANGED, actor=alice).count() == 1


def test_a_forgotten_password_is_reset_from_the_emailed_link(client: Client, alice: User) -> None:
    ask_for_password_link(client, "Alice@Example.com")
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alice.email]
    form_url = follow_reset_link(client, str(mail.outbox[0].body))
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    alice.refresh_from_db()
    assert alice.check_password(NEW_PASSWORD)
    codes = set(AuditEvent.objects.values_list("action", flat=True))
    assert {AuditAction.PASSWORD_RESET_REQUESTED, AuditAction.PASSWORD_RESET} <= codes


def test_an_unknown_email_gets_the_same_answer_and_no_mail(client: Client, db: None) -> None:
    response = ask_for_password_link(client, "nobody@example.com")
    assert response["Location"] == reverse("accounts:password_reset_done")
    assert mail.outbox == []


def test_an_invitee_chooses_a_password_and_lands_signed_in(alice: User, workspace: Workspace) -> None:
    from accounts.tasks import send_membership_email

    membership = services.membership_add(actor=Actor(user=alice), workspace=workspace, email="dora@example.com",
                                         role=Role.MEMBER)
    send_membership_email(membership.pk, True)  # what the worker runs (tested through one in test_tasks)
    client = Client()
    form_url = follow_reset_link(client, str(mail.outbox[-1].body))
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    dora = User.objects.get(email="dora@example.com")
    assert dora.check_password(NEW_PASSWORD)
    assert client.get(reverse("home"), follow=True).context["workspace"] == workspace


def test_a_used_link_says_it_was_used_or_expired_and_offers_a_new_link_or_signing_in(
        client: Client, alice: User) -> None:
    ask_for_password_link(client, alice.email)
    body = str(mail.outbox[0].body)
    link = re.search(r"http://[^\s]+/account/password/reset/[^\s]+/", body)
    assert link
    form_url = follow_reset_link(client, body)
    client.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    again = Client().get(link.group(0).split("127.0.0.1:8000", 1)[-1].split("testserver", 1)[-1], follow=True)
    page = again.content.decode()
    assert not again.context["validlink"]
    assert "<h1>This link has already been used or has expired</h1>" in page
    assert "Link already used or expired · Tributary" in page
    assert f'href="{reverse("accounts:password_reset")}"' in page and f'href="{reverse("accounts:login")}"' in page
    assert "If you already chose a password with it, sign in." in page


@pytest.mark.django_db(transaction=True)
def test_the_page_only_queues_the_link_and_the_worker_sends_one_a_minute(
        celery_worker: Any, alice: User, caplog: pytest.LogCaptureFixture) -> None:
    client = Client()
    with caplog.at_level(logging.INFO, logger="accounts.tasks"):
        for _ in range(3):
            response = client.post(reverse("accounts:password_reset"), {"email": alice.email})
            assert response["Location"] == reverse("accounts:password_reset_done")
        # The three were queued; the worker sends the first and holds back the two within its minute.
        wait_for(lambda: [r.message for r in caplog.records if r.name == "accounts.tasks"].count(
            "accounts.email_held_back") == 2)
    assert AuditEvent.objects.filter(action=AuditAction.PASSWORD_RESET_REQUESTED).count() == 3
    assert len(mail.outbox) == 1 and mail.outbox[0].to == [alice.email]
    follow_reset_link(client, str(mail.outbox[0].body))
