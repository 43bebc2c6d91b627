"""How delivery figures read on pages, and the workspace banner the layout shows."""
from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django import template

from integrations.deliveries import duration_text, workspace_attention

register = template.Library()

DASH = "\u2013"  # an en dash: no figure yet


@register.filter
def latency(seconds: float | None) -> str:
    """A latency from the histogram: "85 ms", "1.4 s", "2.5 min"; a dash without deliveries."""
    if seconds is None:
        return DASH
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


@register.filter
def age(span: timedelta | None) -> str:
    """How long ago or how long: "12 s", "4 min", "3 h 5 min", "2 d 4 h"."""
    return DASH if span is None else duration_text(span)


@register.filter
def number(value: int | None) -> str:
    """A count with thousands separators: 12,400."""
    return f"{value or 0:,}"


DAY_STYLES = {"short": "%b {day}", "weekday": "%a, %b {day}", "full": "%a, %b {day}, %Y"}


@register.filter
def day(value: date | None, style: str = "short") -> str:
    """A UTC day on the chart: "Dec 1", "Tue, Dec 1", "Tue, Dec 1, 2026" or "2026-12-01" (iso).
    Django's `date` filter costs about 50 µs a call; the chart formats a hundred days."""
    if value is None:
        return ""
    if style == "iso":
        return value.isoformat()
    return value.strftime(DAY_STYLES[style].format(day=value.day))


@register.filter
def compact(value: int | None) -> str:
    """A count on an axis or a tile: 950, 12,400, 1.2M."""
    value = value or 0
    if value < 100_000:
        return f"{value:,}"
    if value < 1_000_000:
        return f"{value / 1000:.0f}k"
    return f"{value / 1_000_000:.1f}M".replace(".0M", "M")


@register.inclusion_tag("integrations/_deliveries_banner.html", takes_context=True)
def attention_banner(context: dict[str, Any]) -> dict[str, Any]:
    """Every workspace page: the connections that need someone, each linked. Rendered by the
    layout only, so htmx partials (which do not extend it) never pay for it."""
    workspace = context.get("workspace")
    if workspace is None:
        return {"attention": []}
    return {"attention": workspace_attention(workspace=workspace), "workspace": workspace}
