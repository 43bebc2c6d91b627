"""Settings → Integrations: the workspace's Segment connections, each with its tabs.

Owners and admins connect, rename, replace keys, change regions, enable, disable, delete and
run checks; members see status only. A connection's page has tabs, each its own URL (Overview,
Deliveries, Attempts, Dead letters, Checks, Settings), under one top that tells its health
(integrations.selectors.health.connection_health) and polls itself: every second while a check
runs, so the verdict replaces "Checking…" in place, every 5 seconds otherwise.
"""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations import services
from integrations.forms import ConnectionForm, RegionForm, RenameForm, ReplaceKeyForm
from integrations.models import Connection, Outcome
from integrations.selectors import connection_get_for_workspace, verifications_for_connection
from integrations.selectors import health as health_selectors
from integrations.selectors.overview import connection_overview

# The Settings tab has two region choices (the region alone, and with a new key): their ids differ.
REGION_IDS = "id_move_%s"
TABS = ("overview", "deliveries", "attempts", "dead_letters", "checks", "settings")


@workspace_view()
@require_GET
def index(request: WorkspaceRequest) -> HttpResponse:
    rows = health_selectors.workspace_connections_health(
        workspace=request.workspace, can_manage=request.membership.can_manage)
    template = "integrations/_connection_rows.html" if request.htmx else "integrations/index.html"
    return render(request, template, {"rows": rows, "connections": [c for c, _ in rows], "nav": "integrations"})


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
@sensitive_post_parameters("write_key")
def connection_create(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    # With a Segment token, connecting starts by picking a source; pasting stays one link away.
    if request.method == "GET" and "paste" not in request.GET and hasattr(workspace, "segment_token"):
        return redirect("integrations:segment_source_pick", slug=workspace.slug)
    form = ConnectionForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            connection = services.connection_create(actor=Actor.from_request(request), workspace=workspace,
                                                    **form.cleaned_data)
        except ValidationError as error:
            attach_errors(form, error)
        else:
            # What the check finds is told by the page's top, in place; this only says what was done.
            messages.success(request, f"“{connection.name}” connected.")
            return redirect("integrations:connection", slug=workspace.slug, pk=connection.pk)
    status = 422 if form.errors else 200
    return render(request, "integrations/connection_form.html", {"form": form, "nav": "integrations"},
                  status=status)


@workspace_view()
@require_GET
def connection_detail(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The Overview tab: health and its next step, backlog, latency, the last verdict."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    return render(request, "integrations/connection_detail.html", _overview_context(request, connection))


@workspace_view()
@require_GET
def connection_state(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The top's health box alone, polled; on the Overview tab with the overview's body too."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    tab = request.GET.get("tab", "")
    tab = tab if tab in TABS else ""
    if tab == "overview":
        context = _overview_context(request, connection)
    else:
        context = {"connection": connection, "health": _health(request, connection)}
    response = render(request, "integrations/_connection_state_response.html", {**context, "tab": tab})
    # The box's URL carries what it showed (`was`); when that changed, the banner asks at once.
    now_showing = health_token(context["health"])
    if request.GET.get("was", now_showing) != now_showing:
        response["HX-Trigger"] = HEALTH_CHANGED
    return response


HEALTH_CHANGED = "health-changed"


def health_token(health: health_selectors.ConnectionHealth) -> str:
    """What the banner depends on: the state, and whether it belongs in the banner."""
    return f"{health.state}{'-alert' if health.alert else ''}"


@workspace_view()
@require_GET
def connection_checks(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The Checks tab: the latest check's result (run again from here) and the history."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    return render(request, "integrations/connection_checks.html", _detail_context(request, connection))


@workspace_view()
@require_GET
def connection_settings(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The Settings tab: rename, region, replace key, enable or disable, delete."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    return render(request, "integrations/connection_settings.html", _settings_context(request, connection))


@workspace_view()
@require_GET
def connection_status(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The check panel alone: htmx polls it while a check runs; the top follows out of band."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    context = _detail_context(request, connection)
    response = render(request, "integrations/_status_panel.html", context)
    if not context["health"].checking:  # the verdict landed: the top (out of band) and the banner change now
        response["HX-Trigger"] = HEALTH_CHANGED
    return response


@workspace_view(manage=True)
@require_POST
def connection_check(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    try:
        services.verification_request(actor=Actor.from_request(request), connection=connection, trigger="manual")
    except services.ChecksThrottled as throttled:
        messages.error(request, str(throttled))
    return _panel_or_redirect(request, connection)


@workspace_view(manage=True)
@require_POST
def connection_retry(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Bring a Retrying connection's next try forward (the health box's "Retry now"); answers
    htmx with the box, now saying the try is due, and anything else with the page."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    retried = services.connection_retry_now(actor=Actor.from_request(request), connection=connection)
    if request.htmx:
        tab = request.POST.get("tab", "")
        return render(request, "integrations/_connection_state.html",
                      {"connection": connection, "health": _health(request, connection),
                       "tab": tab if tab in TABS else ""})
    if retried:
        messages.success(request, f"Trying “{connection.name}” again now.")
    else:
        messages.info(request, f"Nothing to bring forward: “{connection.name}” is not waiting to retry.")
    return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)


@workspace_view(manage=True)
@require_POST
def connection_rename(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = RenameForm(request.POST)
    if form.is_valid():
        try:
            services.connection_rename(actor=Actor.from_request(request), connection=connection,
                                       name=form.cleaned_data["name"])
            messages.success(request, f"Renamed to “{connection.name}”.")
            return redirect("integrations:connection_settings", slug=connection.workspace.slug, pk=connection.pk)
        except ValidationError as error:
            attach_errors(form, error)
    connection.refresh_from_db()
    return render(request, "integrations/connection_settings.html",
                  _settings_context(request, connection, rename_form=form), status=422)


@workspace_view(manage=True)
@require_POST
@sensitive_post_parameters("write_key")
def connection_replace_key(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = ReplaceKeyForm(request.POST)
    if form.is_valid():
        try:
            services.connection_replace_key(actor=Actor.from_request(request), connection=connection,
                                            **form.cleaned_data)
            messages.success(request, f"Write key replaced; now {connection.masked_key}.")
            return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)
        except ValidationError as error:
            attach_errors(form, error)
    connection.refresh_from_db()
    return render(request, "integrations/connection_settings.html",
                  _settings_context(request, connection, key_form=form), status=422)


@workspace_view(manage=True)
@require_POST
def connection_region(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Check the stored key in the other region: no need to paste it again."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = RegionForm(request.POST, auto_id=REGION_IDS)
    if form.is_valid():
        previous = connection.get_region_display()
        try:
            services.connection_change_region(actor=Actor.from_request(request), connection=connection,
                                              region=form.cleaned_data["region"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            if connection.get_region_display() != previous:
                messages.success(request, f"Region changed from {previous} to {connection.get_region_display()}.")
            return redirect("integrations:connection", slug=connection.workspace.slug, pk=connection.pk)
    connection.refresh_from_db()
    return render(request, "integrations/connection_settings.html",
                  _settings_context(request, connection, region_form=form), status=422)


@workspace_view(manage=True)
@require_POST
def connection_enabled(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    enabled = request.POST.get("enabled") == "true"
    services.connection_set_enabled(actor=Actor.from_request(request), connection=connection, enabled=enabled)
    messages.success(request, f"“{connection.name}” {'enabled' if enabled else 'disabled'}.")
    return redirect("integrations:connection_settings", slug=connection.workspace.slug, pk=connection.pk)


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def connection_delete(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    if request.method == "POST":
        name = connection.name
        services.connection_delete(actor=Actor.from_request(request), connection=connection)
        messages.success(request, f"“{name}” deleted. Its write key is gone from Tributary.")
        return redirect("integrations:index", slug=request.workspace.slug)
    return render(request, "integrations/connection_delete.html",
                  {"connection": connection, "health": _health(request, connection), "nav": "integrations"})


@workspace_view()
@require_GET
def attention(request: WorkspaceRequest) -> HttpResponse:
    """The workspace's "needs attention" banner alone: every page polls it, so it leaves after a
    fix and appears for a newly failing connection without a reload."""
    workspace = request.workspace
    return render(request, "integrations/_deliveries_banner.html",
                  {"attention": health_selectors.workspace_attention(workspace=workspace), "workspace": workspace})


def _health(request: WorkspaceRequest, connection: Connection) -> health_selectors.ConnectionHealth:
    return health_selectors.connection_state(connection=connection, can_manage=request.membership.can_manage)


def _overview_context(request: WorkspaceRequest, connection: Connection) -> dict[str, Any]:
    overview = connection_overview(connection=connection, can_manage=request.membership.can_manage)
    run = connection.latest_verification
    if run is not None and run.is_running:  # the verdict shown is the last one known
        run = connection.verifications.exclude(outcome=Outcome.RUNNING).select_related("requested_by").first()
    return {"connection": connection, "overview": overview, "health": overview.health, "verdict": run,
            "nav": "integrations"}


def _detail_context(request: WorkspaceRequest, connection: Connection) -> dict[str, Any]:
    return {
        "connection": connection,
        "verification": connection.latest_verification,
        "history": verifications_for_connection(connection=connection),
        "health": _health(request, connection),
        "nav": "integrations",
    }


def _settings_context(request: WorkspaceRequest, connection: Connection, **forms: Any) -> dict[str, Any]:
    context: dict[str, Any] = {"connection": connection, "health": _health(request, connection),
                               "nav": "integrations"}
    if request.membership.can_manage:
        context["rename_form"] = forms.get("rename_form") or RenameForm(initial={"name": connection.name})
        context["key_form"] = forms.get("key_form") or ReplaceKeyForm(initial={"region": connection.region})
        context["region_form"] = forms.get("region_form") or RegionForm(initial={"region": connection.region},
                                                                    auto_id=REGION_IDS)
    return context


def _panel_or_redirect(request: WorkspaceRequest, connection: Connection) -> HttpResponse:
    if request.htmx:
        connection.refresh_from_db()
        return render(request, "integrations/_status_panel.html", _detail_context(request, connection))
    return redirect("integrations:connection_checks", slug=connection.workspace.slug, pk=connection.pk)
