"""Who may do what in a workspace: the gate in front of every workspace page (membership, else
404; role, else 403) and the role check every service makes before a write."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.audit import Actor, audit_record
from accounts.http import WorkspaceRequest
from accounts.models import AuditAction, Membership, User, Workspace
from accounts.selectors import membership_get_for_user

# A view as written (it is given the membership and workspace) and as routed (given the slug).
WorkspaceView = Callable[Concatenate[WorkspaceRequest, ...], HttpResponse]
View = Callable[..., HttpResponse]
SESSION_WORKSPACE_KEY = "workspace"


def manager_membership(actor: Actor, workspace: Workspace, *, to: str) -> Membership:
    """The acting person's own membership of the workspace, which must be owner or admin.

    Anyone else, the system and operators included, is refused with "Only owners and admins
    can <to>." (`to` says what was attempted: "manage ingest keys", "import events").
    """
    membership = None
    if actor.user is not None:
        membership = Membership.objects.filter(workspace=workspace, user=actor.user).first()
    if membership is None or not membership.can_manage:
        raise PermissionDenied(f"Only owners and admins can {to}.")
    return membership


def require_manager(actor: Actor, workspace: Workspace, *, to: str) -> None:
    """Let owners and admins of the workspace through, and also operators (staff) acting from
    the admin and the system (commands, tasks); refuse anyone else as `manager_membership` does."""
    if actor.user is None or actor.user.is_staff:
        return
    manager_membership(actor, workspace, to=to)


def workspace_view(*, manage: bool = False) -> Callable[[WorkspaceView], View]:
    """Resolve the `slug` URL argument to the user's membership and check the role.

    Sets `request.workspace` and `request.membership` (so the view takes a WorkspaceRequest),
    remembers the workspace as the user's current one, and audits every refused attempt
    (including refusals raised by the services the view calls) before answering 403.
    """

    def decorator(view: WorkspaceView) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            # login_required let only a signed-in user through; the attributes are set just below.
            member_request = cast(WorkspaceRequest, request)
            membership = membership_get_for_user(user=cast(User, request.user), slug=slug)
            member_request.membership = membership
            member_request.workspace = membership.workspace
            if request.session.get(SESSION_WORKSPACE_KEY) != slug:  # no session write per page view
                request.session[SESSION_WORKSPACE_KEY] = slug
            try:
                if manage and not membership.can_manage:
                    raise PermissionDenied("Only owners and admins can do this.")
                return view(member_request, *args, **kwargs)
            except PermissionDenied as denied:
                audit_record(
                    actor=Actor.from_request(request),
                    action=AuditAction.ACCESS_DENIED,
                    workspace=membership.workspace,
                    details={"path": request.path, "method": request.method, "reason": str(denied)},
                )
                raise

        return wrapper

    return decorator
