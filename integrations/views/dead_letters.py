"""Dead letters of a connection: each with its reason; replay a selection or a filter, or discard.

Everyone in the workspace sees the list, filters it, opens bodies and sees the latest
replays; owners and admins replay and discard. Both go through a confirmation that names the
count (the dry run), and everything that changes arrives in place: the panel above the list
shows the confirmation, then the replay's progress (polling while it runs), then its result,
and the list and the replay history reload. Looking at the replays first marks one whose
worker stopped as failed (`replays_fail_stale`), so the page never shows one stuck for ever.
"""
from __future__ import annotations

from typing import Any

import orjson
from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest, id_from, ids_from
from accounts.permissions import workspace_view
from integrations.dead_letters import services
from integrations.dead_letters.selection import (
    Replay,
    Selection,
    dead_letter_get_for_connection,
    dead_letters_for_connection,
    replay_blocker,
    replay_for_panel,
    replay_get_for_connection,
    replays_for_connection,
)
from integrations.dead_letters.services import Plan, ReplayRefused
from integrations.models import Connection
from integrations.segment import protocol
from integrations.segment.protocol import TYPES
from integrations.selectors import connection_get_for_workspace
from integrations.selectors.health import connection_state

PAGE_SIZE = 50
CHANGED = "dead-letters-changed"  # htmx event: the list reloads itself on it
TIME_INPUT = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"}, format="%Y-%m-%dT%H:%M:%S")


class DeadLetterFilterForm(forms.Form):
    since = forms.DateTimeField(label="From (UTC)", required=False, widget=TIME_INPUT)
    until = forms.DateTimeField(label="To (UTC)", required=False, widget=TIME_INPUT)
    name = forms.CharField(label="Event name", required=False, max_length=200,
                           widget=forms.TextInput(attrs={"placeholder": "Any name", "autocomplete": "off"}))
    type = forms.ChoiceField(label="Type", required=False, choices=[("", "Any type")] + [(t, t) for t in TYPES])
    reason = forms.ChoiceField(label="Reason", required=False, choices=[
        ("", "Any reason"), ("rejected", "Rejected by Segment"), ("expired", "Expired")])
    replayed = forms.ChoiceField(label="Replays", required=False, choices=[
        ("", "Replayed or not"), ("no", "Not accepted on replay"), ("yes", "Accepted on replay")])

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "“To” must be after “From”: swap the two times.")
        return cleaned

    def selection(self) -> Selection:
        data = self.cleaned_data if self.is_valid() else {}
        return Selection(since=data.get("since"), until=data.get("until"), name=(data.get("name") or "").strip(),
                         type=data.get("type") or "", reason=data.get("reason") or "",
                         replayed=data.get("replayed") or "")


def _picked(data: QueryDict) -> tuple[int, ...]:
    return tuple(ids_from(data.getlist("ids")))


def _selection(data: QueryDict) -> Selection:
    """The dead letters ticked (when the request comes from the ticks: `picked`), else the
    filter. Raises ValidationError saying what to fix; never widens an empty pick to all."""
    if "picked" in data:
        picked = _picked(data)
        if not picked:
            raise ValidationError("Tick the dead letters to replay or discard first.")
        return Selection(ids=picked)
    form = DeadLetterFilterForm(data)
    if not form.is_valid():
        raise ValidationError("Fix the filter first: " + _form_errors(form))
    return form.selection()


def _filter_query(data: QueryDict) -> str:
    query = data.copy()
    for key in ("page", "ids", "action"):
        query.pop(key, None)
    return query.urlencode()


@workspace_view()
@require_GET
def dead_letters(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = _connection(request, pk)
    form = DeadLetterFilterForm(request.GET or None)
    selection = form.selection()
    page = Paginator(dead_letters_for_connection(connection=connection, selection=selection),
                     PAGE_SIZE).get_page(request.GET.get("page"))
    context: dict[str, Any] = {
        "connection": connection, "form": form, "page": page, "filtered": selection.is_filtered,
        "query": _filter_query(request.GET), "nav": "integrations",
        "health": connection_state(connection=connection, can_manage=request.membership.can_manage),
    }
    status = 422 if form.errors else 200
    if request.htmx:
        # The filters and the table alone; the panel and the history update themselves.
        return render(request, "integrations/_dead_letter_list.html", context, status=status)
    services.replays_fail_stale(connection=connection)
    replays = replays_for_connection(connection=connection)
    context.update(replays=replays, replay=replay_for_panel(replays), blocker=replay_blocker(connection))
    return render(request, "integrations/dead_letters.html", context, status=status)


@workspace_view()
@require_GET
def dead_letter_body(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """One dead letter's body, indented, loaded when its row is opened."""
    connection = _connection(request, pk)
    dead_letter = dead_letter_get_for_connection(connection=connection, pk=id_from(request.GET.get("id")))
    sent_id = protocol.sent_message_id(protocol.connection_namespace(connection.pk), dead_letter.message_id)
    wire = protocol.wire(bytes(dead_letter.body), sent_id)
    try:
        body = orjson.dumps(orjson.loads(wire), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        body = wire.decode(errors="replace")
    return render(request, "integrations/_dead_letter_body.html",
                  {"dead_letter": dead_letter, "body": body, "sent_id": sent_id.decode()})


@workspace_view(manage=True)
@require_GET
def dead_letters_confirm(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The dry run: what a replay or discard of the selection would touch, before it does."""
    connection = _connection(request, pk)
    action = "discard" if request.GET.get("action") == "discard" else "replay"
    try:
        selection = _selection(request.GET)
    except ValidationError as problem:
        return _panel(request, connection, error=problem.messages[0], status=422)
    plan = services.dead_letters_plan(connection=connection, selection=selection, action=action)
    if request.htmx:
        return _panel(request, connection, plan=plan)
    return render(request, "integrations/dead_letters_confirm.html",
                  {"connection": connection, "plan": plan, "nav": "integrations"})


@workspace_view(manage=True)
@require_POST
def dead_letters_replay(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = _connection(request, pk)
    try:
        replay = services.dead_letters_replay(actor=Actor.from_request(request), connection=connection,
                                              selection=_selection(request.POST))
    except (ReplayRefused, ValidationError) as refused:
        return _refused(request, connection, refused.messages[0] if isinstance(refused, ValidationError)
                        else str(refused))
    if request.htmx:
        return _panel(request, connection, replay=replay)
    # No flash message: the page's panel shows the replay, queued, then sending, then its result.
    return _back_to_list(connection)


@workspace_view()
@require_GET
def dead_letters_replay_status(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The replay panel (and the replay history, out of band): polled while the replay is
    queued or sending. Once it ends, the list reloads to show what it marked."""
    connection = _connection(request, pk)
    services.replays_fail_stale(connection=connection)
    replay = replay_get_for_connection(connection=connection, pk=id_from(request.GET.get("replay")))
    response = _panel(request, connection, replay=replay)
    if not replay.in_progress:
        response["HX-Trigger"] = CHANGED
    return response


@workspace_view(manage=True)
@require_POST
def dead_letters_discard(request: WorkspaceRequest, pk: int) -> HttpResponse:
    connection = _connection(request, pk)
    try:
        discarded = services.dead_letters_discard(actor=Actor.from_request(request), connection=connection,
                                                  selection=_selection(request.POST))
    except ValidationError as refused:
        return _refused(request, connection, refused.messages[0])
    done = f"{discarded:,} dead letter{'s' if discarded != 1 else ''} discarded. The audit log records it."
    if request.htmx:
        response = _panel(request, connection, notice=done)
        response["HX-Trigger"] = CHANGED
        return response
    messages.success(request, done)
    return _back_to_list(connection)


def _connection(request: WorkspaceRequest, pk: int) -> Connection:
    return connection_get_for_workspace(workspace=request.workspace, pk=pk)


def _form_errors(form: forms.Form) -> str:
    return " ".join(str(error) for errors in form.errors.values() for error in errors)


def _refused(request: WorkspaceRequest, connection: Connection, message: str) -> HttpResponse:
    """A replay or discard refused: said in the panel (htmx, 422) or above the list."""
    if request.htmx:
        return _panel(request, connection, error=message, status=422)
    messages.error(request, message)
    return _back_to_list(connection)


def _back_to_list(connection: Connection) -> HttpResponse:
    return redirect("integrations:dead_letters", slug=connection.workspace.slug, pk=connection.pk)


def _panel(request: WorkspaceRequest, connection: Connection, *, plan: Plan | None = None, replay: Replay | None = None,
           error: str = "", notice: str = "", status: int = 200) -> HttpResponse:
    """The panel; with a replay, also the replay history, swapped out of band (htmx)."""
    return render(request, "integrations/_dead_letter_panel.html", {
        "connection": connection, "plan": plan, "replay": replay, "error": error, "notice": notice,
        "oob_replays": replays_for_connection(connection=connection) if replay is not None else None,
    }, status=status)


urlpatterns: list[URLPattern] = [
    path("settings/integrations/segment/<int:pk>/dead-letters/", dead_letters, name="dead_letters"),
    path("settings/integrations/segment/<int:pk>/dead-letters/body/", dead_letter_body, name="dead_letter_body"),
    path("settings/integrations/segment/<int:pk>/dead-letters/confirm/", dead_letters_confirm,
         name="dead_letters_confirm"),
    path("settings/integrations/segment/<int:pk>/dead-letters/replay/", dead_letters_replay,
         name="dead_letters_replay"),
    path("settings/integrations/segment/<int:pk>/dead-letters/replay/status/", dead_letters_replay_status,
         name="dead_letters_replay_status"),
    path("settings/integrations/segment/<int:pk>/dead-letters/discard/", dead_letters_discard,
         name="dead_letters_discard"),
]
