"""Writes of destination filters: validate (compile), save in a transaction, audit.

Nothing needs scheduling: the relay reads each connection's filter versions before every
batch, so a change applies to every event not yet sent, from the next batch on.
"""
from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Max

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from integrations.models import MAX_FILTERS_PER_CONNECTION, Connection, DestinationFilter
from integrations.segment.destination_filters import FilterInvalid, FilterSpec, compile_filter

MAX_TITLE = 100


def filter_validate(*, title: str, condition: str, action: str, percent: float | None = None,
                    sample_path: str = "", fields: dict[str, list[str]] | None = None) -> FilterSpec:
    """The filter as the relay will compile it; ValidationError (field → message) otherwise."""
    title = title.strip()
    if not title:
        raise ValidationError({"title": "Give the filter a name, for example: No test users."})
    if len(title) > MAX_TITLE:
        raise ValidationError({"title": f"Keep the name under {MAX_TITLE} characters."})
    spec = FilterSpec(id=0, title=title, condition=condition.strip(), action=action, percent=percent,
                      path=sample_path.strip(), fields=fields or {})
    try:
        compile_filter(spec)
    except FilterInvalid as error:
        raise ValidationError({_field_of(action, str(error)): str(error)}) from None
    return spec


def _field_of(action: str, message: str) -> str:
    if "share of matching events" in message:
        return "percent"
    if any(words in message for words in ("at least one property", "properties in one filter", "without its type",
                                          "not at the top level")):
        return "fields"
    return "condition"


def filter_save(*, actor: Actor, connection: Connection, title: str, condition: str, action: str,
                percent: float | None = None, sample_path: str = "", fields: dict[str, list[str]] | None = None,
                enabled: bool = True, existing: DestinationFilter | None = None) -> DestinationFilter:
    """Create a filter, or change `existing` (its version moves on, so the relay compiles it again)."""
    spec = filter_validate(title=title, condition=condition, action=action, percent=percent,
                           sample_path=sample_path, fields=fields)
    values: dict[str, Any] = {"title": spec.title, "condition": spec.condition, "action": action,
                              "percent": percent if action == "sample" else None,
                              "sample_path": spec.path if action == "sample" else "",
                              "fields": spec.fields if action in ("drop_properties", "allow_properties") else {}}
    try:
        with transaction.atomic():
            if existing is None:
                row = _create(actor, connection, values, enabled)
            else:
                row = _update(actor, connection, existing, values)
    except IntegrityError:
        raise ValidationError({"title": "Another filter of this connection has that name."}) from None
    return row


def _create(actor: Actor, connection: Connection, values: dict[str, Any], enabled: bool) -> DestinationFilter:
    # Lock the connection so two saves cannot both pass the limit.
    Connection.objects.select_for_update().filter(pk=connection.pk).first()
    current = DestinationFilter.objects.filter(connection=connection)
    if current.count() >= MAX_FILTERS_PER_CONNECTION:
        raise ValidationError({"title": f"A connection has at most {MAX_FILTERS_PER_CONNECTION} filters, "
                                        "as in Segment: delete or combine some first."})
    position = (current.aggregate(m=Max("position"))["m"] or 0) + 1
    row = DestinationFilter.objects.create(connection=connection, enabled=enabled, position=position,
                                           created_by=actor.user, **values)
    _audit(actor, connection, row, AuditAction.FILTER_CREATED, values)
    return row


def _update(actor: Actor, connection: Connection, existing: DestinationFilter,
            values: dict[str, Any]) -> DestinationFilter:
    before = {key: getattr(existing, key) for key in values}
    DestinationFilter.objects.filter(pk=existing.pk).update(version=F("version") + 1, **values)
    existing.refresh_from_db()
    changed = {key: {"from": before[key], "to": value} for key, value in values.items() if before[key] != value}
    _audit(actor, connection, existing, AuditAction.FILTER_UPDATED, {"title": existing.title, "changed": changed})
    return existing


def filter_set_enabled(*, actor: Actor, connection: Connection, row: DestinationFilter,
                       enabled: bool) -> DestinationFilter:
    with transaction.atomic():
        DestinationFilter.objects.filter(pk=row.pk).update(enabled=enabled, version=F("version") + 1)
        row.refresh_from_db()
        _audit(actor, connection, row, AuditAction.FILTER_ENABLED if enabled else AuditAction.FILTER_DISABLED,
               {"title": row.title})
    return row


def filter_delete(*, actor: Actor, connection: Connection, row: DestinationFilter) -> None:
    with transaction.atomic():
        _audit(actor, connection, row, AuditAction.FILTER_DELETED,
               {"title": row.title, "condition": row.condition, "action": row.action})
        row.delete()


def _audit(actor: Actor, connection: Connection, row: DestinationFilter, action: AuditAction,
           details: dict[str, Any]) -> None:
    audit_record(actor=actor, action=action, workspace=connection.workspace, target=row,
                 details={"connection": connection.name, "connection_id": connection.pk, **details})
