"""A new secret shown once, after a redirect (Post/Redirect/Get).

The form that makes a secret (a webhook endpoint's signing secret or URL token, a rotation)
answers its POST with a redirect to a plain GET page, and that page shows the secret once. In
the POST's own answer a reload would post the form again (a second endpoint refused as a
duplicate, a second rotation), and the address could not be opened again.

Between the two requests the secret waits in the user's session, encrypted with
FIELD_ENCRYPTION_KEYS as secrets are at rest, so the session store never holds it in plain
text. The first GET takes it out whether or not it is shown; one never fetched is ignored
after KEEP_SECONDS and dropped at the next put. One slot per thing (`key`), so two tabs
making two secrets each get their own.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from django.views.decorators.debug import sensitive_variables

from integrations import crypto

SESSION_KEY = "shown_once"
KEEP_SECONDS = 10 * 60


@dataclass(frozen=True)
class Shown:
    secret: str = field(repr=False)
    details: dict[str, Any] = field(default_factory=dict)


@sensitive_variables("secret")
def shown_once_put(request: HttpRequest, *, key: str, secret: str, **details: str | bool) -> None:
    """Keep `secret` (and a few plain `details` about it, never secret) for the next GET."""
    now = time.time()
    slots = {k: slot for k, slot in request.session.get(SESSION_KEY, {}).items() if slot["until"] > now}
    slots[key] = {"secret": crypto.encrypt(secret), "until": now + KEEP_SECONDS, "details": details}
    request.session[SESSION_KEY] = slots


@sensitive_variables()
def shown_once_take(request: HttpRequest, *, key: str) -> Shown | None:
    """The secret kept under `key`, removed from the session; None when there is none (a reload,
    a second visit, another browser) or it waited too long."""
    slots = dict(request.session.get(SESSION_KEY, {}))
    slot = slots.pop(key, None)
    if slot is None:
        return None
    if slots:
        request.session[SESSION_KEY] = slots
    else:
        del request.session[SESSION_KEY]
    if slot["until"] <= time.time():
        return None
    try:
        return Shown(crypto.decrypt(slot["secret"]), slot["details"])
    except crypto.CredentialUnreadable:  # the key that encrypted it was retired meanwhile
        return None
