"""Refuse to start any process that could not read the secrets stored in the database.

Registered as a Django system check (runserver, migrate and every management command run
it) and called at start-up by the WSGI/ASGI entry points and the Celery worker, which do not.
"""
from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from integrations import crypto


def encryption_key_errors() -> list[CheckMessage]:
    try:
        ring = crypto.keyring()
    except ImproperlyConfigured as problem:
        return [Error(str(problem), id="integrations.E001")]
    try:
        from integrations.models import Connection

        needed = set(Connection.objects.values_list("write_key_key_id", flat=True).distinct())
    except DatabaseError:
        return []  # not migrated yet: nothing stored, nothing to read
    missing = sorted(needed - set(ring))
    if not missing:
        return []
    return [Error(
        f"Stored write keys are encrypted with key id(s) {', '.join(missing)}, which FIELD_ENCRYPTION_KEYS "
        "does not contain.",
        hint="Give this process the same FIELD_ENCRYPTION_KEYS as the web processes and workers that "
             "stored them; if a key was retired, put it back at the end of FIELD_ENCRYPTION_KEYS, run "
             "`manage.py rotate_encryption_keys`, then remove it.",
        id="integrations.E002",
    )]


@register("integrations")
def check_encryption_keys(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    return encryption_key_errors()


def ensure_encryption_keys() -> None:
    """Raise at process start when stored values would be unreadable."""
    errors = encryption_key_errors()
    if errors:
        raise ImproperlyConfigured(" ".join(f"{e.msg} {e.hint or ''}".strip() for e in errors))
