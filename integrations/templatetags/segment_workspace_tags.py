"""Small filters for the Segment workspace pages."""
from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def thousands(value: Any) -> str:
    """12345 → "12,345"; anything not a number as it is."""
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return "" if value is None else str(value)


@register.filter
def metric_word(name: str) -> str:
    return {"successes": "Delivered", "discarded": "Discarded", "retried": "Retried",
            "expired": "Expired"}.get(name, name.replace("_", " ").capitalize())
