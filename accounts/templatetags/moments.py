"""`{% moment at %}`: a moment in a table cell (date, then time and zone), as one tag.

It stands in for an include with five `date` filters, which cost about 0.2 ms a cell: tables of
fifty rows spent more time on their dates than on their queries.
"""
from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

register = template.Library()


@register.simple_tag
def moment(at: datetime | None) -> SafeString | str:
    if at is None:
        return ""
    local = timezone.localtime(at) if timezone.is_aware(at) else at
    iso = local.isoformat()
    return format_html('<time datetime="{}" title="{}">{} {}, {}<br><span class="muted small">{} {}</span></time>',
                       iso, iso, local.strftime("%b"), local.day, local.year, local.strftime("%H:%M:%S"),
                       local.tzname() or "")
