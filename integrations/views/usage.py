"""A connection's Deliveries and Attempts tabs: the figures, the chart and the attempt log.

Members see everything here (nothing in it is secret: no key, only Segment's answers);
what they can do next is said differently from owners and admins.
"""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils import timezone
from django.views.decorators.http import require_GET

from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from integrations import charts
from integrations.models import AttemptOutcome, Connection
from integrations.selectors import connection_get_for_workspace
from integrations.selectors.overview import connection_overview
from integrations.selectors.usage import attempts_page, connection_daily_usage


class AttemptFilterForm(forms.Form):
    outcome = forms.ChoiceField(label="Outcome", required=False,
                                choices=[("", "All outcomes"), *AttemptOutcome.choices],
                                error_messages={"invalid_choice": "Choose one of the listed outcomes; “%(value)s” "
                                                                  "is not one. Showing every outcome."})
    before = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)
    after = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


def deliveries_context(request: WorkspaceRequest, connection: Connection) -> dict[str, Any]:
    """What the Deliveries tab and its polled panel need; the top shows the same health."""
    overview = connection_overview(connection=connection, can_manage=request.membership.can_manage)
    return {"connection": connection, "overview": overview, "health": overview.health, "nav": "integrations"}


def chart_context(connection: Connection) -> dict[str, Any]:
    today = timezone.now().date()
    usage = connection_daily_usage(connection=connection, today=today)
    return {"usage": usage, "charts": [
        charts.bar_chart(usage, key="delivered", title="Events delivered", unit="events", today=today),
        charts.bar_chart(usage, key="api_calls", title="API calls", unit="calls", today=today),
    ]}


@workspace_view()
@require_GET
def connection_deliveries(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The Deliveries tab; for htmx the figures panel alone, which the tab polls every 5 s."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    if request.htmx:
        return render(request, "integrations/_deliveries_panel.html", deliveries_context(request, connection))
    return render(request, "integrations/connection_deliveries.html",
                  {**deliveries_context(request, connection), **chart_context(connection)})


@workspace_view()
@require_GET
def connection_attempts(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Every request made to Segment for this connection, newest first, filtered by outcome."""
    connection = connection_get_for_workspace(workspace=request.workspace, pk=pk)
    form = AttemptFilterForm(request.GET)
    form.is_valid()
    cleaned = form.cleaned_data
    outcome = cleaned.get("outcome") or None
    page = attempts_page(connection=connection, outcome=outcome, before=cleaned.get("before"),
                         after=cleaned.get("after"))
    query = f"outcome={outcome}&" if outcome else ""
    context = {"connection": connection, "form": form, "page": page, "outcome": outcome, "query": query,
               "outcome_label": AttemptOutcome(outcome).label if outcome else "",
               "first_page": not (cleaned.get("before") or cleaned.get("after")), "nav": "integrations"}
    template = "integrations/_deliveries_attempts.html" if request.htmx else "integrations/attempts.html"
    return render(request, template, context, status=422 if form.errors else 200)


urlpatterns: list[URLPattern] = [
    path("settings/integrations/segment/<int:pk>/deliveries/", connection_deliveries, name="connection_deliveries"),
    path("settings/integrations/segment/<int:pk>/attempts/", connection_attempts, name="connection_attempts"),
]
