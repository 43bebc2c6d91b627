"""Reads that enforce tenancy. Nothing fetches a workspace's object by id alone: a person
who is not a member gets a 404, as if the object did not exist."""
from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence

from django.db.models import Q, QuerySet
from django.http import Http404

from accounts.models import AuditEvent, Membership, User, Workspace


def membership_get_for_user(*, user: User, slug: str) -> Membership:
    """The user's membership in the workspace with this slug, or 404."""
    try:
        return Membership.objects.select_related("workspace").get(
            workspace__slug=slug, user=user
        )
    except Membership.DoesNotExist:
        raise Http404("No such workspace.") from None


def memberships_for_user(*, user: User) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user).select_related("workspace").order_by("workspace__name")


def workspace_members(*, workspace: Workspace) -> QuerySet[Membership]:
    return workspace.memberships.select_related("user").order_by("user__email")


def workspace_member_get(*, workspace: Workspace, pk: int) -> Membership:
    """A membership of this workspace by id, or 404 (ids of other workspaces included)."""
    try:
        return workspace.memberships.select_related("user", "workspace").get(pk=pk)
    except Membership.DoesNotExist:
        raise Http404("No such member.") from None


def audit_events_for_workspace(
    *, workspace: Workspace, group: str = "", actor_id: int | None = None,
    members: Sequence[Membership] | None = None,
) -> QuerySet[AuditEvent]:
    """The workspace's own events, plus account events (sign-ins) of its current members from
    the time each joined it: what a person did before (in another workspace, or before they
    were added) is not this workspace's owners' to read.

    The members go in as values (pass them when the caller has them), not as a subquery:
    then PostgreSQL reads both halves from their indexes (workspace; actor), in time that grows
    with this workspace's rows. With a subquery it cannot estimate, it scans every account event
    of every workspace for the count, and walks the whole log by time for a quiet workspace's
    page (10-45 ms with 100 workspaces and 47,000 sign-ins; `bench/dashboard.py`).
    """
    if members is None:
        members = list(workspace.memberships.all())
    since_joining = Q(pk__in=[])
    for membership in members:
        since_joining |= Q(actor_id=membership.user_id, created_at__gte=membership.created_at)
    events = AuditEvent.objects.filter(Q(workspace=workspace) | (Q(workspace__isnull=True) & since_joining))
    if group:
        events = events.filter(action__startswith=f"{group}.")
    if actor_id is not None:
        events = events.filter(actor_id=actor_id)
    return events.select_related("actor")


def users_for_password_reset(email: str) -> Iterator[User]:
    """The active accounts a reset link for `email` goes to; an account without a usable
    password too (an invitation nobody claimed yet: this is how its owner claims it).

    As Django compares, after Unicode case folding, so a look-alike address that the
    database's case-insensitive match lets through is skipped.
    """
    wanted = _folded(email)
    for user in User.objects.filter(email__iexact=email.strip(), is_active=True):
        if _folded(user.email) == wanted:
            yield user


def _folded(email: str) -> str:
    return unicodedata.normalize("NFKC", email.strip()).casefold()
