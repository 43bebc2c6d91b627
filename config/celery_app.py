"""The Celery application. Settings come from Django settings prefixed CELERY_.

It imports nothing of the apps: their tasks are found by autodiscovery once Django is set up,
and the worker's start-up check (integrations.checks) connects itself from the app's ready()."""
from __future__ import annotations

import os

from celery import Celery
from celery.schedules import crontab

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
    "trim-public-api-calls": {
        "task": "integrations.tasks.trim_public_api_calls",
        "schedule": crontab(hour=3, minute=41),
    },
    "purge-expired-sessions": {
        "task": "accounts.tasks.purge_expired_sessions",
        "schedule": crontab(hour=3, minute=17),
    },
}

