"""The audit table's words: `{{ event|audit_sentence }}`, `{{ event|audit_target }}`,
`{{ event.user_agent|short_agent }}` (see accounts/audit_text.py)."""
from __future__ import annotations

from django import template

from accounts import audit_text
from accounts.models import AuditEvent

register = template.Library()


@register.filter
def audit_sentence(event: AuditEvent) -> str:
    return audit_text.sentence(event)


@register.filter
def audit_target(event: AuditEvent) -> str:
    return audit_text.target_text(event)


@register.filter
def short_agent(user_agent: str) -> str:
    return audit_text.short_user_agent(user_agent)
