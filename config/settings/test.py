"""Settings for the test suite: PostgreSQL and Redis when their URLs are set, else SQLite and
the filesystem broker in a throw-away folder."""
from __future__ import annotations

import tempfile
from pathlib import Path

from config.settings.base import *  # noqa: F403
from config.settings.base import CELERY_BROKER_URL, DATABASES, env, filesystem_broker_options

SECRET_KEY = "test-only-key-4c1f9e7a2b8d6e0f3a5c7b9d1e2f4a6c8b0d2e4f6a8c0b2d"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
DEBUG = False

# Fast hashing: the suite creates many users; production keeps Django's default (PBKDF2).
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

# Worker and beat processes started by a test share its folder through this variable.
_scratch = Path(env("TRIBUTARY_TEST_SCRATCH", default="") or tempfile.mkdtemp(prefix="tributary-test-"))
# Worker and live-server threads close their connections after each task or request, so the
# test database can be dropped at the end of the run.
DATABASES["default"]["CONN_MAX_AGE"] = 0
CELERY_DB_REUSE_MAX = 0
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file rather than shared-cache memory: worker and live-server threads then wait on
    # SQLite's file lock instead of failing with "database table is locked".
    DATABASES["default"]["TEST"] = {"NAME": str(_scratch / "test.sqlite3")}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(_scratch / "broker")
CELERY_BEAT_SCHEDULE_FILENAME = str(_scratch / "celerybeat-schedule")
# Import files too, so no test (nor its beat) ever sees or tidies var/imports.
IMPORTS_DIR = _scratch / "imports"

FIELD_ENCRYPTION_KEYS = env.list(
    "FIELD_ENCRYPTION_KEYS", default=["nYlqkUQ8vkg0cG6u2vKJxQmVd5GQy4h2b3Yw8pRz1Jk="]
)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Static files come straight from the app folders (no collectstatic outside production).
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
