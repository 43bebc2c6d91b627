"""Sign-in lockout counts failures per person, whatever the spelling of the address."""
from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from accounts.lockout import lockout_username
from accounts.models import AuditAction, AuditEvent, User
from tests.conftest import PASSWORD

SPELLINGS = ["alice@example.com", "Alice@Example.Com", " alice@example.com ", "ALICE@EXAMPLE.COM",
             "\talice@example.COM\n"]


def sign_in(client: Client, email: str, password: str) -> int:
    return client.post(reverse("accounts:login"), {"username": email, "password": password}).status_code


def test_five_failures_in_any_spelling_lock_every_spelling_out(client: Client, alice: User) -> None:
    statuses = [sign_in(client, spelling, "wrong-password") for spelling in SPELLINGS]
    assert statuses == [200, 200, 200, 200, 429]  # the fifth failure is the one that locks
    for spelling in SPELLINGS:
        assert sign_in(client, spelling, PASSWORD) == 429, spelling
    assert not AuditEvent.objects.filter(action=AuditAction.LOGGED_IN).exists()
    assert AuditEvent.objects.filter(action=AuditAction.LOCKED_OUT, details={"email": "alice@example.com"}).exists()


def test_the_right_password_in_another_spelling_does_not_get_in_during_a_lockout(client: Client,
                                                                                alice: User) -> None:
    for _ in range(5):
        sign_in(client, "alice@example.com", "wrong-password")
    assert sign_in(client, "Alice@Example.Com", PASSWORD) == 429
    assert sign_in(client, "  ALICE@example.com  ", PASSWORD) == 429
    assert "_auth_user_id" not in client.session


def test_four_failures_in_mixed_spellings_still_let_the_owner_in(client: Client, alice: User) -> None:
    for spelling in SPELLINGS[1:]:
        sign_in(client, spelling, "wrong-password")
    assert sign_in(client, "alice@example.com", PASSWORD) == 302
    # A success clears the count for the person, so four more failures do not lock them out.
    client.logout()
    for spelling in SPELLINGS[1:]:
        sign_in(client, spelling, "wrong-password")
    assert sign_in(client, "Alice@example.com", PASSWORD) == 302


def test_a_lockout_of_one_person_leaves_another_alone(client: Client, alice: User, bob: User) -> None:
    for spelling in SPELLINGS:
        sign_in(client, spelling, "wrong-password")
    assert sign_in(client, "Bob@Example.com", PASSWORD) == 302


def test_the_admin_sign_in_counts_against_the_same_person(client: Client, alice: User) -> None:
    for spelling in SPELLINGS:
        client.post(reverse("admin:login"), {"username": spelling, "password": "wrong-password"})
    assert sign_in(client, "alice@example.com", PASSWORD) == 429


def test_the_lockout_key_is_the_stripped_lower_case_address() -> None:
    assert lockout_username(None, {"username": " Victim@Example.Com\n"}) == "victim@example.com"
    assert lockout_username(None, {"username": None}) is None


def test_behind_a_proxy_a_lockout_holds_the_attackers_address_not_everyone(client: Client, alice: User,
                                                                           settings: Any) -> None:
    """Behind our proxy every request's REMOTE_ADDR is the proxy's: the lockout, like rate limits,
    must key on the client the proxy names, or five guesses from anywhere lock the owner out."""
    settings.TRUSTED_PROXY_COUNT = 1

    def sign_in_from(address: str, password: str) -> int:
        return client.post(reverse("accounts:login"), {"username": "alice@example.com", "password": password},
                           REMOTE_ADDR="10.0.0.1", HTTP_X_FORWARDED_FOR=address).status_code

    assert [sign_in_from("198.51.100.7", "wrong-password") for _ in range(5)] == [200, 200, 200, 200, 429]
    assert sign_in_from("198.51.100.7", PASSWORD) == 429
    assert sign_in_from("203.0.113.20", PASSWORD) == 302
    addresses = {action: set(AuditEvent.objects.filter(action=action).values_list("ip", flat=True))
                 for action in (AuditAction.LOCKED_OUT, AuditAction.LOGGED_IN)}
    assert addresses == {AuditAction.LOCKED_OUT: {"198.51.100.7"}, AuditAction.LOGGED_IN: {"203.0.113.20"}}
