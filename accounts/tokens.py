"""The token in a sign-up link: the request's id and an HMAC of what identifies it, so the
link needs nothing stored beside the request and the worker that e-mails it is passed only
the id. A request made again (a new row) or confirmed (deleted) leaves old links dead."""
from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts.models import SignUpRequest

_SALT = "accounts.sign-up-link"


def sign_up_link_lifetime() -> timedelta:
    """As long as an invitation's or a reset's link (PASSWORD_RESET_TIMEOUT, 3 days)."""
    return timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)


def sign_up_token(request: SignUpRequest) -> str:
    return f"{request.pk}-{_signature(request, settings.SECRET_KEY)}"


def sign_up_request_for_token(token: str) -> SignUpRequest | None:
    """The waiting sign-up a link names, or None if the link is malformed, forged, used or
    expired. Links signed with a key in SECRET_KEY_FALLBACKS still work while it is there."""
    pk, _, signature = token.partition("-")
    if not pk.isascii() or not pk.isdigit() or len(pk) > 18 or not signature:
        return None
    request = SignUpRequest.objects.filter(pk=int(pk),
                                           created_at__gt=timezone.now() - sign_up_link_lifetime()).first()
    if request is None:
        return None
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    if not any(constant_time_compare(signature, _signature(request, key)) for key in keys):
        return None
    return request


def _signature(request: SignUpRequest, key: str | bytes) -> str:
    value = f"{request.pk}:{request.email}:{request.created_at.timestamp()}"
    return salted_hmac(_SALT, value, secret=key, algorithm="sha256").hexdigest()[:40]
