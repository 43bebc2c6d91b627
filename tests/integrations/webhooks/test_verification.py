"""Signature checks: the reference library's own signatures, hand-built vectors, several
signatures in one header, the rotation overlap and the tolerance edges."""
from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations.models import SignatureVerdict, WebhookEndpoint
from integrations.webhooks import receive, services
from integrations.webhooks.verification import (
    SECRET_PREFIX,
    secret_generate,
    sign,
    signature_verify,
    url_token_hash,
    url_token_matches,
    webhook_for,
)

# The Standard Webhooks specification's own example: secret, id, timestamp, body and signature.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def headers(webhook_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def hand_signed(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Built from the scheme's words, not from any library: base64 HMAC-SHA256 keyed with the
    base64-decoded secret, over `id.timestamp.body`."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    return "v1," + base64.b64encode(hmac.new(key, b"%s.%d.%s" % (webhook_id.encode(), timestamp, body),
                                             hashlib.sha256).digest()).decode()


def test_the_specifications_example_verifies_at_its_own_time() -> None:
    assert hand_signed(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    found = signature_verify(SPEC_BODY, headers(SPEC_ID, SPEC_TIMESTAMP, SPEC_SIGNATURE), [webhook_for(SPEC_SECRET)],
                             now=SPEC_TIMESTAMP + 10)
    # Our header check passes; the library then checks the time against the real clock.
    assert found.verdict == SignatureVerdict.STALE


def test_signatures_made_by_the_reference_library_verify() -> None:
    secret = secret_generate()
    now = datetime.now(tz=UTC)
    body = '{"type":"contact.created","data":{"contact":{"email":"a@example.com"}}}'
    signature = Webhook(secret).sign("msg_lib", now, body)
    found = signature_verify(body.encode(), headers("msg_lib", int(now.timestamp()), signature), [webhook_for(secret)])
    assert found.verdict == SignatureVerdict.VERIFIED


def test_hand_built_signatures_verify_and_any_change_breaks_them() -> None:
    secret = secret_generate()
    now = int(time.time())
    body = b'{"type":"conversation.started","emoji":"\xf0\x9f\x92\xac"}'
    good = hand_signed(secret, "msg_1", now, body)
    keys = [webhook_for(secret)]
    assert signature_verify(body, headers("msg_1", now, good), keys).verdict == SignatureVerdict.VERIFIED
    assert signature_verify(body + b" ", headers("msg_1", now, good), keys).verdict == SignatureVerdict.INVALID
    assert signature_verify(body, headers("msg_2", now, good), keys).verdict == SignatureVerdict.INVALID
    assert signature_verify(body, headers("msg_1", now + 1, good), keys).verdict == SignatureVerdict.INVALID
    other = hand_signed(secret_generate(), "msg_1", now, body)
    assert signature_verify(body, headers("msg_1", now, other), keys).verdict == SignatureVerdict.INVALID


def test_any_one_of_several_signatures_is_enough() -> None:
    secret = secret_generate()
    now = int(time.time())
    body = b'{"n":1}'
    good = hand_signed(secret, "msg_1", now, body)
    wrong = hand_signed(secret_generate(), "msg_1", now, body)
    keys = [webhook_for(secret)]
    for listed in (f"{wrong} {good}", f"{good} {wrong}", f"v1a,c29tZWVkMjU1MTk= {good}"):
        assert signature_verify(body, headers("msg_1", now, listed), keys).verdict == SignatureVerdict.VERIFIED
    assert signature_verify(body, headers("msg_1", now, f"{wrong} {wrong}"), keys).verdict == SignatureVerdict.INVALID
    # A signature of another scheme version alone is not one we can check.
    v2 = good.replace("v1,", "v2,")
    assert signature_verify(body, headers("msg_1", now, v2), keys).verdict == SignatureVerdict.INVALID


@pytest.mark.parametrize(("offset", "verdict"), [
    (-299, SignatureVerdict.VERIFIED), (-301, SignatureVerdict.STALE),
    (299, SignatureVerdict.VERIFIED), (301, SignatureVerdict.FUTURE),
])
def test_the_tolerance_is_five_minutes_either_way(offset: int, verdict: SignatureVerdict) -> None:
    secret = secret_generate()
    now = int(time.time())
    body = b"{}"
    signature = hand_signed(secret, "msg_1", now + offset, body)
    assert signature_verify(body, headers("msg_1", now + offset, signature), [webhook_for(secret)],
                            now=now).verdict == verdict


def test_the_secret_is_whsec_and_32_random_bytes() -> None:
    secret = secret_generate()
    assert secret.startswith(SECRET_PREFIX) and len(base64.b64decode(secret[len(SECRET_PREFIX):])) == 32
    assert secret != secret_generate()


def test_url_tokens_are_compared_by_hash() -> None:
    assert url_token_matches("abc", url_token_hash("abc"))
    assert not url_token_matches("abd", url_token_hash("abc")) and not url_token_matches("abc", "")


@pytest.mark.django_db
def test_after_a_rotation_the_old_secret_verifies_until_the_overlap_ends(alice: User, workspace: Workspace) -> None:
    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    old = created.secret
    rotated = services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=6)
    assert rotated.secret != old and rotated.secret.startswith("whsec_")
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert endpoint.secret() == rotated.secret and endpoint.previous_secret() == old
    assert old not in endpoint.secret_encrypted and old not in endpoint.previous_secret_encrypted
    now = int(time.time())
    body = b'{"n":1}'
    receiver = receive._receiver(endpoint)
    at = datetime.now(tz=UTC)
    for secret, verdict in ((rotated.secret, SignatureVerdict.VERIFIED), (old, SignatureVerdict.VERIFIED_PREVIOUS)):
        found = signature_verify(body, headers("m", now, hand_signed(secret, "m", now, body)), receiver.webhooks(at))
        assert found.verdict == verdict
    # Past the overlap only the new secret is tried.
    later = at + timedelta(hours=6, seconds=1)
    assert len(receiver.webhooks(later)) == 1
    assert endpoint.previous_secret(now=later) is None
    found = signature_verify(body, headers("m", now, hand_signed(old, "m", now, body)), receiver.webhooks(later))
    assert found.verdict == SignatureVerdict.INVALID


@pytest.mark.django_db
def test_a_rotation_without_overlap_stops_the_old_secret_at_once(alice: User, workspace: Workspace) -> None:
    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=0)
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert endpoint.previous_secret() is None and len(receive._receiver(endpoint).webhooks(datetime.now(tz=UTC))) == 1


@pytest.mark.django_db
def test_an_overlap_longer_than_a_day_is_refused(alice: User, workspace: Workspace) -> None:
    from django.core.exceptions import ValidationError

    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    with pytest.raises(ValidationError):
        services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=25)


@pytest.mark.django_db
def test_a_second_rotation_during_an_overlap_is_refused_and_the_sender_keeps_working(
        alice: User, workspace: Workspace) -> None:
    from django.core.exceptions import ValidationError

    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    first = services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=24)
    with pytest.raises(ValidationError) as refused:
        services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=24)
    assert "still accepted until" in str(refused.value.message_dict["end_running_overlap"])
    assert created.secret not in str(refused.value) and first.secret not in str(refused.value)
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    # The original secret (what the sender may still sign with) and the new one both verify.
    now, body, at = int(time.time()), b'{"n":1}', datetime.now(tz=UTC)
    webhooks = receive._receiver(endpoint).webhooks(at)
    for secret, verdict in ((first.secret, SignatureVerdict.VERIFIED), (created.secret, SignatureVerdict.VERIFIED_PREVIOUS)):
        assert signature_verify(body, headers("m", now, hand_signed(secret, "m", now, body)), webhooks).verdict == verdict
    assert AuditEvent.objects.filter(action=AuditAction.WEBHOOK_SECRET_ROTATED).count() == 1


@pytest.mark.django_db
def test_a_second_rotation_that_ends_the_running_overlap_keeps_the_current_secret_for_the_new_one(
        alice: User, workspace: Workspace) -> None:
    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    first = services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=24)
    second = services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=1,
                                             end_running_overlap=True)
    endpoint = WebhookEndpoint.objects.get(pk=created.endpoint.pk)
    assert endpoint.secret() == second.secret and endpoint.previous_secret() == first.secret
    assert endpoint.previous_secret_expires_at is not None
    assert endpoint.previous_secret_expires_at <= datetime.now(tz=UTC) + timedelta(hours=1)
    audit = AuditEvent.objects.filter(action=AuditAction.WEBHOOK_SECRET_ROTATED).latest("id")
    assert audit.details["ended_running_overlap"] is True


@pytest.mark.django_db
def test_an_ended_overlap_does_not_hold_up_the_next_rotation(alice: User, workspace: Workspace) -> None:
    created = services.endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat")
    services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=0)
    services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=6)
    WebhookEndpoint.objects.filter(pk=created.endpoint.pk).update(
        previous_secret_expires_at=datetime.now(tz=UTC) - timedelta(seconds=1))
    third = services.endpoint_rotate_secret(actor=Actor(user=alice), endpoint=created.endpoint, overlap_hours=6)
    assert WebhookEndpoint.objects.get(pk=created.endpoint.pk).secret() == third.secret
