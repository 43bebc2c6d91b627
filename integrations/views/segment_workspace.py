"""Settings → Integrations → Segment workspace: the Public API token; connecting by picking a
source; a connection's "In Segment" tab (labels, destinations and their delivery metrics,
warehouses, schema settings, daily API calls) and deleting its source in Segment.

Pages never wait on Segment: the slow parts are fragments loaded in place by htmx, each
answered within SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS with Segment's data or words saying
what went wrong and a button to try again.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations.charts import NARROW, usage_chart
from integrations.forms import REGION_HELP, ConnectionForm
from integrations.models import Connection, Region, SegmentSource
from integrations.segment.public_api import Budget, PublicApi, PublicApiError
from integrations.segment_workspace import selectors, services
from integrations.segment_workspace.words import NOT_APPLIED, masked_settings, schema_sentences
from integrations.selectors import connection_get_for_workspace

PARTS = ("match", "labels", "destinations", "warehouses", "schema", "usage")
PART_TITLES = {"match": "This connection's source", "labels": "Labels", "destinations": "Destinations",
               "warehouses": "Warehouses", "schema": "Schema settings", "usage": "API calls this month"}
SOURCES_SHOWN = 200


class TokenForm(forms.Form):
    token = forms.CharField(
        label="Public API token", strip=True, max_length=512,
        help_text="In Segment: Settings → Access Management → Tokens → Create token (Workspace Owner, or Workspace "
                  "Member with Source Admin on the sources to connect). Stored encrypted; never shown again in full.",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "spellcheck": "false"}))
    region = forms.ChoiceField(label="Region", choices=Region.choices, initial=Region.US, widget=forms.RadioSelect,
                               help_text=REGION_HELP)


class LabelForm(forms.Form):
    label = forms.CharField(label="Add a label", max_length=201)


class NewLabelForm(forms.Form):
    key = forms.CharField(label="Key", max_length=100)
    value = forms.CharField(label="Value", max_length=100)


class DeleteSourceForm(forms.Form):
    confirm_name = forms.CharField(label="Type the source's name to confirm", max_length=200, strip=False)


# --- the token ------------------------------------------------------------------------------


@workspace_view()
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("token")
def segment_workspace(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    row = selectors.segment_token_for_workspace(workspace=workspace)
    form = TokenForm(initial={"region": row.region if row else Region.US})
    status = 200
    if request.method == "POST":
        if not request.membership.can_manage:
            return _forbidden(request)
        form = TokenForm(request.POST)
        if form.is_valid():
            try:
                saved, check = services.segment_token_save(actor=Actor.from_request(request), workspace=workspace,
                                                           **form.cleaned_data)
            except ValidationError as error:
                attach_errors(form, error)
            else:
                messages.success(request, f"{check.message} Stored encrypted as {saved.masked_token}.")
                return redirect("integrations:segment_workspace", slug=workspace.slug)
        status = 422
    return render(request, "integrations/segment_workspace/settings.html",
                  {"token": row, "form": form, "nav": "integrations"}, status=status)


@workspace_view(manage=True)
@require_POST
def segment_workspace_remove(request: WorkspaceRequest) -> HttpResponse:
    services.segment_token_remove(actor=Actor.from_request(request), workspace=request.workspace)
    messages.success(request, "Segment token removed from Tributary. Connections keep sending with their write keys.")
    return redirect("integrations:segment_workspace", slug=request.workspace.slug)


def _forbidden(request: WorkspaceRequest) -> HttpResponse:
    raise PermissionDenied("Only owners and admins can manage the Segment workspace.")


# --- connecting by picking a source -----------------------------------------------------------


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def source_pick(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    row = selectors.segment_token_for_workspace(workspace=workspace)
    if row is None:
        return redirect("integrations:connection_create", slug=workspace.slug)
    context: dict[str, Any] = {"token": row, "nav": "integrations", "query": request.GET.get("q", "")[:100]}
    if request.method == "POST":
        source_id = request.POST.get("source_id", "")[:64]
        try:
            connection = services.segment_source_pick(actor=Actor.from_request(request), workspace=workspace,
                                                      source_id=source_id, name=request.POST.get("name", ""))
        except services.NoWriteKey as missing:
            name = request.POST.get("source_name", "")[:80]
            context["no_write_key"] = missing.messages[0]
            context["paste_form"] = ConnectionForm(initial={"name": name, "region": row.region})
            return render(request, "integrations/segment_workspace/pick.html", context, status=422)
        except ValidationError as error:
            context["pick_error"] = " ".join(error.messages)
            return render(request, "integrations/segment_workspace/pick.html", context, status=422)
        messages.success(request, f"“{connection.name}” connected from Segment. Checking its write key now.")
        return redirect("integrations:connection", slug=workspace.slug, pk=connection.pk)
    return render(request, "integrations/segment_workspace/pick.html", context)


@workspace_view(manage=True)
@require_GET
def source_list(request: WorkspaceRequest) -> HttpResponse:
    """The Segment workspace's sources (every page), filtered by `q`: loaded in place."""
    query = request.GET.get("q", "")[:100]
    context: dict[str, Any] = {"query": query}
    try:
        listing, matched = selectors.source_choices(workspace=request.workspace, query=query, limit=SOURCES_SHOWN,
                                                    budget=_budget())
    except PublicApiError as error:
        context["error"] = error
    else:
        context.update(listing=listing, matched=matched)
    return render(request, "integrations/segment_workspace/_source_list.html", context)


# --- the "In Segment" tab -------------------------------------------------------------------


@workspace_view()
@require_GET
def in_segment(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    context = {"connection": connection, "nav": "integrations", "parts": PARTS[1:],
               "token": selectors.segment_token_for_workspace(workspace=request.workspace),
               "link": selectors.source_link_for_connection(connection=connection)}
    return render(request, "integrations/segment_workspace/in_segment.html", context)


@workspace_view()
@require_GET
def in_segment_part(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """One part of the tab, read from Segment within the page budget."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    part = request.GET.get("name", "")
    if part not in PARTS:
        part = "labels"
    context: dict[str, Any] = {"connection": connection, "part": part, "parts": PARTS[1:],
                               "part_title": PART_TITLES[part]}
    try:
        context.update(_read_part(request, connection, part))
    except PublicApiError as error:
        context["error"] = error
    except ValidationError as error:
        context["error"] = PublicApiError("invalid", " ".join(error.messages))
    return render(request, f"integrations/segment_workspace/_part_{part}.html"
                  if "error" not in context else "integrations/segment_workspace/_part_error.html", context)


def _read_part(request: WorkspaceRequest, connection: Connection, part: str) -> dict[str, Any]:
    budget = _budget()
    if part == "match":
        return {"link": services.segment_source_find(connection=connection, budget=budget),
                "token": selectors.segment_token_for_workspace(workspace=request.workspace)}
    link = selectors.source_link_for_connection(connection=connection)
    if link is None or link.deleted_at is not None:
        raise PublicApiError("not_found", "Tributary does not know this connection's Segment source.")
    api = selectors.api_for_workspace(workspace=request.workspace, budget=budget)
    return _PART_READERS[part](request, api, link, connection)


def _labels(request: WorkspaceRequest, api: PublicApi, link: SegmentSource, connection: Connection) -> dict[str, Any]:
    source, available = selectors.labels_part(api=api, source_id=link.source_id)
    return {"source": source, "available": available, "label_form": LabelForm(), "new_label_form": NewLabelForm()}


def _destinations(request: WorkspaceRequest, api: PublicApi, link: SegmentSource,
                  connection: Connection) -> dict[str, Any]:
    rows = selectors.destinations_part(api=api, source_id=link.source_id, now=selectors.utc_now())
    return {"destinations": [(row, masked_settings(row.destination.settings)) for row in rows]}


def _warehouses(request: WorkspaceRequest, api: PublicApi, link: SegmentSource,
                connection: Connection) -> dict[str, Any]:
    warehouses = selectors.warehouses_part(api=api, source_id=link.source_id)
    return {"warehouses": [(w, masked_settings(w.settings)) for w in warehouses]}


def _schema(request: WorkspaceRequest, api: PublicApi, link: SegmentSource, connection: Connection) -> dict[str, Any]:
    return {"topics": schema_sentences(selectors.schema_part(api=api, source_id=link.source_id)),
            "not_applied": NOT_APPLIED}


def _usage(request: WorkspaceRequest, api: PublicApi, link: SegmentSource, connection: Connection) -> dict[str, Any]:
    today = selectors.utc_now().date()
    days = selectors.usage_part(api=api, source_id=link.source_id, connection=connection, today=today)
    # Drawn twice: segment_workspace.css shows the narrow one on a phone, the wide one elsewhere.
    return {"days": days, "chart": usage_chart(days), "phone_chart": usage_chart(days, NARROW)}


_PART_READERS = {"labels": _labels, "destinations": _destinations, "warehouses": _warehouses, "schema": _schema,
                 "usage": _usage}


@workspace_view(manage=True)
@require_POST
def in_segment_labels(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Add an existing label (`label`), or create one (`key`, `value`) and add it."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    actor = Actor.from_request(request)
    creating = "key" in request.POST
    label_form, new_label_form = LabelForm(), NewLabelForm()
    form: forms.Form = NewLabelForm(request.POST) if creating else LabelForm(request.POST)
    if creating:
        new_label_form = form  # type: ignore[assignment]
    else:
        label_form = form  # type: ignore[assignment]
    status = 422
    if form.is_valid():
        try:
            if creating:
                services.segment_label_create(actor=actor, connection=connection, **form.cleaned_data)
            else:
                services.segment_label_add(actor=actor, connection=connection, label=form.cleaned_data["label"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            status = 200
            label_form, new_label_form = LabelForm(), NewLabelForm()
    context: dict[str, Any] = {"connection": connection, "part": "labels", "part_title": PART_TITLES["labels"],
                               "label_form": label_form,
                               "new_label_form": new_label_form, "saved": status == 200}
    try:
        read = _read_part(request, connection, "labels")
    except PublicApiError as error:
        context["error"] = error
        return render(request, "integrations/segment_workspace/_part_error.html", context, status=status)
    context.update(source=read["source"], available=read["available"])
    return render(request, "integrations/segment_workspace/_part_labels.html", context, status=status)


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def in_segment_delete(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The danger zone's confirmation: owners type the source's name; Segment deletes it, and
    the connection is disabled and kept."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    link = selectors.source_link_for_connection(connection=connection)
    link = link if link is not None and link.deleted_at is None else None
    form = DeleteSourceForm(request.POST or None)
    context: dict[str, Any] = {"connection": connection, "link": link, "form": form, "nav": "integrations"}
    if not request.membership.is_owner:
        return _forbidden_owner()
    if request.method == "POST" and link is not None and form.is_valid():
        try:
            status = services.segment_source_delete(actor=Actor.from_request(request), connection=connection,
                                                    confirm_name=form.cleaned_data["confirm_name"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            messages.success(request, f"“{link.name}” deleted in Segment (Segment answered {status}). "
                                      f"“{connection.name}” is disabled and kept with its history.")
            return redirect("integrations:connection", slug=request.workspace.slug, pk=connection.pk)
    return render(request, "integrations/segment_workspace/delete_source.html", context,
                  status=422 if form.errors else 200)


def _forbidden_owner() -> HttpResponse:
    raise PermissionDenied("Only owners can delete a source in Segment.")


def _budget() -> Budget:
    return Budget(float(settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS))


urlpatterns = [
    path("settings/integrations/segment-workspace/", segment_workspace, name="segment_workspace"),
    path("settings/integrations/segment-workspace/remove/", segment_workspace_remove,
         name="segment_workspace_remove"),
    path("settings/integrations/segment/pick/", source_pick, name="segment_source_pick"),
    path("settings/integrations/segment/pick/sources/", source_list, name="segment_source_list"),
    path("settings/integrations/segment/<int:pk>/in-segment/", in_segment, name="in_segment"),
    path("settings/integrations/segment/<int:pk>/in-segment/part/", in_segment_part, name="in_segment_part"),
    path("settings/integrations/segment/<int:pk>/in-segment/labels/", in_segment_labels, name="in_segment_labels"),
    path("settings/integrations/segment/<int:pk>/in-segment/delete/", in_segment_delete, name="in_segment_delete"),
]
