"""Emitting customer events from Python: `from integrations.ingest import emit`.

    emit.track(workspace, "Conversion Triggered", user_id="u1", properties={...})

Every call writes to the workspace's event log inside the caller's transaction (rolled back
with it) and returns True when stored, False when the event was already there (its messageId,
or its `dedupe_key`, was seen before) or the workspace's tracking plan blocked it (kept with
its violations on the Violations page). Invalid input raises `emit.Invalid` with a reason
code. Delivery to every connected Segment source happens after commit, on Celery workers.

`dedupe_key` makes first-time events happen once per workspace: pass
`f"identify:{visitor_id}"` to identify a visitor only when first seen; `experiment_viewed`
and `conversion_triggered` below use it for first assignment and once-per-visitor conversions.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.models import Workspace
from integrations.ingest.messages import Invalid, normalise
from integrations.relay.log import events_append
from integrations.tracking_plans.enforcement import plan_enforce

__all__ = ["Invalid", "alias", "conversion_triggered", "experiment_viewed", "group", "identify", "message", "page",
           "screen", "track"]


def message(workspace: Workspace, call: dict[str, Any], *, dedupe_key: str | None = None) -> bool:
    """Store one Segment-spec message (with its `type`)."""
    normalised = normalise(call, received_at=timezone.now())
    planned = plan_enforce(workspace_id=workspace.pk, messages=[normalised], source="emit").messages
    if not planned:
        return False
    return events_append(workspace_id=workspace.pk, messages=planned, dedupe_keys=[dedupe_key]).stored == 1


def identify(workspace: Workspace, *, user_id: str | None = None, anonymous_id: str | None = None,
             traits: dict[str, Any] | None = None, dedupe_key: str | None = None, **common: Any) -> bool:
    return message(workspace, _message("identify", user_id, anonymous_id, {"traits": traits or {}}, common),
                dedupe_key=dedupe_key)


def track(workspace: Workspace, event: str, *, user_id: str | None = None, anonymous_id: str | None = None,
          properties: dict[str, Any] | None = None, dedupe_key: str | None = None, **common: Any) -> bool:
    return message(workspace, _message("track", user_id, anonymous_id,
                                    {"event": event, "properties": properties or {}}, common), dedupe_key=dedupe_key)


def page(workspace: Workspace, name: str | None = None, *, user_id: str | None = None,
         anonymous_id: str | None = None, properties: dict[str, Any] | None = None,
         dedupe_key: str | None = None, **common: Any) -> bool:
    fields = {"name": name, "properties": properties or {}} if name else {"properties": properties or {}}
    return message(workspace, _message("page", user_id, anonymous_id, fields, common), dedupe_key=dedupe_key)


def screen(workspace: Workspace, name: str | None = None, *, user_id: str | None = None,
           anonymous_id: str | None = None, properties: dict[str, Any] | None = None,
           dedupe_key: str | None = None, **common: Any) -> bool:
    fields = {"name": name, "properties": properties or {}} if name else {"properties": properties or {}}
    return message(workspace, _message("screen", user_id, anonymous_id, fields, common), dedupe_key=dedupe_key)


def group(workspace: Workspace, group_id: str, *, user_id: str | None = None, anonymous_id: str | None = None,
          traits: dict[str, Any] | None = None, dedupe_key: str | None = None, **common: Any) -> bool:
    return message(workspace, _message("group", user_id, anonymous_id, {"groupId": group_id, "traits": traits or {}},
                                    common), dedupe_key=dedupe_key)


def alias(workspace: Workspace, *, previous_id: str, user_id: str, dedupe_key: str | None = None,
          **common: Any) -> bool:
    return message(workspace, _message("alias", user_id, None, {"previousId": previous_id}, common),
                dedupe_key=dedupe_key)


def experiment_viewed(workspace: Workspace, *, experiment_id: str, experiment_name: str, variation_id: str,
                      variation_name: str, user_id: str | None = None, anonymous_id: str | None = None,
                      **common: Any) -> bool:
    """Segment's A/B testing spec event, once per visitor and experiment (first assignment)."""
    visitor = user_id or anonymous_id
    properties = {"experiment_id": experiment_id, "experiment_name": experiment_name,
                  "variation_id": variation_id, "variation_name": variation_name}
    return track(workspace, "Experiment Viewed", user_id=user_id, anonymous_id=anonymous_id, properties=properties,
                 dedupe_key=f"experiment-viewed:{experiment_id}:{visitor}", **common)


def conversion_triggered(workspace: Workspace, *, conversion_id: str, conversion_type: str, origin_url: str,
                         user_id: str | None = None, anonymous_id: str | None = None, once_per_visitor: bool = False,
                         **common: Any) -> bool:
    """A conversion; with `once_per_visitor`, only the visitor's first one is emitted."""
    visitor = user_id or anonymous_id
    properties = {"conversion_id": conversion_id, "conversion_type": conversion_type, "origin_url": origin_url}
    key = f"conversion:{conversion_id}:{visitor}" if once_per_visitor else None
    return track(workspace, "Conversion Triggered", user_id=user_id, anonymous_id=anonymous_id,
                 properties=properties, dedupe_key=key, **common)


def _message(kind: str, user_id: str | None, anonymous_id: str | None, fields: dict[str, Any],
             common: dict[str, Any]) -> dict[str, Any]:
    """Common keyword arguments: message_id, timestamp, context, integrations."""
    unknown = set(common) - {"message_id", "timestamp", "context", "integrations"}
    if unknown:
        raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
    message: dict[str, Any] = {"type": kind, **fields}
    if user_id is not None:
        message["userId"] = user_id
    if anonymous_id is not None:
        message["anonymousId"] = anonymous_id
    timestamp = common.get("timestamp")
    message.update({
        "messageId": common.get("message_id"),
        "timestamp": timestamp.isoformat() if isinstance(timestamp, datetime) else timestamp,
        "context": common.get("context") or {},
        "integrations": common.get("integrations") or {},
    })
    return {k: v for k, v in message.items() if v is not None}
