"""Encryption of secrets at rest with Fernet keys from FIELD_ENCRYPTION_KEYS.

A stored value is `<key id>$<Fernet token>`: the key id (a short hash of the key) names the
key that encrypted it, so an operator can see which keys still protect data before retiring
one. The first configured key encrypts; every configured key can decrypt. A value that cannot
be decrypted raises `CredentialUnreadable`: there is never a fallback to the stored text.
"""
from __future__ import annotations

import hashlib
import hmac
from functools import cache

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.views.decorators.debug import sensitive_variables

SEPARATOR = "$"


class CredentialUnreadable(Exception):
    """The stored secret cannot be decrypted with the configured keys."""


def key_id(key: str) -> str:
    """A public, stable name for a key: the first 8 hex digits of its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


@cache
def _keyring(keys: tuple[str, ...]) -> dict[str, Fernet]:
    if not keys:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS is empty: set at least one Fernet key "
            "(`make .env` writes a local one; production sets its own)."
        )
    ring: dict[str, Fernet] = {}
    for key in keys:
        try:
            ring[key_id(key)] = Fernet(key.encode())
        except (ValueError, TypeError):
            # Never echo the key itself: say which position is wrong.
            position = keys.index(key) + 1
            raise ImproperlyConfigured(
                f"FIELD_ENCRYPTION_KEYS entry {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes)."
            ) from None
    return ring


def keyring() -> dict[str, Fernet]:
    """Configured keys by id, the encrypting (first) key first."""
    return _keyring(tuple(k.strip() for k in settings.FIELD_ENCRYPTION_KEYS if k.strip()))


def primary_key_id() -> str:
    return next(iter(keyring()))


@sensitive_variables()
def encrypt(plaintext: str) -> str:
    kid, fernet = next(iter(keyring().items()))
    return f"{kid}{SEPARATOR}{fernet.encrypt(plaintext.encode()).decode()}"


def stored_key_id(stored: str) -> str:
    return stored.partition(SEPARATOR)[0]


@sensitive_variables()
def decrypt(stored: str) -> str:
    kid, separator, token = stored.partition(SEPARATOR)
    fernet = keyring().get(kid)
    if not separator or fernet is None:
        raise CredentialUnreadable(f"encrypted with key {kid or '?'}, which is not configured")
    try:
        return fernet.decrypt(token.encode()).decode()
    except InvalidToken:
        raise CredentialUnreadable(f"does not decrypt with key {kid}") from None


@sensitive_variables()
def fingerprint(plaintext: str) -> str:
    """A keyed hash to recognise the same secret pasted twice without storing it.

    Keyed with a key derived from SECRET_KEY rather than an encryption key, so rotating
    encryption keys leaves fingerprints intact.
    """
    derived = hashlib.sha256(b"tributary.write-key-fingerprint:" + settings.SECRET_KEY.encode()).digest()
    return hmac.new(derived, plaintext.encode(), hashlib.sha256).hexdigest()
