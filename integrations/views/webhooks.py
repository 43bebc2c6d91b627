"""Settings → Webhooks: endpoints that receive a product's webhooks, their mapping with a test
console, their secret (shown once, rotated with an overlap) and their inbound log, live.

Creating an endpoint or rotating its secret answers with a redirect to the endpoint's
`secret/` page, which shows the new secret or URL token once (views.shown_once keeps it,
encrypted, in the session until then): a reload shows the page without it and says why,
and never posts the form again.
"""
from __future__ import annotations

import hmac
from typing import Any

import orjson
from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path, reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest, id_from
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations.models import SigningMode, WebhookEndpoint
from integrations.views.shown_once import Shown, shown_once_put, shown_once_take
from integrations.webhooks import services, verification
from integrations.webhooks.presets import DEFAULT_PRESET, PRESETS
from integrations.webhooks.receive import MAX_BODY_BYTES
from integrations.webhooks.services import Created

OVERLAP_CHOICES = [(0, "None: the old secret stops now"), (1, "1 hour"), (6, "6 hours"), (24, "24 hours")]


class EndpointForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80, help_text="What posts to it, for example Chat assistant.")
    mode = forms.ChoiceField(label="Verification", choices=SigningMode.choices, initial=SigningMode.SIGNED,
                             widget=forms.RadioSelect)
    preset = forms.ChoiceField(label="Start from", choices=[(p.key, p.label) for p in PRESETS.values()],
                               initial=DEFAULT_PRESET, widget=forms.RadioSelect)


class MappingForm(forms.Form):
    mapping = forms.CharField(label="Mapping (JSON)", widget=forms.Textarea(attrs={
        "rows": 18, "spellcheck": "false", "class": "code-input"}))
    sample = forms.CharField(label="Sample payload", required=False, widget=forms.Textarea(attrs={
        "rows": 10, "spellcheck": "false", "class": "code-input"}))


class RotateForm(forms.Form):
    overlap_hours = forms.TypedChoiceField(label="Keep the old secret working for", choices=OVERLAP_CHOICES,
                                           coerce=int, initial=24)
    # Shown only while an earlier rotation's overlap runs (see services.endpoint_rotate_secret).
    end_running_overlap = forms.BooleanField(label="Stop the secret before the current one now", required=False)


@workspace_view()
@require_GET
def webhooks(request: WorkspaceRequest) -> HttpResponse:
    return _index(request, EndpointForm() if request.membership.can_manage else None)


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
@sensitive_variables()
def webhook_create(request: WorkspaceRequest) -> HttpResponse:
    if request.method == "GET":  # the form is on the list page
        return redirect("integrations:webhooks", slug=request.workspace.slug)
    form = EndpointForm(request.POST)
    if form.is_valid():
        try:
            created = services.endpoint_create(
                actor=Actor.from_request(request), workspace=request.workspace, name=form.cleaned_data["name"],
                mode=form.cleaned_data["mode"], preset=form.cleaned_data["preset"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            return _show_once(request, created, rotated=False)
    return _index(request, form, status=422)


@workspace_view(manage=True)
@require_GET
@never_cache
@sensitive_variables()
def webhook_secret(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Where creating and rotating lead: the endpoint's page with its new secret, the first time
    only; after that (a reload, a later visit) the page says it is not shown again."""
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    shown = shown_once_take(request, key=_shown_once_key(endpoint))
    created = _still_current(endpoint, shown) if shown else None
    rotated = bool(shown and shown.details.get("rotated"))
    return _detail(request, endpoint, created=created, rotated=rotated, secret_gone=created is None)


@workspace_view()
@require_GET
def webhook(request: WorkspaceRequest, pk: int) -> HttpResponse:
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    return _detail(request, endpoint)


@workspace_view(manage=True)
@require_POST
def webhook_mapping(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Save the mapping (the sample stays in the form, unsaved)."""
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    form = MappingForm(request.POST)
    if form.is_valid():
        try:
            mapping = services.mapping_parse(form.cleaned_data["mapping"])
            services.endpoint_update(actor=Actor.from_request(request), endpoint=endpoint, mapping=mapping)
            messages.success(request, "Mapping saved: webhooks from now on are mapped with it.")
            return redirect("integrations:webhook", slug=request.workspace.slug, pk=endpoint.pk)
        except ValidationError as error:
            attach_errors(form, error)
    return _detail(request, endpoint, mapping_form=form, status=422)


@workspace_view()
@require_POST
def webhook_console(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The test console: what the sample becomes with the mapping as typed (nothing is saved)."""
    services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    preview = services.mapping_preview(mapping_text=request.POST.get("mapping", ""),
                                       sample_text=request.POST.get("sample", ""))
    return render(request, "integrations/webhooks/_console_result.html", {"preview": preview})


@workspace_view()
@require_GET
def webhook_preset(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """A preset's mapping and sample in the editor (not saved until Save)."""
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    preset = PRESETS.get(request.GET.get("preset", ""))
    form = _mapping_form(endpoint, preset.key if preset else "")
    return render(request, "integrations/webhooks/_mapping_fields.html", {"mapping_form": form})


@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
@sensitive_variables()
def webhook_rotate(request: WorkspaceRequest, pk: int) -> HttpResponse:
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    if request.method == "GET":  # the form is on the endpoint's page
        return redirect("integrations:webhook", slug=request.workspace.slug, pk=endpoint.pk)
    form = RotateForm(request.POST)
    if form.is_valid():
        try:
            created = services.endpoint_rotate_secret(
                actor=Actor.from_request(request), endpoint=endpoint, overlap_hours=form.cleaned_data["overlap_hours"],
                end_running_overlap=form.cleaned_data["end_running_overlap"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            return _show_once(request, created, rotated=True)
    return _detail(request, endpoint, rotate_form=form, status=422)


@workspace_view(manage=True)
@require_POST
def webhook_enabled(request: WorkspaceRequest, pk: int) -> HttpResponse:
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    enabled = request.POST.get("enabled") == "true"
    services.endpoint_set_enabled(actor=Actor.from_request(request), endpoint=endpoint, enabled=enabled)
    messages.success(request, f"“{endpoint.name}” {'enabled' if enabled else 'disabled: its URL answers 403'}.")
    return redirect("integrations:webhook", slug=request.workspace.slug, pk=endpoint.pk)


@workspace_view(manage=True)
@require_POST
def webhook_delete(request: WorkspaceRequest, pk: int) -> HttpResponse:
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    services.endpoint_delete(actor=Actor.from_request(request), endpoint=endpoint)
    messages.success(request, f"“{endpoint.name}” deleted. Events it already received stay in the event log.")
    return redirect("integrations:webhooks", slug=request.workspace.slug)


@workspace_view()
@require_GET
def webhook_receipts(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """Inbound log rows newer than `after`, to prepend; 204 when none arrived."""
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    after = request.GET.get("after", "")
    receipts = services.receipts_latest(endpoint=endpoint, after=id_from(after))
    if not receipts:
        return HttpResponse(status=204)
    return render(request, "integrations/webhooks/_receipt_rows.html", {"endpoint": endpoint, "receipts": receipts})


@workspace_view()
@require_GET
def webhook_receipt(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """One request of the inbound log opened: its outcome and its body as received."""
    endpoint = services.endpoint_get_for_workspace(workspace=request.workspace, pk=pk)
    receipt_id = request.GET.get("receipt", "")
    receipt = services.receipt_get(endpoint=endpoint, pk=id_from(receipt_id))
    body = bytes(receipt.body or b"")
    try:
        shown = orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        shown = body.decode("utf-8", "replace")
    return render(request, "integrations/webhooks/_receipt.html", {
        "endpoint": endpoint, "receipt": receipt, "body": shown, "truncated": len(body) < receipt.body_size})


# --- rendering --------------------------------------------------------------------------------


def _index(request: WorkspaceRequest, form: EndpointForm | None, status: int = 200) -> HttpResponse:
    endpoints = list(services.endpoints_for_workspace(workspace=request.workspace))
    return render(request, "integrations/webhooks/index.html", {
        "nav": "webhooks", "form": form, "endpoints": endpoints, "presets": PRESETS.values()}, status=status)


def _mapping_form(endpoint: WebhookEndpoint, preset_key: str = "") -> MappingForm:
    preset = PRESETS.get(preset_key or endpoint.preset)
    mapping = preset.mapping if preset_key and preset else endpoint.mapping
    sample = preset.sample if preset else next(iter(PRESETS.values())).sample
    return MappingForm(initial={"mapping": orjson.dumps(mapping, option=orjson.OPT_INDENT_2).decode(),
                                "sample": orjson.dumps(sample, option=orjson.OPT_INDENT_2).decode()})


def receive_url(endpoint: WebhookEndpoint, token: str = "") -> str:
    """The URL the sender posts to; for an unsigned endpoint its token is only known at creation
    or rotation, so the URL is shown with a placeholder otherwise."""
    kwargs: dict[str, Any] = {"public_id": endpoint.public_id}
    if not endpoint.is_signed:
        kwargs["token"] = token or "TOKEN"
        return f"{settings.SITE_URL}{reverse('webhook_receive_token', kwargs=kwargs)}"
    return f"{settings.SITE_URL}{reverse('webhook_receive', kwargs=kwargs)}"


def _shown_once_key(endpoint: WebhookEndpoint) -> str:
    return f"webhook:{endpoint.pk}"


@sensitive_variables()
def _show_once(request: WorkspaceRequest, created: Created, *, rotated: bool) -> HttpResponse:
    """Keep the new secret or token for the `secret/` page and send the browser there."""
    shown_once_put(request, key=_shown_once_key(created.endpoint), secret=created.secret or created.url_token,
                   rotated=rotated)
    return redirect("integrations:webhook_secret", slug=request.workspace.slug, pk=created.endpoint.pk)


@sensitive_variables()
def _still_current(endpoint: WebhookEndpoint, shown: Shown) -> Created | None:
    """The kept secret as `Created`, unless the endpoint has another one since (rotated again
    in between): a secret that no longer works is not shown."""
    if endpoint.is_signed:
        if endpoint.secret_encrypted and hmac.compare_digest(endpoint.secret(), shown.secret):
            return Created(endpoint, secret=shown.secret)
    elif verification.url_token_matches(shown.secret, endpoint.url_token_hash):
        return Created(endpoint, url_token=shown.secret)
    return None


def _detail(request: WorkspaceRequest, endpoint: WebhookEndpoint, *, created: Created | None = None,
            rotated: bool = False, secret_gone: bool = False, mapping_form: MappingForm | None = None,
            rotate_form: RotateForm | None = None, status: int = 200) -> HttpResponse:
    can_manage = request.membership.can_manage
    preset = PRESETS.get(endpoint.preset) or next(iter(PRESETS.values()))
    return render(request, "integrations/webhooks/detail.html", {
        "nav": "webhooks", "endpoint": endpoint, "created": created, "rotated": rotated, "secret_gone": secret_gone,
        "url": receive_url(endpoint, created.url_token if created else ""),
        "mapping_form": mapping_form or _mapping_form(endpoint),
        "rotate_form": (rotate_form or RotateForm()) if can_manage else None,
        "presets": PRESETS.values(), "receipts": services.receipts_latest(endpoint=endpoint),
        "can_manage": can_manage, "max_body_kb": MAX_BODY_BYTES // 1024,
        "overlap_until": endpoint.overlap_until() if endpoint.is_signed else None,
        "secret_text": created.secret if created and created.secret else f"whsec_…{endpoint.secret_hint}",
        "sample_json": orjson.dumps(preset.sample).decode(),
    }, status=status)


urlpatterns: list[URLPattern] = [
    path("settings/webhooks/", webhooks, name="webhooks"),
    path("settings/webhooks/new/", webhook_create, name="webhook_create"),
    path("settings/webhooks/<int:pk>/", webhook, name="webhook"),
    path("settings/webhooks/<int:pk>/secret/", webhook_secret, name="webhook_secret"),
    path("settings/webhooks/<int:pk>/mapping/", webhook_mapping, name="webhook_mapping"),
    path("settings/webhooks/<int:pk>/console/", webhook_console, name="webhook_console"),
    path("settings/webhooks/<int:pk>/preset/", webhook_preset, name="webhook_preset"),
    path("settings/webhooks/<int:pk>/rotate/", webhook_rotate, name="webhook_rotate"),
    path("settings/webhooks/<int:pk>/enabled/", webhook_enabled, name="webhook_enabled"),
    path("settings/webhooks/<int:pk>/delete/", webhook_delete, name="webhook_delete"),
    path("settings/webhooks/<int:pk>/inbound/", webhook_receipts, name="webhook_receipts"),
    path("settings/webhooks/<int:pk>/inbound/request/", webhook_receipt, name="webhook_receipt"),
]
