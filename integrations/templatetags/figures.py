"""How figures read on pages: counts, latencies, ages and the chart's days (`{% load figures %}`)."""
from __future__ import annotations

from datetime import date, timedelta

from django import template

from integrations.durations import duration_text

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
