"""Connection widgets for templates (`{% load connection_tags %}`): words and marks for checks, so
templates never show a raw check code, the top of a connection's tabs, and the workspace's
"needs attention" banner."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

from integrations.selectors.health import connection_state, workspace_attention

register = template.Library()

CHECK_LABELS = {
    "key_format": "Key format",
    "cdn_lookup": "Known to Segment",
    "region": "Region",
    "test_event": "Test event",
    "credential": "Credential",
}
# The mark shown for each status; screen readers get the status word instead.
DASH = "\u2013"  # an en dash, as wide as ✓ and ✕: skipped, whether not run or not confirmed
STATUS_MARKS = {"passed": "✓", "failed": "✕", "skipped": DASH}
STATUS_WORDS = {"passed": "Passed", "failed": "Failed", "skipped": "Skipped"}


@register.filter
def check_label(code: str) -> str:
    return CHECK_LABELS.get(code, code.replace("_", " ").capitalize())


@register.filter
def status_mark(status: str) -> str:
    return STATUS_MARKS.get(status, DASH)


@register.filter
def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status.capitalize())


@register.filter
def any_check_running(connections: Iterable[Any]) -> bool:
    """True while some connection's latest check is still running: the list keeps polling."""
    return any(c.latest_verification is not None and c.latest_verification.is_running for c in connections)


@register.inclusion_tag("integrations/_connection_top.html", takes_context=True)
def connection_top(context: dict[str, Any], tab: str, heading: bool = True) -> dict[str, Any]:
    """The top of a connection's tabs: breadcrumb, name, health box and tab bar. Uses the
    page's `health` when its view derived it already, else derives it (four small reads)."""
    connection = context["connection"]
    membership = context.get("membership")
    health = context.get("health")
    if health is None:
        health = connection_state(connection=connection, can_manage=bool(membership and membership.can_manage))
    return {"connection": connection, "workspace": context.get("workspace"), "membership": membership,
            "health": health, "tab": tab, "heading": heading}


@register.inclusion_tag("integrations/_deliveries_banner.html", takes_context=True)
def attention_banner(context: dict[str, Any]) -> dict[str, Any]:
    """Every workspace page: the connections that need someone, each linked. Rendered by the
    layout only, so htmx partials (which do not extend it) never pay for it."""
    workspace = context.get("workspace")
    if workspace is None:
        return {"attention": []}
    return {"attention": workspace_attention(workspace=workspace), "workspace": workspace}
