from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from accounts import services
from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, Membership, Role, User, Workspace


def actor(user: User) -> Actor:
    return Actor(user=user, ip="203.0.113.7", user_agent="pytest")


def actions(workspace: Workspace) -> list[str]:
    return list(AuditEvent.objects.filter(workspace=workspace).order_by("id").values_list("action", flat=True))


@pytest.mark.django_db
def test_signing_up_creates_a_workspace_owned_by_the_new_user() -> None:
    user = services.user_sign_up(actor=Actor(user=None, ip="198.51.100.1"), email="New@Example.com",
                                 password="a-long-pass-phrase", full_name="New", workspace_name="Newco")
    membership = Membership.objects.get(user=user)
    assert user.email == "new@example.com"
    assert membership.role == Role.OWNER
    assert membership.workspace.name == "Newco"
    signed_up = AuditEvent.objects.get(action=AuditAction.SIGNED_UP)
    assert signed_up.actor == user and signed_up.ip == "198.51.100.1"
    assert actions(membership.workspace) == [AuditAction.WORKSPACE_CREATED]


@pytest.mark.django_db
def test_signing_up_twice_with_the_same_email_is_refused(alice: User) -> None:
    with pytest.raises(ValidationError, match="already exists"):
        services.user_sign_up(actor=Actor.system(), email="ALICE@example.com", password="x" * 12,
                              full_name="", workspace_name="Again")


def test_workspace_slugs_stay_unique(alice: User) -> None:
    first = services.workspace_create(actor=actor(alice), name="Same Name")
    second = services.workspace_create(actor=actor(alice), name="Same Name")
    assert first.slug != second.slug


def test_adding_an_existing_user_writes_an_audit_row_naming_the_actor(alice: User, workspace: Workspace,
                                                                      charlie: User) -> None:
    membership = services.membership_add(actor=actor(alice), workspace=workspace,
                                         email="Charlie@Example.com", role=Role.ADMIN)
    assert membership.user == charlie and membership.role == Role.ADMIN
    row = AuditEvent.objects.get(action=AuditAction.MEMBER_ADDED)
    assert (row.actor, row.workspace, row.ip, row.user_agent) == (alice, workspace, "203.0.113.7", "pytest")
    assert row.details == {"email": "charlie@example.com", "role": "admin"}
    assert row.target_type == "membership" and row.target_id == str(membership.pk)


def test_adding_an_unknown_email_invites_a_new_account_without_a_password(alice: User,
                                                                          workspace: Workspace) -> None:
    membership = services.membership_add(actor=actor(alice), workspace=workspace,
                                         email="dora@example.com", role=Role.MEMBER)
    assert not membership.user.has_usable_password()
    assert AuditEvent.objects.filter(action=AuditAction.MEMBER_INVITED, workspace=workspace).count() == 1


def test_adding_someone_who_is_already_a_member_is_refused(alice: User, bob: User,
                                                           workspace: Workspace) -> None:
    with pytest.raises(ValidationError, match="already a member"):
        services.membership_add(actor=actor(alice), workspace=workspace, email=bob.email, role=Role.MEMBER)


def test_a_member_cannot_add_members(bob: User, workspace: Workspace) -> None:
    with pytest.raises(PermissionDenied):
        services.membership_add(actor=actor(bob), workspace=workspace, email="x@example.com", role=Role.MEMBER)
    assert not User.objects.filter(email="x@example.com").exists()


def test_an_admin_cannot_hand_out_the_owner_role(alice: User, bob: User, workspace: Workspace) -> None:
    bob_membership = Membership.objects.get(user=bob, workspace=workspace)
    services.membership_change_role(actor=actor(alice), membership=bob_membership, role=Role.ADMIN)
    with pytest.raises(PermissionDenied):
        services.membership_add(actor=actor(bob), workspace=workspace, email="e@example.com", role=Role.OWNER)
    alice_membership = Membership.objects.get(user=alice, workspace=workspace)
    with pytest.raises(PermissionDenied):
        services.membership_change_role(actor=actor(bob), membership=alice_membership, role=Role.MEMBER)
    with pytest.raises(PermissionDenied):
        services.membership_remove(actor=actor(bob), membership=alice_membership)


def test_changing_a_role_is_audited_with_before_and_after(alice: User, bob: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=bob, workspace=workspace)
    services.membership_change_role(actor=actor(alice), membership=membership, role=Role.ADMIN)
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    row = AuditEvent.objects.get(action=AuditAction.MEMBER_ROLE_CHANGED)
    assert row.details == {"email": bob.email, "from": "member", "to": "admin"} and row.actor == alice


def test_the_last_owner_cannot_be_demoted(alice: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=alice, workspace=workspace)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_change_role(actor=actor(alice), membership=membership, role=Role.ADMIN)
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    assert not AuditEvent.objects.filter(action=AuditAction.MEMBER_ROLE_CHANGED).exists()


def test_the_last_owner_cannot_be_removed_or_leave(alice: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=alice, workspace=workspace)
    with pytest.raises(ValidationError, match="last owner"):
        services.membership_remove(actor=actor(alice), membership=membership)
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_an_owner_can_step_down_once_there_is_another_owner(alice: User, bob: User,
                                                            workspace: Workspace) -> None:
    bob_membership = Membership.objects.get(user=bob, workspace=workspace)
    services.membership_change_role(actor=actor(alice), membership=bob_membership, role=Role.OWNER)
    alice_membership = Membership.objects.get(user=alice, workspace=workspace)
    services.membership_change_role(actor=actor(alice), membership=alice_membership, role=Role.MEMBER)
    alice_membership.refresh_from_db()
    assert alice_membership.role == Role.MEMBER


def test_removing_a_member_is_audited(alice: User, bob: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=bob, workspace=workspace)
    services.membership_remove(actor=actor(alice), membership=membership)
    assert not Membership.objects.filter(user=bob, workspace=workspace).exists()
    row = AuditEvent.objects.get(action=AuditAction.MEMBER_REMOVED)
    assert row.details == {"email": bob.email, "role": "member", "left": False} and row.actor == alice


def test_a_member_can_leave_a_workspace(bob: User, workspace: Workspace) -> None:
    membership = Membership.objects.get(user=bob, workspace=workspace)
    services.membership_remove(actor=actor(bob), membership=membership)
    assert AuditEvent.objects.get(action=AuditAction.MEMBER_REMOVED).details["left"] is True


def test_renaming_a_workspace_is_audited(alice: User, workspace: Workspace) -> None:
    services.workspace_rename(actor=actor(alice), workspace=workspace, name="Alice Insights")
    row = AuditEvent.objects.get(action=AuditAction.WORKSPACE_RENAMED)
    assert row.details == {"from": "Alice Analytics", "to": "Alice Insights"}


def test_audit_events_cannot_be_changed_or_deleted(alice: User, workspace: Workspace) -> None:
    row = AuditEvent.objects.filter(workspace=workspace).first()
    assert row is not None
    row.details = {"tampered": True}
    with pytest.raises(TypeError):
        row.save()
    with pytest.raises(TypeError):
        row.delete()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(workspace=workspace).update(action="x.y")
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(workspace=workspace).delete()
    assert AuditEvent.objects.filter(workspace=workspace).count() == 1


def test_an_owner_invited_but_not_signed_in_does_not_count_as_another_owner(alice: User, workspace: Workspace) -> None:
    services.membership_add(actor=Actor(user=alice), workspace=workspace, email="owen@example.com", role=Role.OWNER)
    mine = Membership.objects.get(user=alice, workspace=workspace)
    with pytest.raises(ValidationError, match=r"owen@example\.com has not accepted the invitation yet"):
        services.membership_remove(actor=Actor(user=alice), membership=mine)
    with pytest.raises(ValidationError, match="last owner who has signed in"):
        services.membership_change_role(actor=Actor(user=alice), membership=mine, role=Role.ADMIN)
    owen = User.objects.get(email="owen@example.com")
    owen.set_password("x-long-enough-password-1")
    owen.save()
    services.membership_remove(actor=Actor(user=alice), membership=mine)  # now someone can manage it
    assert not Membership.objects.filter(user=alice, workspace=workspace).exists()
