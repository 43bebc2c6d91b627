"""Settings shared by every environment, read from the process environment.

Every value that differs between machines comes from an environment variable (README lists
them all); `.env` at the repository root is read when present, which is how `make run`
keeps its generated local secrets.
"""
from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import django_stubs_ext
import environ
from csp.constants import NONE, SELF

# Generic Django classes (ModelAdmin, Paginator, UploadedFile, …) take type arguments at runtime,
# as mypy --strict wants them written.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# `.env` holds the local secrets `make run` generates. Production takes its configuration from
# the real environment only, so a stray file can never stand in for a missing secret.
_production = os.environ.get("DJANGO_SETTINGS_MODULE", "").endswith(".production")
if not _production and (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Where the embedded defaults keep their files: the SQLite database, the daemon-less broker's
# queue folders and beat's schedule. Git-ignored.
DATA_DIR = Path(env("TRIBUTARY_DATA_DIR", default=str(BASE_DIR / "var")))

DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS: list[str] = env.list("DJANGO_ALLOWED_HOSTS", default=[])
CSRF_TRUSTED_ORIGINS: list[str] = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "csp",
    "axes",
    "accounts",
    "integrations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # After it: an htmx request sent to sign in takes the whole page there, not one panel.
    "accounts.middleware.HtmxSignInRedirect",
    "accounts.middleware.FormOnlyAddressPage",
    # Axes must come last: it inspects the response of a failed login.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.workspaces",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'tributary.sqlite3'}"),
}
DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("DJANGO_CONN_MAX_AGE", default=60))
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: WAL lets readers run beside the writer, IMMEDIATE
    # takes the write lock up front (no deadlocked upgrades), and writers wait their turn.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    # Axes first, so a locked-out address is refused before the password is even checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "accounts:login"

# Login throttling: five failures for one e-mail from one address lock that pair out.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# The client behind our proxies (TRUSTED_PROXY_COUNT), as rate limits and audit rows see it:
# with REMOTE_ADDR alone every sign-in would come from the proxy, and five wrong passwords from
# anywhere would lock the account out for everyone.
AXES_CLIENT_IP_CALLABLE = "accounts.http.client_address"
# Django's login form posts the e-mail as "username"; axes would otherwise look for "email".
AXES_USERNAME_FORM_FIELD = "username"
# Count failures per address, not per spelling: " Victim@Example.Com" is victim@example.com.
AXES_USERNAME_CALLABLE = "accounts.lockout.lockout_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False

SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
SESSION_COOKIE_HTTPONLY = True

# Content-Security-Policy on every response: scripts, styles and everything else come only from
# this origin, nothing inline, nothing evaluated. Pages keep behaviour in static/js/app.js and
# styles in static/css/app.css; htmx runs with allowEval off (base.html), and Django's admin
# needs no exception. A violation fails any browser test (tests/conftest.py).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "connect-src": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="Tributary <no-reply@tributary.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Absolute links in e-mails (invitations, password resets sent by workers) start with this.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# Segment endpoints. Users pick a region; the URLs only ever come from here.
SEGMENT_API_US = env("SEGMENT_API_US", default="https://api.segment.io/v1")
SEGMENT_API_EU = env("SEGMENT_API_EU", default="https://events.eu1.segmentapis.com/v1")
SEGMENT_CDN = env("SEGMENT_CDN", default="https://cdn.segment.com/v1")
SEGMENT_TIMEOUT_SECONDS = env.float("SEGMENT_TIMEOUT_SECONDS", default=10.0)
# Segment's Public API (issue #11: a workspace's token picks sources and reads their state).
SEGMENT_PUBLIC_API_US = env("SEGMENT_PUBLIC_API_US", default="https://api.segmentapis.com")
SEGMENT_PUBLIC_API_EU = env("SEGMENT_PUBLIC_API_EU", default="https://eu1.api.segmentapis.com")
SEGMENT_PUBLIC_API_TIMEOUT_SECONDS = env.float("SEGMENT_PUBLIC_API_TIMEOUT_SECONDS", default=10.0)
# The most a page waits on Segment; slower parts say so in place and offer to try again.
SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS = env.float("SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS", default=8.0)
# How long a read is reused (per token and path), so tabs and reloads do not hammer Segment.
SEGMENT_PUBLIC_API_CACHE_SECONDS = env.int("SEGMENT_PUBLIC_API_CACHE_SECONDS", default=30)
# How long operators can look back at Public API calls in the admin (trimmed daily).
SEGMENT_PUBLIC_API_CALL_RETENTION_DAYS = env.int("SEGMENT_PUBLIC_API_CALL_RETENTION_DAYS", default=30)
# Connection checks a minute per connection: enough for a person, useless as a key oracle.
VERIFICATIONS_PER_MINUTE = env.int("VERIFICATIONS_PER_MINUTE", default=5)

# Relay: how long a delivery run's lease lasts without renewal (it is renewed before every batch
# and every third of this while the run lives). A worker killed mid-batch leaves its lease
# behind; once it lapses the sweeper hands the connection to another worker, which re-sends
# under the same messageIds.
RELAY_LEASE_SECONDS = env.int("RELAY_LEASE_SECONDS", default=5)
# A woken connection's delivery run starts this much later, so events arriving one by one go
# out several to a run (integrations.relay.wake); 0 starts it at once.
RELAY_GATHER_MS = env.int("RELAY_GATHER_MS", default=25)

# An event not delivered to a connection after this long becomes a dead letter for it (kept,
# counted, audited); the log keeps delivered events this long so resent messageIds are
# recognised (Segment's own dedupe window is 24 h).
RELAY_MAX_EVENT_AGE_HOURS = env.int("RELAY_MAX_EVENT_AGE_HOURS", default=7 * 24)
RELAY_RETENTION_HOURS = env.int("RELAY_RETENTION_HOURS", default=24)

# Dead letters one replay sends at most (the oldest in log order); a larger choice is replayed in turns.
DEAD_LETTER_REPLAY_CAP = env.int("DEAD_LETTER_REPLAY_CAP", default=10_000)

# Deliveries: owners and admins are e-mailed (at most once a day per connection) and every
# workspace page shows a banner once a connection has this many dead letters in 24 hours.
DEAD_LETTER_ALERT_THRESHOLD = env.int("DEAD_LETTER_ALERT_THRESHOLD", default=100)
# Operators' token for /metrics, sent as `Authorization: Bearer <token>`; unset, /metrics is a 404.
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# Historical imports: uploaded files and their error reports live here while a job needs them
# (never under static or media, which the web serves). A job holds a lease while a worker runs
# it; a worker killed mid-import leaves it behind, and after this long the job is resumed.
IMPORTS_DIR = Path(env("IMPORTS_DIR", default=str(DATA_DIR / "imports")))
IMPORT_MAX_BYTES = env.int("IMPORT_MAX_BYTES", default=2 * 1024**3)
IMPORT_LEASE_SECONDS = env.int("IMPORT_LEASE_SECONDS", default=60)

# Ingest API: requests a second per ingest key before 429 (kept in the cache below).
INGEST_REQUESTS_PER_SECOND = env.int("INGEST_REQUESTS_PER_SECOND", default=1000)
# Requests with an unknown or revoked ingest key from one client address (IPv6: one /64) in
# a clock minute before that address gets 429 without a database lookup until the minute ends.
INGEST_AUTH_FAILURES_PER_MINUTE = env.int("INGEST_AUTH_FAILURES_PER_MINUTE", default=20)
# How many proxies of ours stand in front of the web processes, each appending to
# X-Forwarded-For; 0 trusts no header and takes REMOTE_ADDR as the client's address.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
# Shared by every process in production (e.g. redis://…/1) so rate limits hold across them.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}

# Write keys are encrypted with these (issue: Connect Segment); the first encrypts, all decrypt.
FIELD_ENCRYPTION_KEYS: list[str] = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# Celery. With no CELERY_BROKER_URL the broker is kombu's filesystem transport, which needs
# no daemon: fine for one machine and `make run`; production sets Redis or RabbitMQ.
def filesystem_broker_options(folder: Path) -> dict[str, object]:
    """Transport options keeping every file of the filesystem broker under `folder`."""
    for name in ("queue", "processed", "control"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


# The embedded broker names its (notional) host, so kombu does not warn at every start that
# none was given.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="") or "filesystem://localhost//"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(DATA_DIR / "broker")
else:
    # Redis redelivers an unacknowledged message after this long; every task time limit
    # below is far shorter, so a late-acked task is never handed to a second worker while
    # the first is still running it. RabbitMQ (amqp://) ignores the option: it redelivers as
    # soon as the holder's connection closes, and closes a channel that holds a message
    # unacknowledged past its consumer_timeout (30 min by default), also far above them.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Pool processes per worker (the `--concurrency` option overrides it). A delivery run mostly
# waits, on Segment and on commits, so more processes than cores keep every connection's turn
# short while one tenant's backlog or a burst of ingest holds the CPU: bench/fairness.py
# measured the other tenants' p99 at 3.2 s with 3 processes on 2 cores and 1.6 s with 8.
# Cores this process may run on, as config.serve and config.work count them (fewer than the
# machine's under CPU pinning, a container's cpuset or taskset).
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=4 * CORES)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Keep Django's LOGGING in workers too, so structured `extra` fields survive in their logs.
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Reuse a worker's database connection across tasks instead of reconnecting for each one.
CELERY_DB_REUSE_MAX = 100

LOGGING: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "keyvalue": {"()": "config.logging.KeyValueFormatter"},
        "django.server": {"()": "django.utils.log.ServerFormatter", "format": "[{server_time}] {message}",
                          "style": "{"},
    },
    # No path's secret segment (a reset, sign-up or webhook URL token) reaches a log line.
    "filters": {"secret_free_paths": {"()": "config.logging.SecretFreePaths"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "keyvalue", "filters": ["secret_free_paths"]},
        # runserver's access lines (make run), as Django logs them by default, less the secrets.
        "django.server": {"class": "logging.StreamHandler", "formatter": "django.server",
                          "filters": ["secret_free_paths"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"handlers": ["django.server"], "level": "INFO", "propagate": False},
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # urllib3 logs request lines at DEBUG; a CDN lookup's path contains a write key.
        "urllib3": {"level": "WARNING"},
    },
}
