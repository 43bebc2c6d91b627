"""Writes about the customer's Segment workspace: its token, picking a source, labels, deleting
a source. Segment is asked first, outside any transaction; only once it has answered does one
transaction change our rows and write the audit row, so a refusal changes nothing."""
from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Membership, Role, Workspace
from accounts.permissions import require_manager
from integrations import crypto
from integrations import services as connection_services
from integrations.models import Connection, PublicApiCall, Region, SegmentSource, SegmentToken
from integrations.models.chunks import delete_in_chunks
from integrations.segment.public_api import Budget, Label, PublicApi, PublicApiError
from integrations.segment_workspace.selectors import (
    api_for,
    api_for_workspace,
    call_logger,
    source_link_for_connection,
)

TOKEN_MIN, TOKEN_MAX = 8, 512
TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.~+/=:")
LABEL_PART_MAX = 100
OTHER_REGION = {Region.US: Region.EU, Region.EU: Region.US}


@dataclass(frozen=True)
class TokenCheck:
    """What Segment said about a token, in words. `outcome`: accepted, unauthorized,
    other_region, rate_limited, timeout, unreachable, malformed, invalid."""

    outcome: str
    message: str
    workspace_name: str = ""
    workspace_id: str = ""

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


class NoWriteKey(ValidationError):
    """Segment listed the source with empty `writeKeys`: the token lacks Source Admin on it."""


# --- the token ----------------------------------------------------------------------------


@sensitive_variables("token")
def token_check(*, workspace: Workspace | None, token: str, region: str) -> TokenCheck:
    """One real read (`GET /`, the Segment workspace) with the token, and the answer in words.
    A 401 is tried once in the other region, to tell "other region" from "invalid"."""
    try:
        found = _api(workspace, token, region).workspace(cached=False)
    except PublicApiError as error:
        if error.kind != "unauthorized":
            return TokenCheck(error.kind, _check_failure(error))
        other = OTHER_REGION.get(Region(region), Region.US)
        try:
            elsewhere = _api(workspace, token, other).workspace(cached=False)
        except PublicApiError:
            return TokenCheck("unauthorized", error.message)
        return TokenCheck("other_region", f"This token belongs to a Segment workspace in the {other.label} region "
                                          f"(“{elsewhere['name']}”), not {Region(region).label}: choose "
                                          f"{other.label} and save again.", elsewhere["name"])
    name = found["name"] or found["slug"] or "your Segment workspace"
    return TokenCheck("accepted", f"Accepted by Segment: the token belongs to “{name}”.", name, found["id"])


def _check_failure(error: PublicApiError) -> str:
    return f"Not saved. {error.message}"


@sensitive_variables("token")
def _api(workspace: Workspace | None, token: str, region: str) -> PublicApi:
    budget = Budget(float(settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS))
    return PublicApi(token=token, region=region, budget=budget, on_call=call_logger(workspace, region))


@sensitive_variables("token")
def segment_token_save(*, actor: Actor, workspace: Workspace, token: str, region: str) -> tuple[SegmentToken, TokenCheck]:
    """Save (or replace) the workspace's token once Segment accepts it. Raises ValidationError
    with the check's words otherwise; the stored token, if any, stays as it was."""
    token = token.strip()
    require_manager(actor, workspace, to="manage the Segment workspace")
    _validate_token(token, region)
    check = token_check(workspace=workspace, token=token, region=region)
    if not check.accepted:
        raise ValidationError({"region" if check.outcome == "other_region" else "token": check.message})
    with transaction.atomic():
        row = SegmentToken.objects.select_for_update().filter(workspace=workspace).first()
        previous = row.masked_token if row is not None else None
        row = row or SegmentToken(workspace=workspace, created_by=actor.user)
        row.set_token(token)
        row.region = region
        row.segment_workspace_id, row.segment_workspace_name = check.workspace_id, check.workspace_name
        row.checked_at = timezone.now()
        row.save()
        details = {"token": row.masked_token, "region": region, "segment_workspace": check.workspace_name}
        if previous is None:
            audit_record(actor=actor, action=AuditAction.SEGMENT_TOKEN_SAVED, workspace=workspace, target=row,
                         details=details)
        else:
            audit_record(actor=actor, action=AuditAction.SEGMENT_TOKEN_REPLACED, workspace=workspace, target=row,
                         details={**details, "previous_token": previous})
    return row, check


@sensitive_variables("token")
def _validate_token(token: str, region: str) -> None:
    errors: dict[str, str] = {}
    if not token:
        errors["token"] = "Paste the token: in Segment, Settings → Access Management → Tokens → Create token."
    elif not TOKEN_MIN <= len(token) <= TOKEN_MAX or not set(token) <= TOKEN_CHARACTERS:
        errors["token"] = ("That does not look like a Segment token: it is one line of letters, digits and a few "
                           "symbols such as - _ . (no spaces). Copy it again from Segment.")
    if region not in Region.values:
        errors["region"] = "Choose US or EU: the region of your Segment workspace."
    if errors:
        raise ValidationError(errors)


def segment_token_remove(*, actor: Actor, workspace: Workspace) -> None:
    require_manager(actor, workspace, to="manage the Segment workspace")
    with transaction.atomic():
        row = SegmentToken.objects.select_for_update().filter(workspace=workspace).first()
        if row is None:
            return
        audit_record(actor=actor, action=AuditAction.SEGMENT_TOKEN_REMOVED, workspace=workspace, target=row,
                     details={"token": row.masked_token, "region": row.region,
                              "segment_workspace": row.segment_workspace_name})
        row.delete()


def segment_tokens_reencrypt() -> tuple[int, int]:
    """Re-encrypt every token not under the first FIELD_ENCRYPTION_KEYS key (rotate_encryption_keys).
    A token no key decrypts stays as it is, fail closed: its pages say to paste it again.
    Answers (re-encrypted, unreadable); a second run finds nothing to do."""
    primary = crypto.primary_key_id()
    moved = unreadable = 0
    for pk in list(SegmentToken.objects.exclude(token_key_id=primary).values_list("pk", flat=True)):
        with transaction.atomic():
            row = SegmentToken.objects.select_for_update().filter(pk=pk).exclude(token_key_id=primary).first()
            if row is None:
                continue
            try:
                plaintext = row.token()
            except crypto.CredentialUnreadable:
                unreadable += 1
                continue
            row.set_token(plaintext)
            row.save(update_fields=["token_encrypted", "token_key_id", "token_last4", "updated_at"])
            moved += 1
    return moved, unreadable


def public_api_calls_trim(*, batch_size: int = 5000) -> int:
    """Forget Public API calls older than SEGMENT_PUBLIC_API_CALL_RETENTION_DAYS, in batches so
    no transaction holds many rows; answers how many went. Safe to run twice."""
    cutoff = timezone.now() - timedelta(days=settings.SEGMENT_PUBLIC_API_CALL_RETENTION_DAYS)
    return delete_in_chunks(PublicApiCall.objects.filter(created_at__lt=cutoff), chunk=batch_size)


# --- picking a source -----------------------------------------------------------------------


def segment_source_pick(*, actor: Actor, workspace: Workspace, source_id: str, name: str = "") -> Connection:
    """Connect the Segment source `source_id` with the write key Segment gives for it; then the
    usual check runs (connection_create). Raises NoWriteKey when Segment withholds the key."""
    require_manager(actor, workspace, to="manage the Segment workspace")
    api, row = _api_of(workspace)
    try:
        source = api.source(source_id, cached=False)
    except PublicApiError as error:
        raise ValidationError(_source_error(error)) from None
    if not source.write_keys:
        raise NoWriteKey(
            f"Segment did not give this token the write key of “{source.name}”: the token lacks the Source Admin "
            "role on it. Paste the write key below, or give the token Source Admin in Segment and pick again.")
    with transaction.atomic():
        connection = connection_services.connection_create(
            actor=actor, workspace=workspace, name=(name.strip() or source.name)[:80], region=row.region,
            write_key=source.write_keys[0])
        SegmentSource.objects.create(connection=connection, source_id=source.id, name=source.name[:200],
                                     key_fingerprint=connection.write_key_fingerprint)
        audit_record(actor=actor, action=AuditAction.SEGMENT_SOURCE_PICKED, workspace=workspace, target=connection,
                     details={"segment_source_id": source.id, "segment_source": source.name,
                              "key": connection.masked_key})
    return connection


def segment_source_find(*, connection: Connection, budget: Budget | None = None) -> SegmentSource | None:
    """The connection's Segment source: picked, or found among the Segment workspace's sources
    by the connection's write key and then remembered (not audited: it records a fact Segment
    stated and changes nothing the user set). None when Segment has no such source."""
    link = source_link_for_connection(connection=connection)
    if link is not None:
        return link
    fingerprint = connection.write_key_fingerprint
    for source in api_for_workspace(workspace=connection.workspace, budget=budget).sources().items:
        if any(crypto.fingerprint(key) == fingerprint for key in source.write_keys):
            with transaction.atomic():
                # A link made for a replaced write key goes; the current key's source replaces it.
                SegmentSource.objects.filter(connection=connection).delete()
                return SegmentSource.objects.create(connection=connection, source_id=source.id,
                                                    name=source.name[:200], key_fingerprint=fingerprint)
    return None


# --- labels ---------------------------------------------------------------------------------


def segment_label_add(*, actor: Actor, connection: Connection, label: str) -> list[Label]:
    """Add an existing label of the Segment workspace to the connection's source."""
    workspace = connection.workspace
    require_manager(actor, workspace, to="manage the Segment workspace")
    wanted = _parse_label(label, field="label")
    api, _ = _api_of(workspace)
    link = _link_of(connection)
    try:
        known = api.labels()
    except PublicApiError as error:
        raise ValidationError({"label": error.message}) from None
    if wanted not in known:
        raise ValidationError({"label": f"There is no label “{wanted}” in your Segment workspace. Create it first "
                                        "(that needs a token with the Workspace Owner role)."})
    try:
        labels = api.add_labels(link.source_id, [wanted])
    except PublicApiError as error:
        raise ValidationError({"label": _source_error(error)}) from None
    audit_record(actor=actor, action=AuditAction.SEGMENT_LABEL_ADDED, workspace=workspace, target=connection,
                 details={"segment_source_id": link.source_id, "label": str(wanted),
                          "segment_answer": [str(x) for x in labels][:50]})
    return labels


def segment_label_create(*, actor: Actor, connection: Connection, key: str, value: str) -> list[Label]:
    """Create a label in the Segment workspace, then add it to the connection's source."""
    workspace = connection.workspace
    require_manager(actor, workspace, to="manage the Segment workspace")
    wanted = _parse_label(f"{key}:{value}", field="key")
    api, _ = _api_of(workspace)
    _link_of(connection)  # refuse before creating anything for a connection without a source
    try:
        api.create_label(wanted)
    except PublicApiError as error:
        message = error.message
        if error.kind == "unauthorized":
            message = ("Segment refused to create the label: creating labels needs a token with the Workspace Owner "
                       "role (or the token is invalid or revoked).")
        raise ValidationError({"key": message}) from None
    audit_record(actor=actor, action=AuditAction.SEGMENT_LABEL_CREATED, workspace=workspace, target=connection,
                 details={"label": str(wanted)})
    return segment_label_add(actor=actor, connection=connection, label=str(wanted))


def _parse_label(text: str, *, field: str) -> Label:
    key, separator, value = text.strip().partition(":")
    key, value = key.strip(), value.strip()
    if not separator or not key or not value:
        raise ValidationError({field: "A label is a key and a value, for example environment:production."})
    if len(key) > LABEL_PART_MAX or len(value) > LABEL_PART_MAX or any(c.isspace() for c in key):
        raise ValidationError({field: f"Keep the key without spaces and both parts under {LABEL_PART_MAX} characters."})
    return Label(key, value)


# --- deleting the source in Segment ----------------------------------------------------------


def segment_source_delete(*, actor: Actor, connection: Connection, confirm_name: str) -> str:
    """Delete the connection's source in Segment (owners only, the source's name typed to
    confirm), then disable the connection and keep it for its history. Answers Segment's status."""
    workspace = connection.workspace
    if actor.user is None or not Membership.objects.filter(workspace=workspace, user=actor.user,
                                                           role=Role.OWNER).exists():
        raise PermissionDenied("Only owners can delete a source in Segment.")
    api, _ = _api_of(workspace)
    link = _link_of(connection)
    try:
        source = api.source(link.source_id, cached=False)
    except PublicApiError as error:
        raise ValidationError({"confirm_name": _source_error(error)}) from None
    if confirm_name.strip() != source.name:
        raise ValidationError({"confirm_name": f"Type the source's name exactly as Segment shows it: “{source.name}”."})
    try:
        status = api.delete_source(source.id)
    except PublicApiError as error:
        raise ValidationError({"confirm_name": _source_error(error)}) from None
    with transaction.atomic():
        SegmentSource.objects.filter(pk=link.pk).update(deleted_at=timezone.now(), name=source.name[:200])
        connection_services.connection_set_enabled(actor=actor, connection=connection, enabled=False)
        audit_record(actor=actor, action=AuditAction.SEGMENT_SOURCE_DELETED, workspace=workspace, target=connection,
                     details={"segment_source_id": source.id, "segment_source": source.name,
                              "segment_answer": status})
    return status


# --- shared -----------------------------------------------------------------------------------


def _api_of(workspace: Workspace) -> tuple[PublicApi, SegmentToken]:
    row = SegmentToken.objects.filter(workspace=workspace).first()
    if row is None:
        raise ValidationError("Add your Segment workspace's Public API token first (Integrations → Segment workspace).")
    api = api_for(row)
    if api is None:
        raise ValidationError("The stored Segment token cannot be decrypted: paste it again.")
    return api, row


def _link_of(connection: Connection) -> SegmentSource:
    link = source_link_for_connection(connection=connection)
    if link is None or link.deleted_at is not None:
        raise ValidationError("Tributary does not know which Segment source this connection sends to.")
    return link


def _source_error(error: PublicApiError) -> str:
    if error.kind == "not_found":
        return "Segment no longer has this source: it was deleted in Segment meanwhile. Nothing was changed here."
    return error.message
