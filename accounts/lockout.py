"""What django-axes counts failed sign-ins against: the person, not the spelling.

Axes keys its lockouts on the username it is given. Sign-in matches e-mail addresses
case-insensitively (`UserManager.get_by_natural_key`), so without this `Victim@Example.Com`
would be a fresh counter for the same account, and the right password in a new spelling
would get in during a lockout of `victim@example.com`.
"""
from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def normalised_email(value: object) -> str:
    """The one spelling of an address: surrounding whitespace dropped, lower case."""
    return str(value or "").strip().lower()


def lockout_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """AXES_USERNAME_CALLABLE: the normalised address from the credentials, else the form.

    Axes calls it when it checks a lockout, records a failure and resets after a success, so
    every path (our sign-in page, the admin's, any `authenticate()` call) counts alike.
    """
    field = settings.AXES_USERNAME_FORM_FIELD
    if credentials:
        raw = credentials.get(field)
    elif request is not None:
        raw = getattr(request, "data", request.POST).get(field)
    else:
        raw = None
    return normalised_email(raw) if raw is not None else None
