"""Writes and reads of webhook endpoints: create, change the mapping, rotate the secret,
enable or disable, delete; the test console's preview; the inbound log's retention.

Every write validates, runs in a transaction and writes an audit row naming the endpoint,
never a secret. The receive path's per-process copy of an endpoint is dropped here after a
change; other processes see the change within `receive.RECEIVER_SECONDS`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.views.decorators.debug import sensitive_variables

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Workspace
from accounts.permissions import require_manager
from accounts.validation import name_cleaned
from integrations.ingest.messages import Invalid, Normaliser, loads_lenient
from integrations.models import SigningMode, WebhookEndpoint, WebhookReceipt
from integrations.models.chunks import delete_in_chunks
from integrations.webhooks import verification
from integrations.webhooks.mapping import MappingError, Unmappable, compile_mapping
from integrations.webhooks.presets import DEFAULT_PRESET, PRESETS
from integrations.webhooks.receive import MAX_BODY_BYTES, message_id_for, receiver_forget

NAME_MAX_LENGTH = 80
NAME_MISSING = "Give the endpoint a name: what posts to it, for example Chat assistant."
MAX_OVERLAP_HOURS = 24
MAX_MAPPING_BYTES = 64 * 1024
# Inbound log rows deleted per statement by the retention task.
TRIM_CHUNK = 5_000


@dataclass(frozen=True)
class Created:
    """A new endpoint and its secret (signed) or URL token (unsigned): the only time either exists
    in plain text outside the receive path."""

    endpoint: WebhookEndpoint
    secret: str = field(repr=False, default="")
    url_token: str = field(repr=False, default="")


def mapping_parse(text: str) -> dict[str, Any]:
    """The mapping document from the form's text, checked; ValidationError on `mapping` says what to fix."""
    if len(text.encode()) > MAX_MAPPING_BYTES:
        raise ValidationError({"mapping": f"Keep the mapping under {MAX_MAPPING_BYTES // 1024} KB."})
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValidationError({"mapping": f"The mapping is not JSON: {str(error)[:120]}."}) from None
    try:
        compile_mapping(document)
    except MappingError as error:
        raise ValidationError({"mapping": str(error)}) from None
    return document  # type: ignore[no-any-return]


@sensitive_variables("secret", "token")
def endpoint_create(*, actor: Actor, workspace: Workspace, name: str, mode: str = SigningMode.SIGNED,
                    mapping: dict[str, Any] | None = None, preset: str = "") -> Created:
    name = name_cleaned(name, missing=NAME_MISSING, max_length=NAME_MAX_LENGTH)
    if mode not in SigningMode.values:
        raise ValidationError({"mode": "Choose signed or unsigned (token in the URL)."})
    if mapping is None:
        preset = preset or DEFAULT_PRESET
        if preset not in PRESETS:
            raise ValidationError({"preset": "Choose one of the presets."})
        mapping = PRESETS[preset].mapping
    try:
        compile_mapping(mapping)
    except MappingError as error:
        raise ValidationError({"mapping": str(error)}) from None
    with transaction.atomic():
        require_manager(actor, workspace, to="manage webhook endpoints")
        Workspace.objects.select_for_update().filter(pk=workspace.pk).first()
        if WebhookEndpoint.objects.filter(workspace=workspace, name__iexact=name).exists():
            raise ValidationError({"name": f"An endpoint is already called “{name}”. Choose another name."})
        endpoint = WebhookEndpoint(workspace=workspace, name=name, public_id=WebhookEndpoint.new_public_id(),
                                   mode=mode, mapping=mapping, preset=preset, created_by=actor.user)
        secret = token = ""
        if mode == SigningMode.SIGNED:
            secret = verification.secret_generate()
            endpoint.set_secret(secret)
        else:
            token = verification.url_token_generate()
            endpoint.url_token_hash = verification.url_token_hash(token)
        endpoint.save()
        audit_record(actor=actor, action=AuditAction.WEBHOOK_CREATED, workspace=workspace, target=endpoint,
                     details=describe(endpoint))
    return Created(endpoint, secret=secret, url_token=token)


def endpoint_update(*, actor: Actor, endpoint: WebhookEndpoint, name: str | None = None,
                    mapping: dict[str, Any] | None = None) -> WebhookEndpoint:
    """Rename the endpoint or replace its mapping."""
    changed: list[str] = []
    if name is not None:
        name = name_cleaned(name, missing=NAME_MISSING, max_length=NAME_MAX_LENGTH)
        if name != endpoint.name:
            changed.append("name")
    if mapping is not None:
        try:
            compile_mapping(mapping)
        except MappingError as error:
            raise ValidationError({"mapping": str(error)}) from None
        if mapping != endpoint.mapping:
            changed.append("mapping")
    if not changed:
        return endpoint
    with transaction.atomic():
        require_manager(actor, endpoint.workspace, to="manage webhook endpoints")
        if "name" in changed and WebhookEndpoint.objects.filter(
                workspace_id=endpoint.workspace_id, name__iexact=name).exclude(pk=endpoint.pk).exists():
            raise ValidationError({"name": f"An endpoint is already called “{name}”. Choose another name."})
        if "name" in changed:
            endpoint.name = name  # type: ignore[assignment]
        if "mapping" in changed:
            endpoint.mapping = mapping
            endpoint.preset = ""
        endpoint.save(update_fields=[*changed, *(["preset"] if "mapping" in changed else []), "updated_at"])
        audit_record(actor=actor, action=AuditAction.WEBHOOK_UPDATED, workspace=endpoint.workspace,
                     target=endpoint, details={**describe(endpoint), "changed": changed})
    transaction.on_commit(lambda: receiver_forget(endpoint.public_id))
    return endpoint


@sensitive_variables("secret", "token")
def endpoint_rotate_secret(*, actor: Actor, endpoint: WebhookEndpoint, overlap_hours: float,
                           end_running_overlap: bool = False) -> Created:
    """A new secret (or URL token). A signed endpoint keeps accepting the old secret for
    `overlap_hours` (0 to 24), so the sender can switch without losing a webhook; the old
    URL token of an unsigned endpoint stops at once (it is in the URL: keeping it would keep
    the leak open).

    Only one previous secret is kept. While an earlier rotation's overlap still runs, the
    sender may still sign with that earlier secret (it has not necessarily switched yet), and
    a second rotation would silently stop it before the time the page promised. So that
    rotation is refused unless `end_running_overlap` says the caller knows it ends the
    earlier overlap now. The check runs under the row's lock, so two rotations at once
    cannot both pass it."""
    if not 0 <= overlap_hours <= MAX_OVERLAP_HOURS:
        raise ValidationError({"overlap_hours": f"Choose an overlap from 0 to {MAX_OVERLAP_HOURS} hours."})
    with transaction.atomic():
        require_manager(actor, endpoint.workspace, to="manage webhook endpoints")
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        now = timezone.now()
        running_until = endpoint.overlap_until(now=now) if endpoint.is_signed else None
        if running_until is not None and not end_running_overlap:
            raise ValidationError({"end_running_overlap": overlap_running_message(running_until)})
        secret = token = ""
        if endpoint.is_signed:
            secret = verification.secret_generate()
            endpoint.previous_secret_encrypted = endpoint.secret_encrypted if overlap_hours else ""
            endpoint.previous_secret_expires_at = now + timedelta(hours=overlap_hours) if overlap_hours else None
            endpoint.set_secret(secret)
        else:
            token = verification.url_token_generate()
            endpoint.url_token_hash = verification.url_token_hash(token)
        endpoint.secret_rotated_at = now
        endpoint.save()
        audit_record(actor=actor, action=AuditAction.WEBHOOK_SECRET_ROTATED, workspace=endpoint.workspace,
                     target=endpoint, details={**describe(endpoint), "overlap_hours": overlap_hours,
                                               "ended_running_overlap": running_until is not None})
    receiver_forget(endpoint.public_id)
    return Created(endpoint, secret=secret, url_token=token)


def overlap_running_message(until: datetime) -> str:
    """Why a rotation during an overlap needs saying so (the form shows it; no secret in it)."""
    return (f"The secret before the current one is still accepted until {date_format(timezone.localtime(until), 'M j, H:i e')}, "
            "and the sender may still sign with it. Rotate again after that, or tick this box to stop "
            "that secret now.")


def endpoint_set_enabled(*, actor: Actor, endpoint: WebhookEndpoint, enabled: bool) -> WebhookEndpoint:
    if endpoint.enabled == enabled:
        return endpoint
    with transaction.atomic():
        require_manager(actor, endpoint.workspace, to="manage webhook endpoints")
        endpoint.enabled = enabled
        endpoint.save(update_fields=["enabled", "updated_at"])
        audit_record(actor=actor, action=AuditAction.WEBHOOK_ENABLED if enabled else AuditAction.WEBHOOK_DISABLED,
                     workspace=endpoint.workspace, target=endpoint, details=describe(endpoint))
    receiver_forget(endpoint.public_id)
    return endpoint


def endpoint_delete(*, actor: Actor, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint and its inbound log; events it already stored stay in the event log."""
    with transaction.atomic():
        require_manager(actor, endpoint.workspace, to="manage webhook endpoints")
        audit_record(actor=actor, action=AuditAction.WEBHOOK_DELETED, workspace=endpoint.workspace,
                     target=endpoint, details=describe(endpoint))
        endpoint.delete()
    receiver_forget(endpoint.public_id)


def describe(endpoint: WebhookEndpoint) -> dict[str, str]:
    """What the audit log says about an endpoint: never its secret or token."""
    return {"name": endpoint.name, "mode": endpoint.mode, "public_id": endpoint.public_id}


# --- the test console -----------------------------------------------------------------------


@dataclass
class Preview:
    """What a sample payload becomes: the calls as stored and sent (less the messageId each
    connection sends under), or why it cannot."""

    calls: list[str] = field(default_factory=list)
    error: str = ""
    ignored: bool = False


def mapping_preview(*, mapping_text: str, sample_text: str) -> Preview:
    """Run the mapping on a pasted sample, exactly as the receive path would (without storing)."""
    try:
        document = mapping_parse(mapping_text)
    except ValidationError as error:
        return Preview(error=" ".join(error.message_dict.get("mapping", error.messages)))
    if len(sample_text.encode()) > MAX_BODY_BYTES:
        return Preview(error=f"The sample is larger than the {MAX_BODY_BYTES // 1024} KB a webhook may be.")
    try:
        payload = orjson.loads(sample_text)
    except orjson.JSONDecodeError:
        try:
            payload = loads_lenient(sample_text.encode())
        except ValueError:
            return Preview(error="The sample is not JSON: paste the body the sender posts.")
    try:
        calls = compile_mapping(document).apply(payload)
    except Unmappable as unmappable:
        return Preview(error=f"422 ({unmappable.reason}): {unmappable.detail}")
    if not calls:
        return Preview(ignored=True)
    normalise = Normaliser(received_at=timezone.now())
    shown = []
    for index, call in enumerate(calls):
        call["messageId"] = message_id_for("wh_preview", "sample", index)
        try:
            body = orjson.loads(normalise(call).body)
        except Invalid as invalid:
            return Preview(error=f"422 ({invalid.reason}): call {index + 1} ({call.get('type')}): {invalid.detail}")
        shown.append(orjson.dumps(_without_relay(body), option=orjson.OPT_INDENT_2).decode())
    return Preview(calls=shown)


def _without_relay(body: dict[str, Any]) -> dict[str, Any]:
    """The call as the user mapped it: Tributary's own bookkeeping (`context.tributary`,
    `context.library`, `receivedAt`) is the same on every event and only hides the mapping."""
    context = {k: v for k, v in (body.get("context") or {}).items() if k not in ("tributary", "library")}
    shown = {k: v for k, v in body.items() if k not in ("context", "receivedAt")}
    if context:
        shown["context"] = context
    return shown


# --- reads ----------------------------------------------------------------------------------


def endpoints_for_workspace(*, workspace: Workspace) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(workspace=workspace).order_by("name")


def endpoint_get_for_workspace(*, workspace: Workspace, pk: int) -> WebhookEndpoint:
    try:
        return endpoints_for_workspace(workspace=workspace).select_related("workspace").get(pk=pk)
    except WebhookEndpoint.DoesNotExist:
        raise Http404("No such webhook endpoint.") from None


RECEIPT_LIST_COLUMNS = ("id", "endpoint_id", "received_at", "webhook_id", "status", "signature", "outcome",
                        "reason", "message_ids", "body_size")


def receipts_latest(*, endpoint: WebhookEndpoint, after: int = 0, limit: int = 50) -> list[WebhookReceipt]:
    """The inbound log, newest first (only those after receipt `after`, for the live list)."""
    receipts = WebhookReceipt.objects.filter(endpoint=endpoint).only(*RECEIPT_LIST_COLUMNS)
    if after:
        receipts = receipts.filter(id__gt=after)
    return list(receipts.order_by("-id")[:limit])


def receipt_get(*, endpoint: WebhookEndpoint, pk: int) -> WebhookReceipt:
    try:
        return WebhookReceipt.objects.get(endpoint=endpoint, pk=pk)
    except WebhookReceipt.DoesNotExist:
        raise Http404("No such request in the inbound log: it may have been trimmed.") from None


# --- retention ------------------------------------------------------------------------------


def webhook_receipts_trim() -> int:
    """Delete inbound log rows older than WEBHOOK_LOG_RETENTION_DAYS, in bounded chunks.

    Accepted receipts are also the record of seen webhook ids, so retention must exceed both
    the 5-minute signature tolerance and how long senders retry (Standard Webhooks senders
    retry for about a day): the default 7 days covers both. For the hourly retention task."""
    days = getattr(settings, "WEBHOOK_LOG_RETENTION_DAYS", 7)
    cutoff = timezone.now() - timedelta(days=max(1, days))
    return delete_in_chunks(WebhookReceipt.objects.filter(received_at__lt=cutoff), chunk=TRIM_CHUNK,
                            order_by="received_at")
