"""WSGI entry point (config.serve, the Procfile's web): Django, with the ingest API's POST /v1/* and the
webhook endpoints' POST /webhooks/in/… answered first without the middleware stack
(integrations.ingest.api.wsgi_application, integrations.webhooks.views.wsgi_application)."""
from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.production")
django_application = get_wsgi_application()

# Refuse to serve when stored write keys could not be decrypted with the configured keys.
from integrations.checks import ensure_encryption_keys  # noqa: E402

ensure_encryption_keys()

from integrations.ingest.api import serve, wsgi_application  # noqa: E402
from integrations.webhooks.views import wsgi_application as webhooks_first  # noqa: E402

application = webhooks_first(wsgi_application(django_application), serve)
