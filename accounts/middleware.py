"""What a page's self-updating parts get once their session has ended."""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import resolve_url


class HtmxSignInRedirect:
    """Sends the whole page to the sign-in page when one of its htmx requests is redirected
    there, instead of letting htmx swap the sign-in page into a panel (a panel that polls
    every few seconds would show one sign-in form per panel, nested).

    The answer is 204 with HX-Redirect, which htmx follows with a full page load; `next` is
    the page the browser shows (HX-Current-URL), not the panel's URL, so signing in again
    lands on that page. Sits after django-htmx's middleware, which tells htmx requests apart.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        htmx = getattr(request, "htmx", None)
        if not htmx or response.status_code not in (301, 302, 303):
            return response
        sign_in = resolve_url(settings.LOGIN_URL)
        if urlsplit(response.get("Location", "")).path != sign_in:
            return response
        page = htmx.current_url_abs_path or "/"
        answer = HttpResponse(status=204)
        answer["HX-Redirect"] = f"{sign_in}?{urlencode({'next': page})}"
        return answer
