"""A connection's Filters tab: its destination filters, in a sentence and in FQL, with the
events they held back in the last 24 hours; owners and admins add, change, preview, enable,
disable and delete them (each change audited). Members see them only.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_http_methods, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations.filters import selectors, services
from integrations.filters.forms import FIELD_SUGGESTIONS, FilterForm, initial_for
from integrations.filters.preview import PREVIEW_EVENTS, filter_preview
from integrations.filters.sentence import filter_sentence
from integrations.models import Connection, DestinationFilter
from integrations.selectors import connection_get_for_workspace

# The service's field names → the form's.
FORM_FIELDS = {"condition": "fql", "fields": "fields_text"}


@workspace_view()
@require_http_methods(["GET", "POST"])
def connection_filters(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The tab, with the form for a new filter; POST saves one (owners and admins)."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = FilterForm()
    if request.method == "POST":
        _require_manage(request)
        form = FilterForm(request.POST)
        saved = _save(request, connection, form)
        if saved is not None:
            messages.success(request, f"Filter '{saved.title}' saved: it applies to every event not yet sent.")
            return redirect("integrations:connection_filters", slug=request.workspace.slug, pk=connection.pk)
    return _page(request, connection, form, status=400 if form.errors else 200)


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def filter_edit(request: WorkspaceRequest, pk: int, filter_pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    row = selectors.filter_get_for_connection(connection=connection, pk=filter_pk)
    form = FilterForm(initial=initial_for(row))
    if request.method == "POST":
        form = FilterForm(request.POST)
        saved = _save(request, connection, form, existing=row)
        if saved is not None:
            messages.success(request, f"Filter '{saved.title}' changed: it applies to every event not yet sent.")
            return redirect("integrations:connection_filters", slug=request.workspace.slug, pk=connection.pk)
    return _page(request, connection, form, editing=row, status=400 if form.errors else 200)


@workspace_view(manage=True)
@require_POST
def filter_preview_view(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """What the filter being written would do to the latest events (a fragment for htmx)."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = FilterForm(request.POST)
    context: dict[str, Any] = {"connection": connection}
    if form.is_valid():
        try:
            spec = services.filter_validate(**_values(form))
        except ValidationError as error:
            context["errors"] = [message for messages_ in error.message_dict.values() for message in messages_]
        else:
            context["preview"] = filter_preview(workspace=request.workspace, spec=spec)
    else:
        context["errors"] = [error for errors in form.errors.values() for error in errors]
    return render(request, "integrations/filters/_preview.html", context)


@workspace_view(manage=True)
@require_POST
def filter_enabled(request: WorkspaceRequest, pk: int, filter_pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    row = selectors.filter_get_for_connection(connection=connection, pk=filter_pk)
    enabled = request.POST.get("enabled") == "1"
    services.filter_set_enabled(actor=Actor.from_request(request), connection=connection, row=row, enabled=enabled)
    messages.success(request, f"Filter '{row.title}' {'enabled' if enabled else 'disabled'}.")
    return redirect("integrations:connection_filters", slug=request.workspace.slug, pk=connection.pk)


@workspace_view(manage=True)
@require_POST
def filter_delete(request: WorkspaceRequest, pk: int, filter_pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    row = selectors.filter_get_for_connection(connection=connection, pk=filter_pk)
    services.filter_delete(actor=Actor.from_request(request), connection=connection, row=row)
    messages.success(request, f"Filter '{row.title}' deleted.")
    return redirect("integrations:connection_filters", slug=request.workspace.slug, pk=connection.pk)


def _require_manage(request: WorkspaceRequest) -> None:
    if not request.membership.can_manage:
        raise PermissionDenied("Only owners and admins can change filters.")


def _values(form: FilterForm) -> dict[str, Any]:
    data = form.cleaned_data
    return {"title": data["title"], "condition": data["condition"], "action": data["action"],
            "percent": data["percent_share"], "sample_path": data.get("sample_path") or "",
            "fields": data["fields"]}


def _save(request: WorkspaceRequest, connection: Connection, form: FilterForm,
          existing: DestinationFilter | None = None) -> DestinationFilter | None:
    if not form.is_valid():
        return None
    try:
        return services.filter_save(actor=Actor.from_request(request), connection=connection, existing=existing,
                                    **_values(form))
    except ValidationError as error:
        renamed = {FORM_FIELDS.get(field, field): errors for field, errors in error.message_dict.items()}
        attach_errors(form, ValidationError(renamed))
        return None


def _page(request: WorkspaceRequest, connection: Connection, form: FilterForm, *,
          editing: DestinationFilter | None = None, status: int = 200) -> HttpResponse:
    rows = [(row, filter_sentence(action=row.action, percent=row.percent, sample_path=row.sample_path,
                                  fields=row.fields or {}))
            for row in selectors.filters_for_connection(connection=connection)]
    return render(request, "integrations/filters/connection_filters.html", {
        "connection": connection, "filters": rows,
        "filtered_24h": selectors.filtered_last_24h(connection=connection), "form": form, "editing": editing,
        "suggestions": FIELD_SUGGESTIONS, "preview_events": f"{PREVIEW_EVENTS:,}", "nav": "integrations",
    }, status=status)


urlpatterns = [
    path("settings/integrations/segment/<int:pk>/filters/", connection_filters, name="connection_filters"),
    path("settings/integrations/segment/<int:pk>/filters/preview/", filter_preview_view, name="filter_preview"),
    path("settings/integrations/segment/<int:pk>/filters/<int:filter_pk>/", filter_edit, name="filter_edit"),
    path("settings/integrations/segment/<int:pk>/filters/<int:filter_pk>/enabled/", filter_enabled,
         name="filter_enabled"),
    path("settings/integrations/segment/<int:pk>/filters/<int:filter_pk>/delete/", filter_delete,
         name="filter_delete"),
]
