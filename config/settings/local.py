"""Settings for `make run` and manual work on one machine."""
from __future__ import annotations

from config.settings.base import *  # noqa: F403
from config.settings.base import DATA_DIR, LOGGING, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)
# `make run` writes a random key to .env; this fallback only serves a bare `manage.py`.
SECRET_KEY = env("DJANGO_SECRET_KEY", default="local-only-insecure-key-never-used-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

# `make run` starts the emulator on these ports; Segment itself is never contacted locally.
SEGMENT_API_US = env("SEGMENT_API_US", default="http://127.0.0.1:9100/v1")
SEGMENT_API_EU = env("SEGMENT_API_EU", default="http://127.0.0.1:9101/v1")
SEGMENT_CDN = env("SEGMENT_CDN", default="http://127.0.0.1:9100/v1")
SEGMENT_PUBLIC_API_US = env("SEGMENT_PUBLIC_API_US", default="http://127.0.0.1:9100")
SEGMENT_PUBLIC_API_EU = env("SEGMENT_PUBLIC_API_EU", default="http://127.0.0.1:9101")

DATA_DIR.mkdir(parents=True, exist_ok=True)

# Static files come straight from the app folders (no collectstatic outside production).
STATIC_ROOT = None  # type: ignore[assignment]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# `make run`'s console: beat's every-few-seconds sweeps stay out unless they fail, so the demo
# login and the e-mails the console backend prints are not buried. Production and tests keep
# every line (operators and the fault tests read them).
LOGGING = {
    **LOGGING,
    "filters": {**LOGGING["filters"], "routine_tasks": {"()": "config.logging.RoutineTasksFilter"}},
    "handlers": {**LOGGING["handlers"],
                 "console": {"class": "logging.StreamHandler", "formatter": "keyvalue",
                             "filters": ["secret_free_paths", "routine_tasks"]}},
}
