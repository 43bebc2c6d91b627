"""The Celery application. Settings come from Django settings prefixed CELERY_."""
from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.schedules import crontab
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("tributary")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Periodic tasks live here, in code, so every deployment runs the same schedule.
app.conf.beat_schedule = {
    "sweep-relay": {
        "task": "integrations.tasks.sweep_relay",
        # With the 5 s lease, a dead worker's connection moves on within about 8 s.
        "schedule": 2.0,
    },
    "relay-retention": {
        "task": "integrations.tasks.relay_retention",
        "schedule": crontab(minute=23),
    },
    "verify-all-connections-daily": {
        "task": "integrations.tasks.verify_all_connections",
        "schedule": crontab(hour=4, minute=7),
    },
    "retry-unfinished-checks": {
        "task": "integrations.tasks.retry_unfinished_checks",
        "schedule": 15.0,
    },
    "expire-stale-verifications": {
        "task": "integrations.tasks.expire_stale_verifications",
        "schedule": 300.0,
    },
    "sweep-imports": {
        "task": "integrations.tasks.sweep_imports",
        "schedule": 15.0,
    },
    "check-delivery-notices": {
        "task": "integrations.tasks.check_delivery_notices",
        "schedule": 60.0,
    },
    "purge-expired-sessions": {
        "task": "accounts.tasks.purge_expired_sessions",
        "schedule": crontab(hour=3, minute=17),
    },
}


@worker_init.connect
def _refuse_unreadable_secrets(**kwargs: Any) -> None:
    """A worker that could not decrypt stored write keys must not start: it would mark every
    healthy connection "Credential unreadable" and pause it.

    Celery's signal dispatch logs an Exception raised by a handler and starts the worker
    anyway, so the refusal is a SystemExit, which it does not catch: the worker exits with
    status 1 before it connects to the broker or forks its pool (the prefork children are
    forked from this process after the check, so they never run without it).
    """
    from django.core.exceptions import ImproperlyConfigured

    from integrations.checks import ensure_encryption_keys

    try:
        ensure_encryption_keys()
    except ImproperlyConfigured as problem:
        # The message names key ids (short hashes) and what to do, never a key.
        raise SystemExit(f"Celery worker refused to start: {problem}") from None
