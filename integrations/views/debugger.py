"""The event debugger: the workspace's latest events as they arrive, and what each connection sent.

The list polls every 2 s for events newer than its top row and prepends them (paused and
resumed in the browser); opening an event loads its payload as received and, per connection,
Received → Sent → Segment replied. Search by event name or user id among the latest events,
or by messageId in the whole log.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, path
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET

from accounts.http import WorkspaceRequest, id_from, ids_from
from accounts.permissions import workspace_view
from integrations.models import Event
from integrations.selectors import connections_for_workspace
from integrations.selectors import debugger as selectors
from integrations.selectors.debugger import SEARCH_FIELDS, SEARCH_WINDOW, RejectedRow, Search


class SearchForm(forms.Form):
    field = forms.ChoiceField(label="Search by", choices=list(SEARCH_FIELDS.items()), required=False)
    q = forms.CharField(label="Search for", required=False, max_length=200, strip=True,
                        widget=forms.TextInput(attrs={"type": "search", "autocomplete": "off",
                                                      "placeholder": "Order Completed, user-42, or a messageId"}))

    def search(self) -> Search:
        if not self.is_valid():
            return Search()
        return Search(field=self.cleaned_data["field"] or "name", text=self.cleaned_data["q"])


@workspace_view()
@require_GET
def debugger(request: WorkspaceRequest) -> HttpResponse:
    workspace = request.workspace
    form = SearchForm(request.GET or None)
    search = form.search()
    events = selectors.events_latest(workspace=workspace, search=search)
    rejected: list[RejectedRow] = []
    if not search.active:  # refused events have no name, user id or seq to search by
        since = events[-1].received_at if len(events) == selectors.PAGE_SIZE else None
        rejected = selectors.rejected_since(workspace=workspace, since=since)
    context = {
        "form": form, "search": search, "window": SEARCH_WINDOW, "field_label": SEARCH_FIELDS.get(search.field, ""),
        "has_events": bool(events) or selectors.log_end(workspace=workspace) > 0,
        "rejected_after": _cursor_text(rejected[0].received_at if rejected
                                       else selectors.rejected_cursor(workspace=workspace)),
        "site_url": settings.SITE_URL, "nav": "debugger", **_rows(workspace, events, rejected),
    }
    template = "integrations/_debugger_list.html" if request.htmx else "integrations/debugger.html"
    return render(request, template, context, status=422 if form.errors else 200)


@workspace_view()
@require_GET
def debugger_events(request: WorkspaceRequest) -> HttpResponse:
    """Rows newer than `after`, to prepend; 204 (nothing to swap) when none arrived."""
    workspace = request.workspace
    search = SearchForm(request.GET).search()
    after = id_from(request.GET.get("after"))
    arrivals = selectors.events_after(workspace=workspace, after=after, search=search)
    try:
        rejected_after = parse_datetime(request.GET.get("rejected_after") or "")
    except ValueError:  # well formed, but no such time (month 13): as if none was sent
        rejected_after = None
    rejected: list[RejectedRow] = []
    if not search.active and rejected_after is not None:
        rejected = selectors.rejected_since(workspace=workspace, after=rejected_after)
    if not arrivals.events and not rejected:
        return HttpResponse(status=204)
    context = {"skipped": arrivals.skipped, "fresh": True, **_rows(workspace, arrivals.events, rejected),
               "rejected_after": _cursor_text(rejected[0].received_at) if rejected else ""}
    return render(request, "integrations/_debugger_rows.html", context)


@workspace_view()
@require_GET
def debugger_statuses(request: WorkspaceRequest) -> HttpResponse:
    """The chips of the rows on screen (`seq`, repeated), each swapped into its row out of
    band: polled every 2 s while the list is live, so a row moves from Sending to Delivered
    without a reload. 204 when no row is asked about."""
    workspace = request.workspace
    wanted = ids_from(request.GET.getlist("seq")[:selectors.REFRESH_ROWS])
    events = selectors.events_by_seq(workspace=workspace, seqs=wanted)
    if not events:
        return HttpResponse(status=204)
    statuses = selectors.row_statuses(events=events, connections=selectors.status_connections(workspace=workspace))
    return render(request, "integrations/_debugger_statuses.html",
                  {"rows": [(event, statuses[event.seq]) for event in events]})


@workspace_view()
@require_GET
def debugger_event(request: WorkspaceRequest) -> HttpResponse:
    """One event opened: as received, and its trail per connection."""
    workspace = request.workspace
    seq = id_from(request.GET.get("seq"))
    event = selectors.event_get_for_workspace(workspace=workspace, seq=seq)
    # Like the rows' chips, only the enabled sources: a disabled one sends nothing.
    connections = list(connections_for_workspace(workspace=workspace).filter(enabled=True))
    return render(request, "integrations/_debugger_event.html", {
        "event": event,
        "received": selectors.pretty(selectors.payload_as_received(event)),
        "via_webhook": selectors.via_webhook(event),
        "trails": selectors.event_trails(event=event, connections=connections),
        "more_connections": max(0, len(connections) - selectors.TRAIL_CONNECTIONS),
        "max_age_hours": settings.RELAY_MAX_EVENT_AGE_HOURS,
    })


def _rows(workspace: Any, events: list[Event], rejected: list[RejectedRow]) -> dict[str, Any]:
    """The rows, newest first, each with its chips (a refused event has none)."""
    connections = selectors.status_connections(workspace=workspace)
    statuses = selectors.row_statuses(events=events, connections=connections)
    rows = [(row, statuses[row.seq] if isinstance(row, Event) else None)
            for row in selectors.merged(events, rejected)]
    return {"rows": rows, "connection_count": len(connections)}


def _cursor_text(moment: datetime | None) -> str:
    """The newest refused event's time, which the poll sends back as `rejected_after`; with
    none yet, a time before any, so the first one to come is shown."""
    return (moment or datetime(2000, 1, 1, tzinfo=UTC)).isoformat()


urlpatterns: list[URLPattern] = [
    path("debugger/", debugger, name="debugger"),
    path("debugger/events/", debugger_events, name="debugger_events"),
    path("debugger/event/", debugger_event, name="debugger_event"),
    path("debugger/statuses/", debugger_statuses, name="debugger_statuses"),
]
