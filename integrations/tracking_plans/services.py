"""Writes of a workspace's tracking plan: save its rules (from the editor, the simple-rule form
or a Segment export), change its enforcement, release blocked events, forget old ones.

Each write checks everything first (`schemas.plan_check`: shape, size, metaschema, `$ref`,
patterns) and then saves the plan in one row in a transaction with its audit row, so a plan
is never applied half-way; its version moves on, and this process's compiled copy is
forgotten once the transaction commits (others notice within enforcement.RECHECK_SECONDS).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Workspace
from integrations.models import (
    BLOCKED_RETENTION,
    BlockedEvent,
    Connection,
    OnViolation,
    TrackingPlan,
    UnplannedEvents,
    UnplannedProperties,
    ViolationCount,
)
from integrations.relay.log import Message, events_append
from integrations.tracking_plans.enforcement import plan_forget
from integrations.tracking_plans.schemas import MAX_PLAN_BYTES, PlanInvalid, plan_check

VIOLATION_COUNT_RETENTION_DAYS = 8
SIMPLE_TYPES = ("string", "number", "integer", "boolean", "object", "array")


def plan_rules_save(*, actor: Actor, workspace: Workspace, rules: Any, imported: bool = False) -> TrackingPlan:
    """Replace the plan's rules (creating the plan if needed); ValidationError({"rules": …})."""
    try:
        checked = plan_check(rules)
    except PlanInvalid as invalid:
        raise ValidationError({"rules": str(invalid)}) from None
    with transaction.atomic():
        plan = _locked_plan(workspace, actor)
        TrackingPlan.objects.filter(pk=plan.pk).update(rules=checked, version=F("version") + 1,
                                                       updated_at=timezone.now(), updated_by=actor.user)
        plan.refresh_from_db()
        action = AuditAction.TRACKING_PLAN_IMPORTED if imported else AuditAction.TRACKING_PLAN_SAVED
        audit_record(actor=actor, action=action, workspace=workspace, target=plan,
                     details={"rules": len(checked), "version": plan.version})
        _forget(workspace.pk)
    return plan


def plan_import(*, actor: Actor, workspace: Workspace, text: str | bytes, imported: bool = True) -> TrackingPlan:
    """A plan exported from Segment (its `rules`, as the Public API and the export give them:
    `{"rules": [...]}`, `{"data": {"rules": [...]}}`, or the list itself)."""
    if len(text) > MAX_PLAN_BYTES * 2:
        raise ValidationError({"rules": f"The file is larger than {MAX_PLAN_BYTES * 2 // 1024} KB; a plan may be "
                                        f"at most {MAX_PLAN_BYTES // 1024} KB."})
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ValidationError({"rules": f"The file is not JSON ({error})."}) from None
    return plan_rules_save(actor=actor, workspace=workspace, rules=rules_of(document), imported=imported)


def rules_of(document: Any) -> Any:
    if isinstance(document, dict) and isinstance(document.get("data"), dict):
        document = document["data"]
    if isinstance(document, dict) and isinstance(document.get("trackingPlan"), dict) and "rules" not in document:
        document = document["trackingPlan"]
    if isinstance(document, dict):
        if "rules" not in document:
            raise ValidationError({"rules": "The JSON has no \"rules\": export the tracking plan's rules from "
                                            "Segment, or paste a list of {type, key, jsonSchema, version}."})
        return document["rules"]
    return document


def plan_export(*, plan: TrackingPlan | None) -> dict[str, Any]:
    """The plan in Segment's format (what `plan_import` takes back)."""
    return {"name": plan.name if plan else "Tracking plan", "rules": list(plan.rules) if plan else []}


def simple_rule(*, kind: str, key: str, required: list[str], types: dict[str, str]) -> dict[str, Any]:
    """A rule from the form: these properties (or traits) required, these of this type."""
    section = "traits" if kind in ("IDENTIFY", "GROUP") else "properties"
    properties = {name: {"type": kind_} for name, kind_ in types.items() if kind_ in SIMPLE_TYPES}
    for name in required:
        properties.setdefault(name, {})
    inner: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        inner["required"] = required
    schema = {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
              "properties": {section: inner}}
    if required:
        schema["required"] = [section]
    return {"type": kind, "key": key, "version": 1, "jsonSchema": schema}


def plan_rule_put(*, actor: Actor, workspace: Workspace, rule: dict[str, Any]) -> TrackingPlan:
    """Add the rule, or replace the one of the same type, key and version."""
    current = TrackingPlan.objects.filter(workspace=workspace).values_list("rules", flat=True).first() or []
    identity = (rule["type"], rule.get("key") or "", rule.get("version", 1))
    rules = [r for r in current if (r.get("type"), r.get("key") or "", r.get("version", 1)) != identity]
    return plan_rules_save(actor=actor, workspace=workspace, rules=[*rules, rule])


def plan_enforcement_save(*, actor: Actor, workspace: Workspace, enabled: bool, unplanned_events: str,
                          unplanned_properties: str, on_violation: str,
                          forward_violations_to: Connection | None) -> TrackingPlan:
    problems = {}
    if unplanned_events not in UnplannedEvents.values:
        problems["unplanned_events"] = "Choose allow or block."
    if unplanned_properties not in UnplannedProperties.values:
        problems["unplanned_properties"] = "Choose allow or omit."
    if on_violation not in OnViolation.values:
        problems["on_violation"] = "Choose allow, omit or block."
    if forward_violations_to is not None and forward_violations_to.workspace_id != workspace.pk:
        problems["forward_violations_to"] = "Choose a connection of this workspace."
    if problems:
        raise ValidationError(problems)
    values = {"enabled": enabled, "unplanned_events": unplanned_events,
              "unplanned_properties": unplanned_properties, "on_violation": on_violation,
              "forward_violations_to_id": forward_violations_to.pk if forward_violations_to else None}
    with transaction.atomic():
        plan = _locked_plan(workspace, actor)
        before = {key: getattr(plan, key) for key in values}
        TrackingPlan.objects.filter(pk=plan.pk).update(version=F("version") + 1, updated_at=timezone.now(),
                                                       updated_by=actor.user, **values)
        plan.refresh_from_db()
        changed = {key: {"from": before[key], "to": value} for key, value in values.items() if before[key] != value}
        audit_record(actor=actor, action=AuditAction.TRACKING_PLAN_ENFORCEMENT_CHANGED, workspace=workspace,
                     target=plan, details={"changed": changed, "version": plan.version})
        _forget(workspace.pk)
    return plan


def _forget(workspace_id: int) -> None:
    """Drop this process's compiled copy now and again once committed (a request in between
    may have cached the old version)."""
    plan_forget(workspace_id)
    transaction.on_commit(lambda: plan_forget(workspace_id))


def _locked_plan(workspace: Workspace, actor: Actor) -> TrackingPlan:
    plan, _ = TrackingPlan.objects.select_for_update().get_or_create(workspace=workspace,
                                                                      defaults={"updated_by": actor.user})
    return plan


def blocked_release(*, actor: Actor, workspace: Workspace, ids: list[int]) -> int:
    """Append the chosen blocked events to the log as they arrived (the plan is not applied
    again: releasing is the decision to let them through) and mark them released. Returns how
    many were stored (an event whose messageId the log already has is not stored twice)."""
    with transaction.atomic():
        rows = list(BlockedEvent.objects.select_for_update()
                    .filter(workspace=workspace, pk__in=ids, released_at__isnull=True).order_by("pk"))
        if not rows:
            return 0
        messages = [Message(row.type, row.message_id, bytes(row.body), row.name, row.user_id, row.received_at)
                    for row in rows]
        appended = events_append(workspace_id=workspace.pk, messages=messages)
        BlockedEvent.objects.filter(pk__in=[row.pk for row in rows]).update(released_at=timezone.now(),
                                                                           released_by=actor.user)
        audit_record(actor=actor, action=AuditAction.BLOCKED_EVENTS_RELEASED, workspace=workspace,
                     details={"released": len(rows), "stored": appended.stored,
                              "message_ids": [row.message_id for row in rows][:50]})
    return appended.stored


def tracking_plan_expire(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete blocked events past BLOCKED_RETENTION and violation counts past a week and a day
    (the page shows 7 days). For a periodic task; safe to run twice."""
    now = now or timezone.now()
    blocked, _ = BlockedEvent.objects.filter(blocked_at__lt=now - BLOCKED_RETENTION).delete()
    counts, _ = ViolationCount.objects.filter(
        minute__lt=now - timedelta(days=VIOLATION_COUNT_RETENTION_DAYS)).delete()
    return blocked, counts
