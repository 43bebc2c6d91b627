"""Shared fixtures: alice owns a workspace, bob is a member of it, charlie is an outsider
with a workspace of his own. Real database, real broker, real browser."""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from accounts import services
from accounts.audit import Actor
from accounts.models import Membership, Role, User, Workspace

PASSWORD = "correct-horse-battery-staple"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# The browser tests' two sizes: a laptop's, and a phone's (an iPhone 14's CSS pixels).
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def make_user(email: str, workspace_name: str | None = None) -> User:
    """A user, with a workspace they own when `workspace_name` is given."""
    if workspace_name:
        return services.user_sign_up(
            actor=Actor.system(), email=email, password=PASSWORD,
            full_name=email.split("@")[0].capitalize(), workspace_name=workspace_name,
        )
    return User.objects.create_user(email, PASSWORD, full_name=email.split("@")[0].capitalize())


@pytest.fixture
def alice(db: Any) -> User:
    return make_user("alice@example.com", "Alice Analytics")


@pytest.fixture
def workspace(alice: User) -> Workspace:
    return Membership.objects.get(user=alice).workspace


@pytest.fixture
def bob(workspace: Workspace) -> User:
    user = make_user("bob@example.com")
    Membership.objects.create(workspace=workspace, user=user, role=Role.MEMBER)
    return user


@pytest.fixture
def charlie(db: Any) -> User:
    return make_user("charlie@example.com", "Charlie Corp")


@pytest.fixture
def charlie_workspace(charlie: User) -> Workspace:
    return Membership.objects.get(user=charlie).workspace


def login(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice: User) -> Client:
    return login(alice)


@pytest.fixture
def bob_client(bob: User) -> Client:
    return login(bob)


@pytest.fixture
def charlie_client(charlie: User) -> Client:
    return login(charlie)


# --- background work -------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll until `condition` holds (the worker's or the emulator's doing), or fail the test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.05)


@pytest.fixture
def celery_worker(transactional_db: Any) -> Iterator[Any]:
    """A real Celery worker thread consuming the configured broker (Redis in CI, the
    filesystem transport otherwise). Not eager mode: messages really cross the broker."""
    from celery.contrib.testing.worker import start_worker

    from config.celery_app import app

    # Leftovers from an earlier, interrupted run must not reach this test's worker.
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(app.conf.task_default_queue)  # type: ignore[attr-defined]
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10) as worker:
        yield worker


# --- browser -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (its own browser downloads cannot work here)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (.ci/run does).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # around it are still synchronous and safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


# htmx's evalDisallowedError too: an hx-on, trigger filter or js: value it skipped (allowEval is off).
CSP_VIOLATION_MARKS = ("Content Security Policy", "Refused to", "evalDisallowedError")
# Chromium's own console message names the directive only; this one also names the element.
CSP_REPORTER = """document.addEventListener("securitypolicyviolation", (e) => console.error(
  "Content Security Policy violation: " + e.violatedDirective + " at " + e.sourceFile + ":" + e.lineNumber
  + " sample=" + JSON.stringify(e.sample) + " element=" + (e.target && e.target.outerHTML || "").slice(0, 300)));"""


@pytest.fixture
def page(browser: Any, live_server: Any) -> Iterator[Any]:
    """A tab on the live server. Any Content-Security-Policy violation it reports (console or
    uncaught error) fails the test at teardown, so every browser test also checks the policy."""
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.set_default_timeout(10_000)
    context.add_init_script(CSP_REPORTER)
    tab = context.new_page()
    reports: list[str] = []
    tab.on("console", lambda message: reports.append(f"console.{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: reports.append(f"page error: {error}"))
    tab.console_reports = reports  # read (and emptied) by the test proving violations are caught
    yield tab
    context.close()
    violations = [report for report in reports if any(mark in report for mark in CSP_VIOLATION_MARKS)]
    if violations:
        pytest.fail("Content-Security-Policy violations:\n" + "\n".join(violations), pytrace=False)


def sign_in(page: Any, email: str) -> None:
    """Sign in through the login form and wait until the workspace header is shown."""
    from playwright.sync_api import expect

    page.goto("/account/login/")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("header").get_by_test_id("current-workspace")).to_be_visible()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot under artifacts/ (git-ignored) for people to look at."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def both_sizes(page: Any, name: str) -> None:
    """`screenshot` at the tab's desktop size, then as `<name>-phone` at a phone's; the tab is
    left at desktop size."""
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header then sits at the top of the shot
    screenshot(page, name)
    page.set_viewport_size(PHONE)
    screenshot(page, f"{name}-phone")
    page.set_viewport_size(DESKTOP)


@pytest.fixture(autouse=True)
def no_remembered_tracking_plans() -> Iterator[None]:
    """Each process remembers a workspace's tracking plan for seconds, by id; ids repeat between
    tests, so no test may meet another's plan."""
    from integrations.tracking_plans.enforcement import plans_forget_all

    plans_forget_all()
    yield
    plans_forget_all()


# --- Segment emulator ------------------------------------------------------------------


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    """One real emulator process (US and EU listeners) for the session, over HTTP."""
    from segment_emulator.testing import run_emulator

    with run_emulator() as client:
        yield client


@pytest.fixture
def segment(emulator: Any, settings: Any) -> Any:
    """Point the app's Segment settings at the emulator for this test."""
    settings.SEGMENT_API_US = f"{emulator.us_url}/v1"
    settings.SEGMENT_API_EU = f"{emulator.eu_url}/v1"
    settings.SEGMENT_CDN = f"{emulator.cdn_url}/v1"
    settings.SEGMENT_TIMEOUT_SECONDS = 1.0
    return emulator


def mark_checked(connection: Any) -> Any:
    """As a passing check leaves a connection: its key known, delivery allowed. For tests about
    something else; tests of the check itself run it (tests/integrations/relay/test_check_gate.py)."""
    from integrations.models import Connection, Health

    Connection.objects.filter(pk=connection.pk).update(checked_key=connection.cleared_token(), health=Health.HEALTHY)
    connection.refresh_from_db()
    return connection


def new_write_key() -> str:
    """A realistic, unique write key: 32 letters and digits."""
    import secrets

    return secrets.token_hex(16)


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    """Each test starts with an empty cache, so counters kept there (one e-mail a minute per
    address) never carry over from another test. Only the local-memory cache tests use: a
    shared one (CACHE_URL) may hold what is not ours to clear."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    if isinstance(caches["default"], LocMemCache):
        caches["default"].clear()
