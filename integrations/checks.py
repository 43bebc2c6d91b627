"""Refuse to start any process that could not read the secrets stored in the database.

Registered as a Django system check (runserver, migrate and every management command run
it) and called at start-up by the WSGI/ASGI entry points and the Celery worker, which do not.
The app's ready() imports this module, which connects the worker's hook.
"""
from __future__ import annotations

from typing import Any

from celery.signals import worker_init
from django.core.checks import CheckMessage, Error, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from integrations import crypto
from integrations.models import Connection


def encryption_key_errors() -> list[CheckMessage]:
    try:
        ring = crypto.keyring()
    except ImproperlyConfigured as problem:
        return [Error(str(problem), id="integrations.E001")]
    try:
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


@worker_init.connect
def refuse_unreadable_secrets(**kwargs: Any) -> None:
    """A worker that could not decrypt stored write keys must not start: it would mark every
    healthy connection "Credential unreadable" and pause it.

    The worker sets Django up (and so imports this module through the app's ready()) before it
    sends worker_init. Celery's signal dispatch logs an Exception raised by a handler and starts
    the worker anyway, so the refusal is a SystemExit, which it does not catch: the worker exits
    with status 1 before it connects to the broker or forks its pool (the prefork children are
    forked from this process after the check, so they never run without it).
    """
    try:
        ensure_encryption_keys()
    except ImproperlyConfigured as problem:
        # The message names key ids (short hashes) and what to do, never a key.
        raise SystemExit(f"Celery worker refused to start: {problem}") from None
