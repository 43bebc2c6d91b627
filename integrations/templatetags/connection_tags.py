"""Words and marks for connection checks, so templates never show a raw check code."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template

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
