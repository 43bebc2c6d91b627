"""Sign-in events become audit rows. They belong to the account, not to one workspace."""
from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.audit import Actor, audit_record
from accounts.http import client_address
from accounts.models import AuditAction, User


def _actor(request: HttpRequest | None, user: User | None) -> Actor:
    if request is None:
        return Actor(user=user)
    return Actor(
        user=user,
        ip=client_address(request) or None,
        user_agent=request.META.get("HTTP_USER_AGENT", "")[:512],
    )


@receiver(user_logged_in)
def _logged_in(sender: Any, request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    audit_record(actor=_actor(request, user), action=AuditAction.LOGGED_IN, target=user)


@receiver(user_logged_out)
def _logged_out(sender: Any, request: HttpRequest | None, user: User | None, **kwargs: Any) -> None:
    if user is not None:
        audit_record(actor=_actor(request, user), action=AuditAction.LOGGED_OUT, target=user)


@receiver(user_login_failed)
def _login_failed(sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any) -> None:
    # Only the e-mail that was tried; Django already scrubs the password from `credentials`.
    email = str(credentials.get("username") or credentials.get("email") or "")[:254]
    audit_record(actor=_actor(request, None), action=AuditAction.LOGIN_FAILED, details={"email": email})


@receiver(user_locked_out)
def _locked_out(sender: Any, request: HttpRequest | None, username: str | None = None, **kwargs: Any) -> None:
    audit_record(
        actor=_actor(request, None), action=AuditAction.LOCKED_OUT, details={"email": (username or "")[:254]}
    )
