"""Who is acting, and the one function that writes audit rows.

Services receive an `Actor` so that every row names the person (or the system), the IP and
the user agent, however the change was triggered: a page, the admin, a command or a task.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import models

from accounts.http import client_address
from accounts.models import AuditAction, AuditEvent, Workspace

if TYPE_CHECKING:
    from django.http import HttpRequest

    from accounts.models import User


# Details keys that already name the row's target; `accounts.audit_text.target_text` reads them.
NAME_KEYS = ("file", "name", "connection", "target_name")


@dataclass(frozen=True)
class Actor:
    user: User | None
    ip: str | None = None
    user_agent: str = ""

    @classmethod
    def from_request(cls, request: HttpRequest) -> Actor:
        user = request.user if request.user.is_authenticated else None
        return cls(
            user=user,
            ip=client_address(request) or None,
            user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
        )

    @classmethod
    def system(cls) -> Actor:
        return cls(user=None)


def audit_record(
    *,
    actor: Actor,
    action: AuditAction,
    workspace: Workspace | None = None,
    target: models.Model | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit row. Callers pass only non-secret details. A named target (a
    connection, an ingest key…) whose details do not name it gets its name as it is now
    (`target_name`), so the log still says which one after a rename or a delete."""
    details = dict(details or {})
    name = getattr(target, "name", None)
    # A workspace or user target is the page's own workspace or the actor: the log names neither.
    if (isinstance(name, str) and name and not isinstance(target, Workspace)
            and not any(details.get(key) for key in NAME_KEYS)):
        details["target_name"] = name
    return AuditEvent.objects.create(
        workspace=workspace,
        actor=actor.user,
        actor_email=actor.user.email if actor.user else "",
        action=action,
        target_type=target._meta.model_name or "" if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        ip=actor.ip,
        user_agent=actor.user_agent,
        details=details,
    )
