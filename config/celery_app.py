"""The Celery application. Settings come from Django settings prefixed CELERY_."""
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
    "record-worker-heartbeat": {
        "task": "accounts.tasks.record_heartbeat",
        "schedule": 60.0,
    },
    "purge-expired-sessions": {
        "task": "accounts.tasks.purge_expired_sessions",
        "schedule": crontab(hour=3, minute=17),
    },
}
