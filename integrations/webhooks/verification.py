"""Is this request from the endpoint's sender? Standard Webhooks signatures, or the URL token.

Signatures are checked by the maintained reference library (`standardwebhooks`): HMAC-SHA256
over `{webhook-id}.{webhook-timestamp}.{raw body}`, every `v1,` signature of the
space-separated header tried, constant-time comparison, ±5 minutes of tolerance. This module
only reads the headers first to name what is wrong in the inbound log, tries the previous
secret during a rotation's overlap, and turns the library's stray exceptions (a body that is
not UTF-8, a signature without a comma, bad base64) into a refusal rather than a 500.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from django.views.decorators.debug import sensitive_variables
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from integrations.models import SignatureVerdict

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
TOLERANCE_SECONDS = 5 * 60  # the reference library's, which does the actual check
MAX_WEBHOOK_ID = 200


@dataclass(frozen=True)
class Verdict:
    verdict: SignatureVerdict
    detail: str = ""
    # The answer's error code when the verdict alone would name the wrong problem: headers
    # that are there but unreadable, a body that is not UTF-8 (both 400, the sender's to fix).
    error: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict in (SignatureVerdict.VERIFIED, SignatureVerdict.VERIFIED_PREVIOUS,
                                SignatureVerdict.URL_TOKEN)


def secret_generate() -> str:
    """A new signing secret: `whsec_` and the base64 of 32 random bytes (the scheme allows 24 to 64)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def url_token_generate() -> str:
    return secrets.token_urlsafe(32)


def url_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def url_token_matches(token: str, stored_hash: str) -> bool:
    return bool(stored_hash) and hmac.compare_digest(url_token_hash(token), stored_hash)


@sensitive_variables("secrets_")
def signature_verify(body: bytes, headers: dict[str, str], secrets_: list[Webhook], *,
                     now: float | None = None) -> Verdict:
    """Check the request with each usable secret (current first) and say what was found.

    `secrets_` are `Webhook` objects of the reference library, built once per secret (see
    `webhook_for`). Header names are matched case-insensitively.
    """
    webhook_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    signature = headers.get("webhook-signature", "")
    missing = [name for name, value in (("webhook-id", webhook_id), ("webhook-timestamp", timestamp),
                                        ("webhook-signature", signature)) if not value]
    if missing:
        return Verdict(SignatureVerdict.MISSING, f"Missing header{'s' if len(missing) > 1 else ''} "
                       f"{', '.join(missing)}: sign the request as Standard Webhooks describes.")
    if len(webhook_id) > MAX_WEBHOOK_ID:
        return Verdict(SignatureVerdict.MISSING, f"webhook-id is longer than {MAX_WEBHOOK_ID} characters.",
                       error="invalid_signature_headers")
    try:
        sent = int(timestamp)
    except ValueError:
        return Verdict(SignatureVerdict.MISSING, "webhook-timestamp must be whole Unix seconds, such as "
                       f"{int(time.time())}.", error="invalid_signature_headers")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as error:
        return Verdict(SignatureVerdict.INVALID, f"The body is not UTF-8 (at byte offset {error.start:,}): Standard "
                       "Webhooks signs UTF-8 JSON.", error="invalid_body")
    skew = sent - int(time.time() if now is None else now)  # whole seconds, exact however large
    if skew < -TOLERANCE_SECONDS:
        return Verdict(SignatureVerdict.STALE, f"webhook-timestamp is {-skew:.0f} s old; at most "
                       f"{TOLERANCE_SECONDS} s are accepted. Sign each attempt with the current time.")
    if skew > TOLERANCE_SECONDS:
        return Verdict(SignatureVerdict.FUTURE, f"webhook-timestamp is {skew:.0f} s in the future; check the "
                       "sender's clock.")
    wanted = {"webhook-id": webhook_id, "webhook-timestamp": timestamp, "webhook-signature": signature}
    for position, webhook in enumerate(secrets_):
        try:
            webhook.verify(body, wanted, json_parse=False)
        except WebhookVerificationError as error:
            if "timestamp" in str(error).lower():  # crossed the edge between our check and the library's
                return Verdict(SignatureVerdict.STALE, f"webhook-timestamp is outside ±{TOLERANCE_SECONDS} s.")
            continue
        except (ValueError, binascii.Error):  # "v1" without a comma, bad base64
            return Verdict(SignatureVerdict.INVALID, "webhook-signature is not a list of `v1,<base64>` "
                           "signatures.")
        return Verdict(SignatureVerdict.VERIFIED if position == 0 else SignatureVerdict.VERIFIED_PREVIOUS)
    return Verdict(SignatureVerdict.INVALID, "No signature matches the endpoint's secret: check the secret the "
                   "sender uses, and that it signs the raw body as sent.")


@sensitive_variables("secret")
def webhook_for(secret: str) -> Webhook:
    return Webhook(secret)


@sensitive_variables("secret")
def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """A `webhook-signature` value for a request (the test console's sample, tests, the bench)."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return f"v1,{base64.b64encode(digest).decode()}"
