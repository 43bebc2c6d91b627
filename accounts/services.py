"""Every write to accounts, workspaces and memberships.

Each function validates, runs in a transaction, writes its audit row and schedules e-mail
with `on_commit`, so a rolled-back change leaves no row and sends nothing.
"""
from __future__ import annotations

import secrets
from datetime import timedelta

from django.contrib.auth.hashers import make_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Membership, Role, SignUpRequest, User, Workspace
from accounts.permissions import manager_membership
from accounts.tasks import send_membership_email, send_password_reset, send_sign_up_link, send_sign_up_notice
from accounts.tokens import sign_up_link_lifetime
from accounts.validation import name_cleaned, name_problem


class EmailRegistered(ValidationError):
    """Sign-up with an address that already has an account. The page must not say so."""


class SignUpLinkUsed(Exception):
    """The sign-up a link named was confirmed (or replaced) by another request meanwhile."""


# A second sign-up with one address within this long sends no second e-mail (the page is the
# same): a form cannot be used to flood someone's inbox.
SIGN_UP_EMAIL_EVERY = timedelta(minutes=1)


def user_sign_up(*, actor: Actor, email: str, password: str, full_name: str, workspace_name: str) -> User:
    """Create an account and its first workspace, owned by the new user, at once: for commands
    and fixtures (the demo, benchmarks). The sign-up page proves the address first
    (`sign_up_request`, `sign_up_confirm`).

    Raises EmailRegistered if the address has an account, invited or not.
    """
    email = User.objects.normalize_email(email).lower()
    full_name = _sign_up_names_checked(full_name, workspace_name)
    with transaction.atomic():
        if User.objects.filter(email__iexact=email).exists():
            raise EmailRegistered({"email": "An account with this e-mail already exists. Sign in instead."})
        user = User.objects.create_user(email, password, full_name=full_name)
        acting = Actor(user=user, ip=actor.ip, user_agent=actor.user_agent)
        audit_record(actor=acting, action=AuditAction.SIGNED_UP, target=user)
        workspace_create(actor=acting, name=workspace_name)
    return user


def _sign_up_names_checked(full_name: str, workspace_name: str) -> str:
    """The person's name, stripped; a ValidationError naming each field whose name is refused."""
    full_name = full_name.strip()
    problems = {field: name_problem(value) for field, value in [("full_name", full_name),
                                                                ("workspace_name", workspace_name)]}
    if any(problems.values()):
        raise ValidationError({field: problem for field, problem in problems.items() if problem})
    return full_name


def sign_up_request(*, actor: Actor, email: str, password: str, full_name: str, workspace_name: str) -> None:
    """The sign-up page: e-mail a link that proves the address, and create nothing until it
    is followed (`sign_up_confirm`). So nobody holds an address they cannot read, and an
    owner who adds it to a workspace reaches its real owner.

    Whether the address is free or taken, the page says "Check your inbox" and the owner of
    the address gets the e-mail (`sign_up_taken` when it has an account). The password is
    hashed either way, so the time taken does not tell the two apart either.
    """
    email = User.objects.normalize_email(email).strip().lower()
    full_name = _sign_up_names_checked(full_name, workspace_name)
    hashed = make_password(password)
    if User.objects.filter(email__iexact=email).exists():
        sign_up_taken(actor=actor, email=email)
        return
    now = timezone.now()
    with transaction.atomic():
        SignUpRequest.objects.filter(created_at__lte=now - sign_up_link_lifetime()).delete()
        if SignUpRequest.objects.filter(email=email, created_at__gt=now - SIGN_UP_EMAIL_EVERY).exists():
            return
        SignUpRequest.objects.filter(email=email).delete()  # only the newest link works
        request = SignUpRequest.objects.create(email=email, full_name=full_name,
                                               workspace_name=workspace_name.strip(),
                                               password=hashed, created_at=now)
        transaction.on_commit(lambda: send_sign_up_link.delay(request.pk))


def sign_up_confirm(*, actor: Actor, request: SignUpRequest) -> User:
    """Follow a sign-up link: make the account with the password chosen at sign-up, and its
    first workspace. The link proved the address, so an invitation waiting under it (an
    account with no password yet) is claimed instead of refused.

    Raises SignUpLinkUsed if the request is gone, and EmailRegistered if the address got a
    full account since (the link is then spent).
    """
    with transaction.atomic():
        pending = SignUpRequest.objects.select_for_update().filter(pk=request.pk).first()
        if pending is None:
            raise SignUpLinkUsed
        pending.delete()
        user = User.objects.select_for_update().filter(email__iexact=pending.email).first()
        if user is not None and user.has_usable_password():
            raise EmailRegistered({"email": "An account with this e-mail already exists. Sign in instead."})
        acting = Actor(user=user, ip=actor.ip, user_agent=actor.user_agent)
        if user is None:
            user = User.objects.create_user(pending.email, None, full_name=pending.full_name)
            acting = Actor(user=user, ip=actor.ip, user_agent=actor.user_agent)
            audit_record(actor=acting, action=AuditAction.SIGNED_UP, target=user)
        else:
            user.full_name = user.full_name or pending.full_name
            _invitations_accepted(acting, user)
        user.password = pending.password
        user.save(update_fields=["password", "full_name"])
        workspace_create(actor=acting, name=pending.workspace_name)
    return user


def sign_up_taken(*, actor: Actor, email: str) -> None:
    """Someone signed up with an address that has an account: e-mail its owner, and show the
    same "check your inbox" page whoever asked, so the page reveals nothing.

    An invitee who never chose a password gets a link to claim the account (choose one); a
    registered person is told they already have an account, with links to sign in or reset.
    Nothing about the account changes until the link is used.
    """
    user = User.objects.filter(email__iexact=User.objects.normalize_email(email).strip(), is_active=True).first()
    if user is None:  # deactivated: nobody to tell
        return
    with transaction.atomic():
        audit_record(actor=actor, action=AuditAction.SIGN_UP_EXISTING, target=user,
                     details={"email": user.email, "invited": not user.has_usable_password()})
        transaction.on_commit(lambda: send_sign_up_notice.delay(user.pk))


def password_reset_request(*, actor: Actor, email: str) -> None:
    """Someone asked for a link to choose a password: audited, and e-mailed by the worker
    (tasks.send_password_reset) to the account of that address if there is one. The page says
    "Check your inbox" either way, and takes the same time either way."""
    with transaction.atomic():
        audit_record(actor=actor, action=AuditAction.PASSWORD_RESET_REQUESTED, details={"email": email})
        transaction.on_commit(lambda: send_password_reset.delay(email))


def password_set_from_link(*, actor: Actor, user: User, password: str) -> User:
    """Set the password chosen through an e-mailed link (reset, invitation or claim).

    An account without a usable password is an invitation not yet taken: its first password
    accepts it, recorded once in each workspace it was invited to (or once for the account if
    it has been removed from all of them since). Otherwise this is a password reset.
    """
    acting = Actor(user=user, ip=actor.ip, user_agent=actor.user_agent)
    with transaction.atomic():
        accepting = not user.has_usable_password()
        user.set_password(password)
        user.save(update_fields=["password"])
        if not accepting:
            audit_record(actor=acting, action=AuditAction.PASSWORD_RESET, target=user)
            return user
        _invitations_accepted(acting, user)
    return user


def _invitations_accepted(acting: Actor, user: User) -> None:
    """Record an invitee's first password: once in each workspace that invited them, or once
    for the account if they have been removed from all of them since."""
    memberships = list(Membership.objects.filter(user=user).select_related("workspace"))
    for membership in memberships:
        audit_record(actor=acting, action=AuditAction.MEMBER_INVITATION_ACCEPTED,
                     workspace=membership.workspace, target=membership,
                     details={"email": user.email, "role": membership.role})
    if not memberships:
        audit_record(actor=acting, action=AuditAction.MEMBER_INVITATION_ACCEPTED, target=user,
                     details={"email": user.email})


def workspace_create(*, actor: Actor, name: str) -> Workspace:
    """Create a workspace owned by the acting user."""
    assert actor.user is not None, "a workspace needs a person to own it"
    name = name_cleaned(name, missing="Give the workspace a name.")
    with transaction.atomic():
        workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
        Membership.objects.create(workspace=workspace, user=actor.user, role=Role.OWNER)
        audit_record(
            actor=actor, action=AuditAction.WORKSPACE_CREATED, workspace=workspace,
            target=workspace, details={"name": name},
        )
    return workspace


def workspace_rename(*, actor: Actor, workspace: Workspace, name: str) -> Workspace:
    name = name_cleaned(name, missing="Give the workspace a name.")
    with transaction.atomic():
        manager_membership(actor, workspace, to="manage this workspace")
        old = workspace.name
        workspace.name = name
        workspace.save(update_fields=["name"])
        audit_record(
            actor=actor, action=AuditAction.WORKSPACE_RENAMED, workspace=workspace,
            target=workspace, details={"from": old, "to": name},
        )
    return workspace


def membership_add(*, actor: Actor, workspace: Workspace, email: str, role: str) -> Membership:
    """Add a person by e-mail. Someone without an account is invited: an account is made
    with no usable password and the e-mail carries a link to choose one."""
    email = User.objects.normalize_email(email).strip().lower()
    with transaction.atomic():
        acting = manager_membership(actor, workspace, to="manage this workspace")
        if role == Role.OWNER and not acting.is_owner:
            raise PermissionDenied("Only owners can add owners.")
        user = User.objects.filter(email__iexact=email).first()
        invited = user is None or not user.has_usable_password()
        if user is None:
            user = User.objects.create_user(email, password=None)
        elif Membership.objects.filter(workspace=workspace, user=user).exists():
            raise ValidationError({"email": f"{email} is already a member of this workspace."})
        membership = Membership.objects.create(workspace=workspace, user=user, role=role)
        audit_record(
            actor=actor,
            action=AuditAction.MEMBER_INVITED if invited else AuditAction.MEMBER_ADDED,
            workspace=workspace, target=membership, details={"email": email, "role": role},
        )
        transaction.on_commit(lambda: send_membership_email.delay(membership.pk, invited))
    return membership


def membership_change_role(*, actor: Actor, membership: Membership, role: str) -> Membership:
    if role not in Role.values:
        raise ValidationError({"role": "Choose owner, admin or member."})
    with transaction.atomic():
        workspace = membership.workspace
        acting = manager_membership(actor, workspace, to="manage this workspace")
        if (membership.is_owner or role == Role.OWNER) and not acting.is_owner:
            raise PermissionDenied("Only owners can grant or take away the owner role.")
        if membership.is_owner and role != Role.OWNER:
            _refuse_if_last_owner(membership, "demote")
        old = membership.role
        if old == role:
            return membership
        membership.role = role
        membership.save(update_fields=["role"])
        audit_record(
            actor=actor, action=AuditAction.MEMBER_ROLE_CHANGED, workspace=workspace,
            target=membership, details={"email": membership.user.email, "from": old, "to": role},
        )
    return membership


def membership_remove(*, actor: Actor, membership: Membership) -> None:
    """Remove someone from a workspace; anyone may also remove themselves (leave)."""
    with transaction.atomic():
        workspace = membership.workspace
        leaving = actor.user is not None and actor.user.pk == membership.user_id
        if not leaving:
            acting = manager_membership(actor, workspace, to="manage this workspace")
            if membership.is_owner and not acting.is_owner:
                raise PermissionDenied("Only owners can remove an owner.")
        if membership.is_owner:
            _refuse_if_last_owner(membership, "remove")
        details = {"email": membership.user.email, "role": membership.role, "left": leaving}
        audit_record(
            actor=actor, action=AuditAction.MEMBER_REMOVED, workspace=workspace,
            target=membership, details=details,
        )
        membership.delete()


def _refuse_if_last_owner(membership: Membership, verb: str) -> None:
    # Lock the owner rows so two concurrent demotions cannot both see "another owner left".
    owners = list(Membership.objects.select_for_update().filter(
        workspace_id=membership.workspace_id, role=Role.OWNER
    ).exclude(pk=membership.pk).select_related("user"))
    if not owners:
        raise ValidationError(f"You cannot {verb} the last owner. Make someone else an owner first.")
    # An invitation nobody accepted is no owner yet: it may never be, and nobody could manage
    # the workspace meanwhile.
    if not any(owner.user.has_usable_password() for owner in owners):
        pending = ", ".join(owner.user.email for owner in owners[:3])
        raise ValidationError(f"You cannot {verb} the last owner who has signed in: {pending} has not accepted the "
                              "invitation yet. Wait until they have, or make another member an owner.")


def _unique_slug(name: str) -> str:
    base = slugify(name)[:48] or "workspace"
    slug = base
    while Workspace.objects.filter(slug=slug).exists():
        slug = f"{base}-{secrets.token_hex(3)}"
    return slug
