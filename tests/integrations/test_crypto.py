"""Write keys at rest: encrypted, named by key id, never decrypted by fallback, rotatable."""
from __future__ import annotations

import time
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import crypto, services
from integrations.admin import encryption_key_usage
from integrations.checks import encryption_key_errors, ensure_encryption_keys, refuse_unreadable_secrets
from integrations.ingest import emit
from integrations.models import Connection, Health, Outcome
from integrations.relay.delivery import connection_deliver
from tests.conftest import mark_checked, new_write_key

OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()


def connect(alice: User, workspace: Workspace, key: str, name: str) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name=name, region="us",
                                      write_key=key)


def test_a_stored_value_names_its_key_and_never_contains_the_secret(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    stored = crypto.encrypt("abcdefghijklmnop1234")
    assert stored.startswith(crypto.key_id(OLD_KEY) + "$")
    assert "abcdefghijklmnop1234" not in stored
    assert crypto.decrypt(stored) == "abcdefghijklmnop1234"


def test_a_value_that_does_not_decrypt_raises_instead_of_falling_back(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    with pytest.raises(crypto.CredentialUnreadable):
        crypto.decrypt("plain-text-write-key")
    tampered = crypto.encrypt("abcdefghijklmnop1234")[:-6] + "AAAAA="
    with pytest.raises(crypto.CredentialUnreadable):
        crypto.decrypt(tampered)


def test_a_malformed_key_is_refused_without_echoing_it(settings: Any) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY, "not-a-fernet-key-but-secret"]
    with pytest.raises(ImproperlyConfigured) as problem:
        crypto.keyring()
    assert "entry 2" in str(problem.value) and "not-a-fernet-key-but-secret" not in str(problem.value)


def test_the_full_rotation_drill(settings: Any, segment: Any, alice: User, workspace: Workspace) -> None:
    # 1. Values written under the old key.
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    keys = [new_write_key() for _ in range(3)]
    for number, key in enumerate(keys):
        segment.register_key(key, "us")
        connect(alice, workspace, key, f"Source {number}")
    fingerprints = set(Connection.objects.values_list("write_key_fingerprint", flat=True))

    # 2. A new key goes first; the old one stays to decrypt. The admin shows who protects what.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    usage = {row["key_id"]: row["values"] for row in encryption_key_usage()}
    assert usage == {crypto.key_id(NEW_KEY): 0, crypto.key_id(OLD_KEY): 3}

    # 3. Rotate in batches of one, printing progress; a second run has nothing to do.
    out = StringIO()
    call_command("rotate_encryption_keys", "--batch-size", "1", stdout=out)
    assert "3 value(s) to re-encrypt" in out.getvalue() and "3/3 processed" in out.getvalue()
    again = StringIO()
    call_command("rotate_encryption_keys", stdout=again)
    assert "0 value(s) to re-encrypt" in again.getvalue()
    assert AuditEvent.objects.filter(action=AuditAction.KEYS_ROTATED).count() == 2

    # 4. The old key is removed: everything still decrypts, checks pass and events are sent.
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]
    assert encryption_key_errors() == []
    assert set(Connection.objects.values_list("write_key_fingerprint", flat=True)) == fingerprints
    for connection, key in zip(Connection.objects.order_by("name"), keys, strict=True):
        assert connection.write_key() == key
        run = services.verification_request(actor=Actor(user=alice), connection=connection, trigger="manual")
        assert services.verification_run(verification_id=run.pk).outcome == Outcome.PASSED  # type: ignore[union-attr]
        assert segment.events(write_key=key, message_id=run.test_message_id or None)
    # …and the relay delivers with the re-encrypted keys.
    emit.track(workspace, "After Rotation", user_id="u1")
    for connection, key in zip(Connection.objects.order_by("name"), keys, strict=True):
        connection_deliver(connection_id=connection.pk)
        assert [e["payload"]["event"] for e in segment.events(write_key=key)
                if e["payload"].get("event") == "After Rotation"] == ["After Rotation"]


def stored(alice: User, workspace: Workspace, name: str) -> Connection:
    """A delivering connection whose key is encrypted under the current first key. Saved
    directly, so no check is queued for the worker."""
    connection = Connection(workspace=workspace, name=name, region="us", created_by=alice)
    connection.set_write_key(new_write_key())
    connection.save()
    checked: Connection = mark_checked(connection)
    return checked


@pytest.mark.django_db(transaction=True)
def test_a_key_no_configured_key_decrypts_pauses_its_connection_audited_and_e_mailed(
        settings: Any, celery_worker: Any, alice: User, workspace: Workspace) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # lost before the rotation
    lost = stored(alice, workspace, "Lost")
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    kept = stored(alice, workspace, "Kept")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]

    out = StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Done: 1 re-encrypted, 1 unreadable." in out.getvalue()
    lost.refresh_from_db()
    kept.refresh_from_db()
    assert lost.health == Health.UNREADABLE and lost.paused_reason == services.UNREADABLE_MESSAGE
    assert kept.health == Health.HEALTHY and not kept.paused_reason
    assert kept.write_key_key_id == crypto.key_id(NEW_KEY)
    [paused] = AuditEvent.objects.filter(action=AuditAction.CONNECTION_PAUSED)
    assert (paused.workspace, paused.target_id) == (workspace, str(lost.pk))
    assert paused.details["reason"] == services.UNREADABLE_MESSAGE and paused.details["told"] == [alice.pk]
    deadline = time.monotonic() + 20
    while not mail.outbox:  # sent by the worker, from the task queued by name
        assert time.monotonic() < deadline, "no e-mail about the pause"
        time.sleep(0.05)
    [email] = mail.outbox
    assert email.to == [alice.email] and "“Lost”" in email.subject and "paused" in email.subject

    # A second run finds the same unreadable value: told once, audited once.
    call_command("rotate_encryption_keys", stdout=StringIO())
    assert AuditEvent.objects.filter(action=AuditAction.CONNECTION_PAUSED).count() == 1
    assert AuditEvent.objects.filter(action=AuditAction.KEYS_ROTATED).count() == 2


def test_processes_refuse_to_start_when_a_needed_key_is_missing(settings: Any, alice: User,
                                                                workspace: Workspace) -> None:
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    connect(alice, workspace, new_write_key(), "Production")
    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY]  # the old key removed before rotating
    errors = encryption_key_errors()
    assert [e.id for e in errors] == ["integrations.E002"]
    assert crypto.key_id(OLD_KEY) in errors[0].msg
    with pytest.raises(ImproperlyConfigured):
        ensure_encryption_keys()  # what wsgi, asgi and the Celery worker call at start-up
    with pytest.raises(SystemExit, match="FIELD_ENCRYPTION_KEYS"):  # not logged and ignored, as an Exception is
        refuse_unreadable_secrets()
