"""The Content-Security-Policy: on every response, strict (nothing inline, nothing evaluated), and
no template or template tag writes what it would refuse.

Browser tests enforce it too: the `page` fixture fails a test on any violation Chromium reports.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import Membership, User, Workspace
from integrations import services
from integrations.ingest.keys import ingest_key_create
from tests.conftest import login, new_write_key
from tests.test_tenancy import workspace_urls

ROOT = Path(__file__).resolve().parents[2]
POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
    "base-uri": "'self'",
    "object-src": "'none'",
}

# What a page could carry that the policy refuses, as it appears in template source.
REFUSED = {
    "a style attribute": re.compile(r"""[\s"']style\s*=""", re.IGNORECASE),
    "a <style> element": re.compile(r"<style[\s>]", re.IGNORECASE),
    "an inline <script>": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE),
    "an hx-on attribute": re.compile(r"\bhx-on[:-]", re.IGNORECASE),
    "an inline event handler": re.compile(r"""\son[a-z]+\s*=\s*["']""", re.IGNORECASE),
    "an htmx expression (js:)": re.compile(r"""hx-(?:vals|vars|headers)\s*=\s*["']\s*(?:js|javascript):""",
                                           re.IGNORECASE),
    "an htmx trigger filter": re.compile(r"""hx-trigger\s*=\s*["'][^"']*\[""", re.IGNORECASE),
    "a javascript: URL": re.compile(r"""(?:href|src|action)\s*=\s*["']\s*javascript:""", re.IGNORECASE),
}


def policy_of(response: object) -> dict[str, str]:
    header = response["Content-Security-Policy"]  # type: ignore[index]
    return dict(part.strip().split(" ", 1) for part in header.split(";"))


def page_sources() -> list[Path]:
    """Every template, and the template tags that build HTML in Python."""
    templates = [p for p in (ROOT / "templates").rglob("*.html")]
    for app in ("accounts", "integrations"):
        templates += (ROOT / app).glob("templates/**/*.html")
        templates += (ROOT / app).glob("templatetags/*.py")
    return sorted(templates)


def test_the_policy_is_strict() -> None:
    from django.conf import settings

    directives = settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]
    assert {name: " ".join(values) for name, values in directives.items()} == POLICY
    flat = str(directives)
    assert "unsafe-inline" not in flat and "unsafe-eval" not in flat and "*" not in flat


def test_every_workspace_page_carries_the_policy(alice_client: Client, alice: User, bob: User,
                                                 workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    ingest_key, _ = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Production")
    member_pk = Membership.objects.get(user=bob, workspace=workspace).pk
    paths = workspace_urls(workspace, member_pk, connection.pk, ingest_key.pk)
    assert len(paths) >= 20
    for path in paths:
        # GET only: a POST-only view answers 405, which must carry the policy all the same.
        response = alice_client.get(path)
        assert policy_of(response) == POLICY, f"GET {path} answered {response.status_code} without the policy"


@pytest.mark.parametrize("path", ["/account/login/", "/account/signup/", "/account/password/reset/",
                                  "/no-such-page/", "/admin/login/", "/v1/track", "/static/css/app.css"])
def test_signed_out_pages_static_files_and_the_api_carry_it_too(client: Client, path: str, db: None) -> None:
    response = client.get(path)
    assert policy_of(response) == POLICY, f"GET {path} answered {response.status_code} without the policy"


def test_htmx_fragments_and_errors_carry_it(alice_client: Client, charlie: User, workspace: Workspace) -> None:
    fragment = alice_client.get(reverse("integrations:api_keys", kwargs={"slug": workspace.slug}),
                                HTTP_HX_REQUEST="true")
    assert b"<html" not in fragment.content and policy_of(fragment) == POLICY
    outsider = login(charlie).get(reverse("members", kwargs={"slug": workspace.slug}))
    assert outsider.status_code == 404 and policy_of(outsider) == POLICY


def test_the_admin_keeps_the_same_policy(alice: User) -> None:
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    alice.user_permissions.set(Permission.objects.filter(content_type__app_label__in=["integrations", "accounts"]))
    client = login(alice)
    for path in ("/admin/", "/admin/integrations/connection/", "/admin/accounts/user/"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert policy_of(response) == POLICY, path


@pytest.mark.parametrize("source", page_sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_template_writes_what_the_policy_refuses(source: Path) -> None:
    text = source.read_text()
    if source.suffix == ".html":
        # Comments explain the rules and may name what they forbid.
        text = re.sub(r"{%\s*comment\s*%}.*?{%\s*endcomment\s*%}|{#.*?#}", "", text, flags=re.DOTALL)
    else:
        # In Python only the strings can become markup.
        text = "\n".join(node.value for node in ast.walk(ast.parse(text))
                         if isinstance(node, ast.Constant) and isinstance(node.value, str))
    found = [f"{what}: {match.group(0)!r}" for what, pattern in REFUSED.items() for match in pattern.finditer(text)]
    assert not found, f"{source.relative_to(ROOT)} has " + "; ".join(found)


@pytest.mark.parametrize("markup", [
    '<div class="bar" style="width: 40%">',
    "<style>body { color: red }</style>",
    "<script>alert(1)</script>",
    '<button hx-on:click="go()">',
    '<button hx-on::after-swap="go()">',
    '<a onclick="go()">',
    """<div hx-vals='js:{after: 1}'>""",
    '<div hx-trigger="every 2s [ready()]">',
    '<a href="javascript:go()">',
])
def test_the_template_check_catches_each_refused_form(markup: str) -> None:
    assert any(pattern.search(markup) for pattern in REFUSED.values())


def test_the_template_check_allows_what_the_policy_allows() -> None:
    allowed = ('<script src="/static/js/app.js" defer></script>'
               '<svg viewBox="0 0 10 10"><rect x="1" y="2" width="3" height="4"/></svg>'
               '<div hx-get="/x" hx-trigger="every 2s" data-poll data-fill="40"></div>'
               """<div hx-vals='{"action": "replay"}' data-copy="abc">""")
    assert not [what for what, pattern in REFUSED.items() if pattern.search(allowed)]


def test_the_500_page_takes_its_styles_from_a_file_that_is_served(client: Client, db: None) -> None:
    from django.template.loader import render_to_string

    html = render_to_string("500.html")
    stylesheet = re.search(r'<link rel="stylesheet" href="([^"]+)">', html)
    assert stylesheet and "<style" not in html
    response = client.get(stylesheet.group(1))
    assert response.status_code == 200 and b"body {" in b"".join(response.streaming_content)  # type: ignore[attr-defined]
