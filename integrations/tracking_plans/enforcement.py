"""The tracking plan at ingest: each event is checked before it enters the log.

`plan_enforce` is called by every path that appends customer events (the HTTP API, the emit
API, imports, webhooks) with the normalised messages, and returns the ones to append (some
with properties omitted) and the ones it blocked. Its cost:

1. A workspace without a plan pays one dictionary lookup: each process remembers, per
   workspace, the compiled plan (or that there is none) for RECHECK_SECONDS; after that one
   indexed read of the plan's version decides whether to keep it, and only a new version is
   compiled (`schemas.plan_compile`). A save in this process forgets the entry at once;
   every other process sees a change within RECHECK_SECONDS, as with ingest keys.
2. With a plan, an event no rule can apply to (no common rule, a type and name no rule is
   for, not an unplanned track) is not even parsed. Any other is parsed (orjson; the HTTP
   batch API hands over the dicts the normaliser wrote the bodies from, so none is) and asked a
   yes/no of its rule and the common rule (`CompiledRule.passes`: plain Python written from
   the schema, see `lean`); an event that passes with no unplanned property keeps its stored
   bytes and costs no list or record. Only an event that fails is looked at again in full
   (`event_check`), with jsonschema naming each violation.
3. Only when something was found is anything written: blocked events (kept 30 days, with
   their violations) and per-minute violation counts, one statement each, in the caller's
   transaction when there is one.

Violations never fail the request: the API answers 200 and lists blocked events.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from time import monotonic
from typing import Any, NamedTuple

import orjson
from django.db import connection
from django.utils import timezone
from jsonschema.exceptions import ValidationError as SchemaViolation

from integrations.models import BlockedEvent, TrackingPlan, ViolationCount
from integrations.relay.log import Message
from integrations.tracking_plans.forwarding import violation_messages, violations_queue
from integrations.tracking_plans.schemas import SECTIONS, CompiledPlan, CompiledRule, plan_compile

logger = logging.getLogger(__name__)

RECHECK_SECONDS = 5.0
MAX_DESCRIPTION = 200
# How a jsonschema keyword reads as a violation kind (Segment's: missing required, wrong
# type, failed pattern, enum or conditional).
KINDS = {"required": "required", "type": "type", "pattern": "pattern", "enum": "enum", "const": "enum",
         "format": "format", "minimum": "range", "maximum": "range", "exclusiveMinimum": "range",
         "exclusiveMaximum": "range", "minLength": "length", "maxLength": "length", "minItems": "length",
         "maxItems": "length", "additionalProperties": "unplanned"}
KIND_WORDS = {"required": "Missing required", "type": "Wrong type", "pattern": "Failed pattern",
              "enum": "Not an allowed value", "format": "Wrong format", "range": "Out of range",
              "length": "Wrong length", "unplanned": "Unplanned property", "unplanned_event": "Unplanned event",
              "other": "Failed a rule"}

# The event types a rule can be for (identify and group: by type alone).
RULED_TYPES = frozenset({"track", "page", "screen", "identify", "group"})

_plans: dict[int, tuple[float, CompiledPlan | None]] = {}


class Enforced(NamedTuple):
    messages: list[Message]
    # {"messageId", "type", "event", "violations"} per blocked event, for the API's answer.
    blocked: list[dict[str, Any]]


@dataclass
class _Checked:
    message: Message
    event: dict[str, Any]
    violations: list[dict[str, str]]
    blocked: bool = False


def plan_for_workspace(workspace_id: int) -> CompiledPlan | None:
    """The workspace's enabled plan, compiled; None without one (step 1 of the module)."""
    now = monotonic()
    entry = _plans.get(workspace_id)
    if entry is not None and now - entry[0] < RECHECK_SECONDS:
        return entry[1]
    current = TrackingPlan.objects.filter(workspace_id=workspace_id, enabled=True).values_list("pk", "version").first()
    plan: CompiledPlan | None = None
    if current is not None:
        known = entry[1] if entry is not None else None
        if known is not None and (known.plan_id, known.version) == current:
            plan = known
        else:
            plan = _compiled(workspace_id)
    _plans[workspace_id] = (now, plan)
    return plan


def _compiled(workspace_id: int) -> CompiledPlan | None:
    row = TrackingPlan.objects.filter(workspace_id=workspace_id, enabled=True).first()
    if row is None:
        return None
    return plan_compile(plan_id=row.pk, version=row.version, rules=row.rules, unplanned_events=row.unplanned_events,
                        unplanned_properties=row.unplanned_properties, on_violation=row.on_violation,
                        forward_violations_to=row.forward_violations_to_id)


def plan_forget(workspace_id: int) -> None:
    """Drop this process's copy (a save calls it once committed)."""
    _plans.pop(workspace_id, None)


def plans_forget_all() -> None:
    """Drop every remembered plan (tests: workspace ids repeat between them)."""
    _plans.clear()


def plan_enforce(*, workspace_id: int, messages: Sequence[Message], source: str,
                 events: Sequence[dict[str, Any]] | None = None) -> Enforced:
    """The messages to append and the ones the plan blocked (see the module's steps).

    `events`, when given, holds each message's event as `Normaliser.normalised` made it (the
    dict its body was written from), so an event that passes costs no parse; they are the
    caller's to give away (a datetime timestamp is replaced by the text orjson wrote)."""
    plan = plan_for_workspace(workspace_id)
    if plan is None or not messages:
        return Enforced(list(messages), [])
    kept: list[Message] = []
    found: list[_Checked] = []
    blocked: list[_Checked] = []
    given: Sequence[dict[str, Any] | None] = [None] * len(messages) if events is None else events
    for message, event in zip(messages, given, strict=True):
        if event is not None and _given_clean(plan, event):
            kept.append(message)
            continue
        checked = _check(plan, message)
        if checked is None:
            kept.append(message)
            continue
        found.append(checked)
        if checked.blocked:
            blocked.append(checked)
        else:
            kept.append(checked.message)
    if not found:
        return Enforced(kept, [])
    _record(workspace_id, plan, found, blocked, source)
    return Enforced(kept, [{"messageId": c.message.message_id, "type": c.message.type, "event": _key(c.event),
                            "violations": c.violations} for c in blocked])


def event_check(plan: CompiledPlan, event: dict[str, Any]) -> tuple[list[dict[str, str]], bool, list[dict[str, str]]]:
    """(violations, blocked, omitted) for one event as a dict; `event` is changed in place
    when properties are omitted. Used by `plan_enforce` and by the editor's "try an event"."""
    kind = event.get("type", "")
    key = _key(event)
    rule = _rule(plan, event, kind, key)
    violations: list[dict[str, str]] = []
    if rule is None and kind == "track":
        violations.append({"kind": "unplanned_event", "field": "event",
                           "description": f"No rule for the track event {key[:80]!r}."})
        if plan.unplanned_events == "block":
            return violations, True, []
    schema_violations = [*_schema_violations(rule, event), *_schema_violations(plan.common, event)]
    unplanned = _unplanned(rule, event)
    violations.extend(schema_violations)
    violations.extend(unplanned)
    if schema_violations and plan.on_violation == "block":
        return violations, True, []
    omit = list(unplanned) if plan.unplanned_properties == "omit" else []
    if plan.on_violation == "omit":
        omit.extend(schema_violations)
    omitted = _omit(event, omit)
    return violations, False, omitted


def _rule(plan: CompiledPlan, event: dict[str, Any], kind: Any, key: str) -> CompiledRule | None:
    """The rule for the event: the version its context.protocols.event_version names, else
    the highest; None for types no rule is for."""
    if not isinstance(kind, str) or kind not in RULED_TYPES:
        return None
    context = event.get("context")
    protocols = context.get("protocols") if isinstance(context, dict) else None
    version = protocols.get("event_version") if isinstance(protocols, dict) else None
    if version is None:
        return plan.latest.get((kind, key))
    return plan.rule_for(kind, key, version)


def _given_clean(plan: CompiledPlan, event: dict[str, Any]) -> bool:
    """`_clean` of the dict a message's body was written from (see `plan_enforce`), judged as
    the body would be: a datetime timestamp becomes the text orjson wrote. When it is not
    clean, `_check` looks again at the parsed body, so the caller's dict, whose objects are
    shared with the request, is never changed by the full check."""
    if (stamp := event.get("timestamp")).__class__ is datetime:
        event["timestamp"] = orjson.dumps(stamp)[1:-1].decode()
    return _clean(plan, event)


def _check(plan: CompiledPlan, message: Message) -> _Checked | None:
    """None for an event with nothing to report (the common case, kept as it arrived);
    otherwise what was found and the message to append in its place."""
    # An event no rule can apply to is not parsed: no common rule, not a track event (an
    # unplanned one is a violation), and no rule for its type and name. The message's name is
    # the event's whenever that name could be a rule's key (a key has at most 200 characters
    # and no control characters; the name is cut and cleaned only past those), and every
    # (type, key) with a rule is in `latest`, so a miss there means the event has none.
    if plan.common is None and message.type != "track" and (message.type, message.name) not in plan.latest:
        return None
    event = orjson.loads(message.body)
    if _clean(plan, event):
        return None
    violations, blocked, omitted = event_check(plan, event)
    if not violations:
        return None
    if omitted:
        context = event.get("context") if isinstance(event.get("context"), dict) else {}
        event["context"] = {**context, "violations": omitted}
        message = message._replace(body=orjson.dumps(event))
    return _Checked(message, event, violations, blocked)


def _clean(plan: CompiledPlan, event: dict[str, Any]) -> bool:
    """True when `event_check` would find nothing: its rule and the common rule pass and no
    property is unplanned. The same decisions, without building any list, asked of one
    function per rule (`CompiledPlan.quick`); a track event naming no rule version (nearly
    all) finds that function with one look-up of its name."""
    kind = event.get("type", "")
    if kind == "track":
        name, context = event.get("event"), event.get("context")
        if name.__class__ is str and not (context.__class__ is dict and "protocols" in context):
            quick = plan.track_quick.get(name)
            if quick is None:
                rule = plan.latest.get(("track", name))
                if rule is None:
                    return False
                quick = plan.track_quick[name] = plan.quick(rule)
        else:
            rule = _rule(plan, event, kind, _key(event))
            if rule is None:
                return False
            quick = plan.quick(rule)
    else:
        rule = _rule(plan, event, kind, _key(event))
        if rule is None:
            return plan.common is None or plan.common.passes(event)
        quick = plan.quick(rule)
    try:
        return quick(event)
    except RecursionError:  # a schema that refers to itself without end: let jsonschema say
        return False


def _key(event: dict[str, Any]) -> str:
    kind = event.get("type")
    if kind == "track":
        return str(event.get("event") or "")
    if kind in ("page", "screen"):
        return str(event.get("name") or "")
    return ""


def _schema_violations(rule: CompiledRule | None, event: dict[str, Any]) -> list[dict[str, str]]:
    """Nothing when the compiled check passes (the common case, several times faster than
    jsonschema); otherwise what jsonschema finds wrong (nothing, if jsonschema disagrees)."""
    if rule is None or rule.passes(event):
        return []
    try:
        return [_violation(error) for error in rule.validator.iter_errors(event)]
    except RecursionError:
        return [{"kind": "other", "field": "", "description": "The rule's schema refers to itself without end."}]


def _violation(error: SchemaViolation) -> dict[str, str]:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        path.append(missing[0] if missing else "?")
    return {"kind": KINDS.get(str(error.validator), "other"), "field": ".".join(path)[:200],
            "description": error.message[:MAX_DESCRIPTION]}


def _unplanned(rule: CompiledRule | None, event: dict[str, Any]) -> list[dict[str, str]]:
    if rule is None or rule.planned is None:
        return []
    section = SECTIONS.get(rule.type, "properties")
    values = event.get(section)
    if not isinstance(values, dict):
        return []
    return [{"kind": "unplanned", "field": f"{section}.{name}"[:200],
             "description": f"{name[:80]!r} is not in the plan for this event."}
            for name in values if name not in rule.planned]


def _omit(event: dict[str, Any], violations: list[dict[str, str]]) -> list[dict[str, str]]:
    """Remove the top-level property or trait each violation names; the ones removed."""
    omitted: list[dict[str, str]] = []
    done: set[str] = set()
    for violation in violations:
        section, _, rest = violation["field"].partition(".")
        name = rest.split(".", 1)[0]
        values = event.get(section)
        if section not in ("properties", "traits") or not name or not isinstance(values, dict):
            continue
        if name in values and f"{section}.{name}" not in done:
            del values[name]
            done.add(f"{section}.{name}")
            omitted.append({"type": violation["kind"], "field": f"{section}.{name}",
                            "description": violation["description"]})
    return omitted


def _record(workspace_id: int, plan: CompiledPlan, found: list[_Checked], blocked: list[_Checked],
            source: str) -> None:
    now = timezone.now()
    if blocked:
        BlockedEvent.objects.bulk_create([
            BlockedEvent(workspace_id=workspace_id, message_id=c.message.message_id, type=c.message.type,
                         name=_key(c.event)[:200], user_id=c.message.user_id, body=c.message.body,
                         violations=c.violations, plan_version=plan.version, source=source[:40],
                         received_at=c.message.received_at, blocked_at=now)
            for c in blocked])
        logger.info("tracking_plan.blocked", extra={"workspace_id": workspace_id, "count": len(blocked)})
    counts: Counter[tuple[str, str, str, str]] = Counter()
    for c in found:
        for violation in c.violations:
            counts[(c.message.type, _key(c.event)[:200], violation["kind"], violation["field"])] += 1
    violations_count(workspace_id=workspace_id, minute=now.replace(second=0, microsecond=0), counts=counts)
    if plan.forward_violations_to is not None:
        messages = [m for c in found for m in violation_messages(plan_id=plan.plan_id, event=c.event,
                                                                  violations=c.violations)]
        violations_queue(workspace_id=workspace_id, connection_id=plan.forward_violations_to, messages=messages)


def violations_count(*, workspace_id: int, minute: Any, counts: Counter[tuple[str, str, str, str]]) -> None:
    """Add to the minute's counts in one statement (an upsert, so concurrent requests add up)."""
    if not counts:
        return
    table = ViolationCount._meta.db_table
    rows = [(workspace_id, connection.ops.adapt_datetimefield_value(minute), *key, n) for key, n in counts.items()]
    placeholders = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(rows))
    sql = (f"INSERT INTO {table} (workspace_id, minute, event_type, event_name, kind, field, count) "  # noqa: S608
           f"VALUES {placeholders} ON CONFLICT (workspace_id, minute, event_type, event_name, kind, field) "
           f"DO UPDATE SET count = {table}.count + excluded.count")
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])
