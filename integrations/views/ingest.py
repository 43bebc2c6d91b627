"""The ingest API's pages in Settings: API keys (create, show once, revoke) and the events the
API refused, with reasons.

Everyone in the workspace sees both; owners and admins create and revoke keys. A new key is
shown in the response that created it only.
"""
from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations.forms import IngestKeyForm
from integrations.ingest import keys as ingest_keys
from integrations.models import IngestKey
from integrations.selectors.rejections import rejected_events_for_workspace

REJECTED_PAGE_SIZE = 50


@workspace_view()
@require_GET
def api_keys(request: WorkspaceRequest) -> HttpResponse:
    return _api_keys_page(request)


@workspace_view(manage=True)
@require_POST
@never_cache
@sensitive_variables()
def ingest_key_create(request: WorkspaceRequest) -> HttpResponse:
    """The new key is in this response only: never in a redirect, the session or a message.

    The page is rendered inside the transaction: if it cannot be shown, the key never existed.
    """
    form = IngestKeyForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                ingest_key, key = ingest_keys.ingest_key_create(
                    actor=Actor.from_request(request), workspace=request.workspace,
                    name=form.cleaned_data["name"])
                return _api_keys_page(request, form=IngestKeyForm(), created=ingest_key, key=key)
        except ValidationError as error:
            attach_errors(form, error)
    return _api_keys_page(request, form=form, status=422)


@workspace_view(manage=True)
@require_POST
def ingest_key_revoke(request: WorkspaceRequest, pk: int) -> HttpResponse:
    ingest_key = ingest_keys.ingest_key_get_for_workspace(workspace=request.workspace, pk=pk)
    ingest_keys.ingest_key_revoke(actor=Actor.from_request(request), ingest_key=ingest_key)
    messages.success(request, f"“{ingest_key.name}” ({ingest_keys.masked(ingest_key)}) revoked. "
                              f"Requests with it are refused from now on.")
    if request.htmx:
        return _api_keys_page(request)
    return redirect("integrations:api_keys", slug=ingest_key.workspace.slug)


@workspace_view()
@require_GET
def rejected_events(request: WorkspaceRequest) -> HttpResponse:
    """Events the ingest API refused, with reasons: the workspace's schema violations."""
    events = rejected_events_for_workspace(workspace=request.workspace)
    page = Paginator(events, REJECTED_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "integrations/rejected_events.html", {"page": page, "nav": "rejected"})


def _api_keys_page(request: WorkspaceRequest, *, form: IngestKeyForm | None = None, created: IngestKey | None = None,
                   key: str = "", status: int = 200) -> HttpResponse:
    """The API keys page, or for htmx only its panel. Members get no form."""
    can_manage = request.membership.can_manage
    context = {
        "ingest_keys": ingest_keys.ingest_keys_for_workspace(workspace=request.workspace),
        "form": (form or IngestKeyForm()) if can_manage else None,
        "created": created,
        "created_key": key,
        "site_url": settings.SITE_URL,
        "a_minute_ago": timezone.now() - ingest_keys.LAST_USED_RESOLUTION,
        "nav": "api_keys",
    }
    template = "integrations/_api_keys_panel.html" if request.htmx else "integrations/api_keys.html"
    return render(request, template, context, status=status)


urlpatterns: list[URLPattern] = [
    path("settings/api-keys/", api_keys, name="api_keys"),
    path("settings/rejected-events/", rejected_events, name="rejected_events"),
    path("settings/api-keys/new/", ingest_key_create, name="ingest_key_create"),
    path("settings/api-keys/<int:pk>/revoke/", ingest_key_revoke, name="ingest_key_revoke"),
]
