from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from accounts.selectors import memberships_for_user


def workspaces(request: HttpRequest) -> dict[str, Any]:
    """The header's workspace switcher: the current membership and all of the user's."""
    if not request.user.is_authenticated:
        return {}
    return {
        "membership": getattr(request, "membership", None),
        "workspace": getattr(request, "workspace", None),
        "user_memberships": memberships_for_user(user=request.user),
    }
