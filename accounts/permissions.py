"""The gate in front of every workspace page: membership (else 404) and role (else 403)."""
from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from accounts.selectors import membership_get_for_user

View = Callable[..., HttpResponse]
SESSION_WORKSPACE_KEY = "workspace"


def workspace_view(*, manage: bool = False) -> Callable[[View], View]:
    """Resolve the `slug` URL argument to the user's membership and check the role.

    Sets `request.workspace` and `request.membership`, remembers the workspace as the
    user's current one, and audits every refused attempt (including refusals raised by the
    services the view calls) before answering 403.
    """

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = membership_get_for_user(user=request.user, slug=slug)  # type: ignore[arg-type]
            request.membership = membership  # type: ignore[attr-defined]
            request.workspace = membership.workspace  # type: ignore[attr-defined]
            if request.session.get(SESSION_WORKSPACE_KEY) != slug:  # no session write per page view
                request.session[SESSION_WORKSPACE_KEY] = slug
            try:
                if manage and not membership.can_manage:
                    raise PermissionDenied("Only owners and admins can do this.")
                return view(request, *args, **kwargs)
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
