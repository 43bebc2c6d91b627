"""Settings → Integrations: Segment connections of the workspace.

Owners and admins connect, rename, replace keys, enable, disable, delete and run checks;
members see status only. Check results arrive in place: the status panel polls while a
check runs.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations import ingest_keys, services
from integrations.forms import ConnectionForm, IngestKeyForm, RenameForm, ReplaceKeyForm
from integrations.models import Connection, IngestKey
from integrations.selectors import (
    connection_get_for_workspace,
    connections_for_workspace,
    rejected_events_for_workspace,
    verifications_for_connection,
)
from integrations.views.deliveries import chart_context, deliveries_context

REJECTED_PAGE_SIZE = 50


@workspace_view()
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    connections = connections_for_workspace(workspace=request.workspace)  # type: ignore[attr-defined]
    template = "integrations/_connection_rows.html" if request.htmx else "integrations/index.html"  # type: ignore[attr-defined]
    return render(request, template, {"connections": connections, "nav": "integrations"})


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("write_key")
def connection_create(request: HttpRequest) -> HttpResponse:
    workspace = request.workspace  # type: ignore[attr-defined]
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            connection = services.connection_create(actor=Actor.from_request(request), workspace=workspace,
                                                    **form.cleaned_data)
        except ValidationError as error:
            attach_errors(form, error)
        else:
            messages.success(request, f"“{connection.name}” connected. Checking the key with Segment now…")
            return redirect("integrations:connection", slug=workspace.slug, pk=connection.pk)
    status = 422 if form.errors else 200
    return render(request, "integrations/connection_form.html", {"form": form, "nav": "integrations"},
                  status=status)


@workspace_view()
@require_GET
def connection_detail(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    return render(request, "integrations/connection_detail.html", _page_context(request, connection))


@workspace_view()
@require_GET
def connection_status(request: HttpRequest, pk: int) -> HttpResponse:
    """The status panel alone: htmx polls it while a check runs."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    return render(request, "integrations/_status_panel.html", _detail_context(request, connection))


@workspace_view(manage=True)
@require_POST
def connection_check(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    try:
        services.verification_request(actor=Actor.from_request(request), connection=connection, trigger="manual")
    except services.ChecksThrottled as throttled:
        messages.error(request, str(throttled))
    return _panel_or_redirect(request, connection)


@workspace_view(manage=True)
@require_POST
def connection_rename(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            services.connection_rename(actor=Actor.from_request(request), connection=connection,
                                       name=form.cleaned_data["name"])
            messages.success(request, f"Renamed to “{connection.name}”.")
            return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)
        except ValidationError as error:
            attach_errors(form, error)
    connection.refresh_from_db()
    return render(request, "integrations/connection_detail.html",
                  _page_context(request, connection, rename_form=form), status=422)


@workspace_view(manage=True)
@require_POST
@sensitive_post_parameters("write_key")
def connection_replace_key(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    form = ReplaceKeyForm(request.POST)
    if form.is_valid():
        try:
            services.connection_replace_key(actor=Actor.from_request(request), connection=connection,
                                            **form.cleaned_data)
            messages.success(request, f"Write key replaced; now {connection.masked_key}. Checking it with Segment…")
            return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)
        except ValidationError as error:
            attach_errors(form, error)
    connection.refresh_from_db()
    return render(request, "integrations/connection_detail.html",
                  _page_context(request, connection, key_form=form), status=422)


@workspace_view(manage=True)
@require_POST
def connection_enabled(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    enabled = request.POST.get("enabled") == "true"
    services.connection_set_enabled(actor=Actor.from_request(request), connection=connection, enabled=enabled)
    messages.success(request, f"“{connection.name}” {'enabled' if enabled else 'disabled'}.")
    return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def connection_delete(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    if request.method == "POST":
        name = connection.name
        services.connection_delete(actor=Actor.from_request(request), connection=connection)
        messages.success(request, f"“{name}” deleted. Its write key is gone from Tributary.")
        return redirect("integrations:index", slug=request.workspace.slug)  # type: ignore[attr-defined]
    return render(request, "integrations/connection_delete.html", {"connection": connection, "nav": "integrations"})


@workspace_view()
@require_GET
def api_keys(request: HttpRequest) -> HttpResponse:
    return _api_keys_page(request)


@workspace_view(manage=True)
@require_POST
@never_cache
@sensitive_variables()
def ingest_key_create(request: HttpRequest) -> HttpResponse:
    """The new key is in this response only: never in a redirect, the session or a message.

    The page is rendered inside the transaction: if it cannot be shown, the key never existed.
    """
    form = IngestKeyForm(request.POST)
    if form.is_valid():
        try:
            with transaction.atomic():
                ingest_key, key = ingest_keys.ingest_key_create(
                    actor=Actor.from_request(request), workspace=request.workspace,  # type: ignore[attr-defined]
                    name=form.cleaned_data["name"])
                return _api_keys_page(request, form=IngestKeyForm(), created=ingest_key, key=key)
        except ValidationError as error:
            attach_errors(form, error)
    return _api_keys_page(request, form=form, status=422)


@workspace_view(manage=True)
@require_POST
def ingest_key_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    ingest_key = ingest_keys.ingest_key_get_for_workspace(workspace=request.workspace, pk=pk)  # type: ignore[attr-defined]
    ingest_keys.ingest_key_revoke(actor=Actor.from_request(request), ingest_key=ingest_key)
    messages.success(request, f"“{ingest_key.name}” ({ingest_keys.masked(ingest_key)}) revoked. "
                              f"Requests with it are refused from now on.")
    if request.htmx:  # type: ignore[attr-defined]
        return _api_keys_page(request)
    return redirect("integrations:api_keys", slug=ingest_key.workspace.slug)


@workspace_view()
@require_GET
def rejected_events(request: HttpRequest) -> HttpResponse:
    """Events the ingest API refused, with reasons: the workspace's schema violations."""
    events = rejected_events_for_workspace(workspace=request.workspace)  # type: ignore[attr-defined]
    page = Paginator(events, REJECTED_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "integrations/rejected_events.html", {"page": page, "nav": "rejected"})


def _detail_context(request: HttpRequest, connection: Connection, **forms: Any) -> dict[str, Any]:
    can_manage = request.membership.can_manage  # type: ignore[attr-defined]
    context: dict[str, Any] = {
        "connection": connection,
        "verification": connection.latest_verification,
        "history": verifications_for_connection(connection=connection),
        "nav": "integrations",
    }
    if can_manage:
        context["rename_form"] = forms.get("rename_form") or RenameForm(initial={"name": connection.name})
        context["key_form"] = forms.get("key_form") or ReplaceKeyForm(initial={"region": connection.region})
    return context


def _page_context(request: HttpRequest, connection: Connection, **forms: Any) -> dict[str, Any]:
    """The whole connection page: deliveries first, then the check panel and the forms."""
    return {**_detail_context(request, connection, **forms), **deliveries_context(request, connection),
            **chart_context(connection)}


def _api_keys_page(request: HttpRequest, *, form: IngestKeyForm | None = None, created: IngestKey | None = None,
                   key: str = "", status: int = 200) -> HttpResponse:
    """The API keys page, or for htmx only its panel. Members get no form."""
    can_manage = request.membership.can_manage  # type: ignore[attr-defined]
    context = {
        "ingest_keys": ingest_keys.ingest_keys_for_workspace(workspace=request.workspace),  # type: ignore[attr-defined]
        "form": (form or IngestKeyForm()) if can_manage else None,
        "created": created,
        "created_key": key,
        "site_url": settings.SITE_URL,
        "a_minute_ago": timezone.now() - ingest_keys.LAST_USED_RESOLUTION,
        "nav": "api_keys",
    }
    template = "integrations/_api_keys_panel.html" if request.htmx else "integrations/api_keys.html"  # type: ignore[attr-defined]
    return render(request, template, context, status=status)


def _panel_or_redirect(request: HttpRequest, connection: Connection) -> HttpResponse:
    if request.htmx:  # type: ignore[attr-defined]
        connection.refresh_from_db()
        return render(request, "integrations/_status_panel.html", _detail_context(request, connection))
    return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)
