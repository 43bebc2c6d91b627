"""The request types views are written against (what django-htmx and the workspace gate add),
and the address a request comes from."""
from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails

from accounts.models import Membership, User, Workspace


class HtmxRequest(HttpRequest):
    """Any request: django-htmx's middleware sets `htmx` on every one (falsy outside htmx)."""

    htmx: HtmxDetails


class AuthenticatedRequest(HtmxRequest):
    """A request that passed `login_required`: its user is signed in, never anonymous."""

    user: User


class WorkspaceRequest(AuthenticatedRequest):
    """A request that passed `workspace_view`: the signed-in user's membership of the URL's
    workspace, and that workspace."""

    workspace: Workspace
    membership: Membership


def client_address(request: HttpRequest) -> str:
    """The address a request comes from: for rate limits, sign-in lockouts and audit rows.

    REMOTE_ADDR, unless settings.TRUSTED_PROXY_COUNT says that many proxies of ours stand in
    front and each appends the address it was reached from to X-Forwarded-For: then the client
    is that many entries from the right. Entries further left are whatever the client wrote,
    so a forged header can neither dodge a limit nor pin it on another address.
    """
    remote = str(request.META.get("REMOTE_ADDR") or "")
    proxies = settings.TRUSTED_PROXY_COUNT
    if proxies <= 0:
        return remote
    hops = [hop.strip() for hop in str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",") if hop.strip()]
    if not hops:
        return remote
    # Fewer entries than proxies: the request joined the chain part-way, and the first entry
    # is the one our first proxy on its path wrote.
    candidate = hops[-proxies] if len(hops) >= proxies else hops[0]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote


# The largest id a database column holds (a signed 64-bit integer). A larger number typed into
# a URL names nothing, and must not reach a query, where SQLite raises OverflowError.
LARGEST_ID = 2**63 - 1


def id_from(value: str | None) -> int:
    """A row id from a query string or form, or 0 (which names no row) for anything that is
    not a whole number a database can hold."""
    text = (value or "").strip()
    if not text.isascii() or not text.isdigit():
        return 0
    number = int(text)
    return number if number <= LARGEST_ID else 0


def ids_from(values: list[str]) -> list[int]:
    """The row ids among `values` (`id_from`), once each, in order; the rest dropped."""
    return list(dict.fromkeys(number for number in map(id_from, values) if number))
