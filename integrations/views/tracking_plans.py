"""The workspace's tracking plan page (rules as JSON in Segment's format, a form for simple
rules, import and export, enforcement settings) and the Violations page (counts by event and
kind for 1 h, 24 h and 7 d; blocked events, viewable and releasable). Owners and admins
change things, every change audited; members see them.
"""
from __future__ import annotations

from typing import Any

import orjson
from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest, ids_from
from accounts.permissions import workspace_view
from integrations.models import Connection, OnViolation, UnplannedEvents, UnplannedProperties
from integrations.tracking_plans import selectors, services
from integrations.tracking_plans.schemas import (
    MAX_PLAN_BYTES,
    NAMED_TYPES,
    RULE_TYPES,
    PlanInvalid,
    key_problem,
    plan_check,
)
from integrations.tracking_plans.services import SIMPLE_TYPES

BLOCKED_SHOWN = 100


class EnforcementForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Enforce the plan at ingest")
    unplanned_events = forms.ChoiceField(choices=UnplannedEvents.choices, label="Unplanned track events")
    unplanned_properties = forms.ChoiceField(choices=UnplannedProperties.choices,
                                             label="Unplanned properties and traits")
    on_violation = forms.ChoiceField(choices=OnViolation.choices, label="Events that violate their rule")
    forward_violations_to = forms.ModelChoiceField(queryset=Connection.objects.none(), required=False,
                                                   label="Forward violations to",
                                                   empty_label="Nowhere (count them here only)")

    def __init__(self, *args: Any, workspace: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["forward_violations_to"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = Connection.objects.filter(workspace=workspace).order_by("name")


class SimpleRuleForm(forms.Form):
    type = forms.ChoiceField(choices=[(t, t.title()) for t in RULE_TYPES if t != "COMMON"], initial="TRACK",
                             label="Rule for")
    key = forms.CharField(required=False, max_length=200, label="Event name",
                          help_text="For track, page and screen rules; leave empty for identify and group.")
    required = forms.CharField(required=False, label="Required properties (or traits)",
                               help_text="Names separated by commas, e.g. order_id, total.")
    typed = forms.CharField(required=False, label="Property types", widget=forms.Textarea(attrs={"rows": 3}),
                            help_text=f"One per line, name: type ({', '.join(SIMPLE_TYPES)}), e.g. total: number.")

    def clean_required(self) -> list[str]:
        return [name.strip() for name in self.cleaned_data["required"].split(",") if name.strip()]

    def clean_typed(self) -> dict[str, str]:
        types: dict[str, str] = {}
        for number, line in enumerate(self.cleaned_data["typed"].splitlines(), start=1):
            if not line.strip():
                continue
            name, _, kind = line.partition(":")
            if not name.strip() or kind.strip() not in SIMPLE_TYPES:
                raise ValidationError(f"Line {number}: write name: type, the type one of {', '.join(SIMPLE_TYPES)}.")
            types[name.strip()] = kind.strip()
        return types

    def clean(self) -> dict[str, Any]:
        """The event name judged here, next to its field and in the form's words; the plan's own
        check would name a rule number the person never saw."""
        data = super().clean() or {}
        kind, key = data.get("type"), data.get("key") or ""
        if kind not in NAMED_TYPES:
            data["key"] = ""  # identify and group rules have no event name
        elif kind == "TRACK" and not key:
            self.add_error("key", "Give the event's name, as your track calls send it.")
        elif problem := key_problem(key):
            self.add_error("key", problem[0].upper() + problem[1:])
        return data


@workspace_view()
@require_GET
def tracking_plan(request: WorkspaceRequest) -> HttpResponse:
    return _page(request)


@workspace_view(manage=True)
@require_POST
def tracking_plan_check(request: WorkspaceRequest) -> HttpResponse:
    """The editor's JSON, checked as a save would check it (a fragment for htmx)."""
    problem, count = _check_text(request.POST.get("rules", ""))
    return render(request, "integrations/tracking_plans/_check.html", {"problem": problem, "count": count})


@workspace_view(manage=True)
@require_POST
def tracking_plan_rules(request: WorkspaceRequest) -> HttpResponse:
    text = request.POST.get("rules", "")
    try:
        saved = services.plan_import(actor=Actor.from_request(request), workspace=request.workspace, text=text,
                                     imported=False)
    except ValidationError as error:
        return _page(request, rules_text=text, rules_error=_message(error), status=400)
    messages.success(request, f"Tracking plan saved: {len(saved.rules)} rule{'s' if len(saved.rules) != 1 else ''}, "
                              f"version {saved.version}. It applies to events from now on.")
    return redirect("integrations:tracking_plan", slug=request.workspace.slug)


@workspace_view(manage=True)
@require_POST
def tracking_plan_import(request: WorkspaceRequest) -> HttpResponse:
    upload = request.FILES.get("file")
    if upload is None:
        return _page(request, rules_error="Choose a JSON file exported from Segment.", status=400)
    if upload.size and upload.size > MAX_PLAN_BYTES * 2:
        return _page(request, rules_error=f"The file is larger than {MAX_PLAN_BYTES * 2 // 1024} KB.", status=400)
    try:
        saved = services.plan_import(actor=Actor.from_request(request), workspace=request.workspace,
                                     text=upload.read())
    except ValidationError as error:
        return _page(request, rules_error=_message(error), status=400)
    messages.success(request, f"Imported {len(saved.rules)} rules from {upload.name}.")
    return redirect("integrations:tracking_plan", slug=request.workspace.slug)


@workspace_view()
@require_GET
def tracking_plan_export(request: WorkspaceRequest) -> HttpResponse:
    document = services.plan_export(plan=selectors.plan_get(workspace=request.workspace))
    response = HttpResponse(orjson.dumps(document, option=orjson.OPT_INDENT_2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="tracking-plan-{request.workspace.slug}.json"'
    return response


@workspace_view(manage=True)
@require_POST
def tracking_plan_rule(request: WorkspaceRequest) -> HttpResponse:
    form = SimpleRuleForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        rule = services.simple_rule(kind=data["type"], key=data["key"], required=data["required"],
                                    types=data["typed"])
        try:
            services.plan_rule_put(actor=Actor.from_request(request), workspace=request.workspace, rule=rule)
        except ValidationError as error:  # the whole plan's limits (its size, its number of rules)
            form.add_error(None, _message(error))
        else:
            messages.success(request, f"Rule for {rule['type'].lower()} {rule['key']!r} saved.".replace(" ''", ""))
            return redirect("integrations:tracking_plan", slug=request.workspace.slug)
    return _page(request, rule_form=form, status=400)


@workspace_view(manage=True)
@require_POST
def tracking_plan_enforcement(request: WorkspaceRequest) -> HttpResponse:
    form = EnforcementForm(request.POST, workspace=request.workspace)
    if form.is_valid():
        try:
            services.plan_enforcement_save(actor=Actor.from_request(request), workspace=request.workspace,
                                           **form.cleaned_data)
        except ValidationError as error:
            for field, errors in error.message_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            messages.success(request, "Enforcement saved: it applies to events from now on.")
            return redirect("integrations:tracking_plan", slug=request.workspace.slug)
    return _page(request, enforcement_form=form, status=400)


def _check_text(text: str) -> tuple[str | None, int]:
    if len(text) > MAX_PLAN_BYTES * 2:
        return f"The plan is larger than {MAX_PLAN_BYTES // 1024} KB.", 0
    try:
        rules = services.rules_of(orjson.loads(text or "[]"))
        return None, len(plan_check(rules))
    except orjson.JSONDecodeError as error:
        return f"Not JSON: {error}", 0
    except (PlanInvalid, ValidationError) as error:
        return _message(error), 0


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(message for messages_ in error.message_dict.values() for message in messages_) \
            if hasattr(error, "error_dict") else " ".join(error.messages)
    return str(error)


def _page(request: WorkspaceRequest, *, rules_text: str | None = None, rules_error: str | None = None,
          rule_form: SimpleRuleForm | None = None, enforcement_form: EnforcementForm | None = None,
          status: int = 200) -> HttpResponse:
    plan = selectors.plan_get(workspace=request.workspace)
    if enforcement_form is None:
        initial = {"enabled": plan.enabled if plan else True,
                   "unplanned_events": plan.unplanned_events if plan else UnplannedEvents.ALLOW,
                   "unplanned_properties": plan.unplanned_properties if plan else UnplannedProperties.ALLOW,
                   "on_violation": plan.on_violation if plan else OnViolation.ALLOW,
                   "forward_violations_to": plan.forward_violations_to_id if plan else None}
        enforcement_form = EnforcementForm(initial=initial, workspace=request.workspace)
    if rules_text is None:
        rules_text = orjson.dumps(services.plan_export(plan=plan), option=orjson.OPT_INDENT_2).decode()
    return render(request, "integrations/tracking_plans/tracking_plan.html", {
        "plan": plan, "rules": plan.rules if plan else [], "rules_text": rules_text, "rules_error": rules_error,
        "rule_form": rule_form or SimpleRuleForm(), "enforcement_form": enforcement_form,
        "max_kb": MAX_PLAN_BYTES // 1024, "nav": "tracking_plan",
    }, status=status)


# Violations ------------------------------------------------------------------------------------

@workspace_view()
@require_GET
def violations(request: WorkspaceRequest) -> HttpResponse:
    event = request.GET.get("event")
    blocked = selectors.blocked_events(workspace=request.workspace)
    if event is not None:
        blocked = blocked.filter(name=event)
    return render(request, "integrations/tracking_plans/violations.html", {
        "groups": selectors.violations_summary(workspace=request.workspace, event_name=event),
        "blocked": list(blocked[:BLOCKED_SHOWN]), "blocked_total": blocked.count(), "event": event,
        "plan": selectors.plan_get(workspace=request.workspace), "nav": "violations",
    })


@workspace_view()
@require_GET
def blocked_event(request: WorkspaceRequest, blocked_pk: int) -> HttpResponse:
    row = selectors.blocked_event_get(workspace=request.workspace, pk=blocked_pk)
    body = orjson.dumps({"messageId": row.message_id, **orjson.loads(bytes(row.body))}, option=orjson.OPT_INDENT_2)
    return render(request, "integrations/tracking_plans/blocked_event.html", {
        "row": row, "body": body.decode(), "expired": row.expires_at < timezone.now(), "nav": "violations",
    })


@workspace_view(manage=True)
@require_POST
def blocked_release(request: WorkspaceRequest) -> HttpResponse:
    ids = ids_from(request.POST.getlist("ids"))
    if not ids:
        messages.error(request, "Choose the blocked events to release.")
        return redirect("integrations:violations", slug=request.workspace.slug)
    stored = services.blocked_release(actor=Actor.from_request(request), workspace=request.workspace, ids=ids)
    messages.success(request, f"Released {stored} event{'s' if stored != 1 else ''} into the log: they are "
                              "delivered like any other.")
    return redirect("integrations:violations", slug=request.workspace.slug)


urlpatterns = [
    path("settings/tracking-plan/", tracking_plan, name="tracking_plan"),
    path("settings/tracking-plan/check/", tracking_plan_check, name="tracking_plan_check"),
    path("settings/tracking-plan/rules/", tracking_plan_rules, name="tracking_plan_rules"),
    path("settings/tracking-plan/rule/", tracking_plan_rule, name="tracking_plan_rule"),
    path("settings/tracking-plan/import/", tracking_plan_import, name="tracking_plan_import"),
    path("settings/tracking-plan/export/", tracking_plan_export, name="tracking_plan_export"),
    path("settings/tracking-plan/enforcement/", tracking_plan_enforcement, name="tracking_plan_enforcement"),
    path("violations/", violations, name="violations"),
    path("violations/blocked/<int:blocked_pk>/", blocked_event, name="blocked_event"),
    path("violations/release/", blocked_release, name="blocked_release"),
]
