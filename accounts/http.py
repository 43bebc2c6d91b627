"""The request types views are written against: what django-htmx and the workspace gate add."""
from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from accounts.models import Membership, User, Workspace


class HtmxRequest(HttpRequest):
    """Any request: django-htmx's middleware sets `htmx` on every one (falsy outside htmx)."""

    htmx: HtmxDetails


class AuthenticatedRequest(HtmxRequest):
    """A request that passed `login_required`: its user is signed in, never anonymous."""

    user: User


class WorkspaceRequest(AuthenticatedRequest):
    """A request that passed `workspace_view`: the signed-in user's membership of the URL's
    workspace, and that workspace."""

    workspace: Workspace
    membership: Membership
