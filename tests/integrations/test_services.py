"""Connection services: validation, duplicates, and one audit row per change, never the key."""
from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.models import Connection, Health
from tests.conftest import make_user, new_write_key


def by(user: User) -> Actor:
    return Actor(user=user, ip="198.51.100.4", user_agent="pytest-agent")


def only_row(action: str) -> AuditEvent:
    return AuditEvent.objects.get(action=action)


def assert_no_key_in_audit(key: str) -> None:
    for row in AuditEvent.objects.all():
        assert key not in str(row.details)


@pytest.fixture
def key() -> str:
    return new_write_key()


@pytest.fixture
def connection(alice: User, workspace: Workspace, key: str) -> Connection:
    return services.connection_create(actor=by(alice), workspace=workspace, name="Production", region="eu",
                                      write_key=key)


def test_creating_stores_the_key_encrypted_with_its_last_four(connection: Connection, key: str) -> None:
    assert key not in connection.write_key_encrypted
    assert connection.masked_key == f"•••• {key[-4:]}" and connection.write_key() == key
    assert connection.health == Health.PENDING and connection.latest_verification is not None
    row = only_row(AuditAction.CONNECTION_CREATED)
    assert row.details == {"name": "Production", "region": "eu", "key": f"•••• {key[-4:]}"}
    assert (row.ip, row.user_agent) == ("198.51.100.4", "pytest-agent")
    assert key not in str(connection) and key not in repr(connection)


def test_the_same_key_twice_in_a_workspace_is_refused(alice: User, workspace: Workspace, key: str,
                                                      connection: Connection) -> None:
    with pytest.raises(ValidationError) as refused:
        services.connection_create(actor=by(alice), workspace=workspace, name="Staging", region="eu",
                                   write_key=f"  {key}  ")
    assert "already connected in this workspace as “Production”" in str(refused.value)


def test_the_same_key_in_two_workspaces_is_allowed(key: str, connection: Connection) -> None:
    charlie = make_user("charlie@example.com", "Charlie Corp")
    other = services.connection_create(actor=by(charlie), workspace=charlie.memberships.get().workspace,
                                       name="Production", region="eu", write_key=key)
    assert other.write_key_fingerprint == connection.write_key_fingerprint


@pytest.mark.parametrize("bad", ["", "short", "has spaces in the middle of it", "with:colon-and-more-chars"])
def test_implausible_keys_are_refused_with_what_to_fix(alice: User, workspace: Workspace, bad: str) -> None:
    with pytest.raises(ValidationError) as refused:
        services.connection_create(actor=by(alice), workspace=workspace, name="P", region="us", write_key=bad)
    assert "write_key" in refused.value.error_dict
    assert not Connection.objects.exists()


def test_a_region_other_than_us_or_eu_is_refused(alice: User, workspace: Workspace, key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        services.connection_create(actor=by(alice), workspace=workspace, name="P", region="ap", write_key=key)
    assert "region" in refused.value.error_dict


def test_a_member_cannot_connect(bob: User, workspace: Workspace, key: str) -> None:
    with pytest.raises(PermissionDenied):
        services.connection_create(actor=by(bob), workspace=workspace, name="P", region="us", write_key=key)


def test_replacing_the_key_is_audited_and_rechecked(alice: User, connection: Connection, key: str) -> None:
    first_check = connection.latest_verification
    replacement = new_write_key()
    services.connection_replace_key(actor=by(alice), connection=connection, write_key=replacement, region="us")
    connection.refresh_from_db()
    assert connection.write_key() == replacement and connection.region == "us"
    assert connection.latest_verification != first_check
    row = only_row(AuditAction.CONNECTION_KEY_REPLACED)
    assert row.details["previous_key"] == f"•••• {key[-4:]}" and row.details["key"] == f"•••• {replacement[-4:]}"
    assert_no_key_in_audit(key)
    assert_no_key_in_audit(replacement)


def test_renaming_enabling_disabling_and_deleting_are_audited(alice: User, connection: Connection) -> None:
    services.connection_rename(actor=by(alice), connection=connection, name="Prod EU")
    services.connection_set_enabled(actor=by(alice), connection=connection, enabled=False)
    services.connection_set_enabled(actor=by(alice), connection=connection, enabled=True)
    services.connection_delete(actor=by(alice), connection=connection)
    assert only_row(AuditAction.CONNECTION_RENAMED).details == {"from": "Production", "to": "Prod EU", "target_name": "Prod EU"}
    assert only_row(AuditAction.CONNECTION_DISABLED).actor == alice
    assert only_row(AuditAction.CONNECTION_ENABLED).actor == alice
    assert only_row(AuditAction.CONNECTION_DELETED).details["name"] == "Prod EU"
    assert not Connection.objects.exists()


def test_an_operator_acts_through_the_same_services(connection: Connection) -> None:
    operator = make_user("ops@tributary.example")
    operator.is_staff = True
    operator.save()
    services.connection_set_enabled(actor=by(operator), connection=connection, enabled=False)
    assert only_row(AuditAction.CONNECTION_DISABLED).actor == operator
