"""What a page's self-updating parts get once their session has ended."""
from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render, resolve_url


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


class FormOnlyAddressPage:
    """A page instead of the browser's bare "HTTP ERROR 405" when someone opens the address a
    form posts to (a form answered in place leaves it in the address bar; reopening it is a
    GET). It says so and links to the page above, which is where the form lives. Only for
    browsers' page loads of an empty 405: API answers (JSON bodies) are left as they are.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (response.status_code != 405 or request.method != "GET" or response.streaming or response.content
                or getattr(request, "htmx", False) or "text/html" not in request.META.get("HTTP_ACCEPT", "")):
            return response
        back = request.path.rstrip("/").rsplit("/", 1)[0] + "/"
        page = render(request, "405.html", {"back": back}, status=405)
        page["Allow"] = response.get("Allow", "POST")
        return page
