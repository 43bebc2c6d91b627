"""Segment's settings in sentences, so no page shows a raw flag or enum."""
from __future__ import annotations

from typing import Any

VIOLATIONS = {
    "ALLOW": "let through as they are",
    "BLOCK": "blocked",
    "OMIT_PROPERTIES": "sent without the offending properties",
    "OMIT_TRAITS": "sent without the offending traits",
}
NOT_APPLIED = ("Segment applies these only while a tracking plan is connected to the source; without one they are "
               "not applied.")


def schema_sentences(settings: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(topic, sentences) for the schema settings of a source (`GET /sources/{id}/settings`)."""
    track = _dict(settings.get("track"))
    topics = [("Track events", [
        _choice(track.get("allowUnplannedEvents"), "Events not in the tracking plan are allowed.",
                "Events not in the tracking plan are blocked."),
        _choice(track.get("allowUnplannedEventProperties"), "Properties not in the plan are kept.",
                "Properties not in the plan are omitted."),
        _violations(track.get("commonEventOnViolations"), "Events that break the plan"),
    ])]
    for name, topic in (("identify", "Identify calls"), ("group", "Group calls")):
        part = _dict(settings.get(name))
        topics.append((topic, [
            _choice(part.get("allowUnplannedTraits"), "Traits not in the plan are kept.",
                    "Traits not in the plan are omitted."),
            _violations(part.get("commonEventOnViolations"), "Calls that break the plan"),
        ]))
    topics.append(("Forwarding", [
        _forward(settings.get("forwardingViolationsTo"), "Violations"),
        _forward(settings.get("forwardingBlockedEventsTo"), "Blocked events"),
    ]))
    return [(topic, [s for s in sentences if s]) for topic, sentences in topics]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _choice(value: Any, yes: str, no: str) -> str:
    if value is True:
        return yes
    if value is False:
        return no
    return ""


def _violations(value: Any, subject: str) -> str:
    if not isinstance(value, str):
        return ""
    return f"{subject} are {VIOLATIONS.get(value, value.lower().replace('_', ' '))}."


def _forward(value: Any, subject: str) -> str:
    if isinstance(value, str) and value:
        return f"{subject} are forwarded to the source {value}."
    if isinstance(value, dict) and value.get("sourceId"):
        return f"{subject} are forwarded to the source {value['sourceId']}."
    return f"{subject} are not forwarded."


def masked_settings(settings: dict[str, Any], limit: int = 12) -> list[tuple[str, str]]:
    """A destination's settings as (name, value) lines, as Segment gave them (secrets arrive
    masked as `••••abcd`); nested values are summarised, long ones cut."""
    lines = []
    for name, value in list(settings.items())[:limit]:
        if isinstance(value, dict | list):
            text = f"{len(value)} item{'s' if len(value) != 1 else ''}"
        elif isinstance(value, bool):
            text = "on" if value else "off"
        else:
            text = str(value)
        lines.append((str(name)[:60], text if len(text) <= 80 else text[:79] + "…"))
    return lines
