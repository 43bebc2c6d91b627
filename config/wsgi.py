"""WSGI entry point (gunicorn config.wsgi)."""
from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
application = get_wsgi_application()

# Refuse to serve when stored write keys could not be decrypted with the configured keys.
from integrations.checks import ensure_encryption_keys  # noqa: E402

ensure_encryption_keys()
