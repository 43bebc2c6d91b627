"""Operators in the admin: masked keys only, shared keys flagged, actions audited."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.ingest.keys import ingest_key_create, ingest_key_revoke
from integrations.models import Connection, Outcome, Verification
from integrations.selectors.health import connection_state
from tests.conftest import PASSWORD, make_user, mark_checked, new_write_key, screenshot
from tests.integrations.support import dead_letter


@pytest.fixture
def operator(db: None) -> User:
    user = make_user("ops@tributary.example")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def operator_client(operator: User) -> Client:
    client = Client()
    client.force_login(operator)
    return client


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                      region="eu", write_key=new_write_key())


def test_the_change_page_shows_the_masked_key_and_no_editable_key(operator_client: Client,
                                                                  connection: Connection) -> None:
    page = operator_client.get(reverse("admin:integrations_connection_change", args=[connection.pk]))
    html = page.content.decode()
    assert page.status_code == 200 and connection.masked_key in html
    assert connection.write_key() not in html and connection.write_key_encrypted not in html
    assert 'name="write_key' not in html and connection.write_key_key_id in html


def test_the_list_counts_values_per_encryption_key(operator_client: Client, connection: Connection) -> None:
    html = operator_client.get(reverse("admin:integrations_connection_changelist")).content.decode()
    assert connection.write_key_key_id in html and "encrypts new values" in html


def test_the_list_lets_a_long_workspace_name_wrap_and_shows_the_check_on_lines(
        operator_client: Client, connection: Connection) -> None:
    html = operator_client.get(reverse("admin:integrations_connection_changelist")).content.decode()
    assert '<td class="field-workspace_name">Alice Analytics</td>' in html  # no "nowrap", as a foreign key gets
    assert "column-write_key_key_id" not in html
    run = connection.latest_verification
    assert run is not None
    assert (f'{run.get_outcome_display()}<br><span class="nowrap">{run.created_at:%Y-%m-%d}</span><br>'
            f'{run.created_at:%H:%M} UTC') in html


def test_a_key_connected_in_two_workspaces_is_flagged(operator_client: Client, connection: Connection) -> None:
    charlie = make_user("charlie@example.com", "Charlie Corp")
    services.connection_create(actor=Actor(user=charlie), workspace=charlie.memberships.get().workspace,
                               name="Borrowed", region="eu", write_key=connection.write_key())
    services.connection_create(actor=Actor(user=charlie), workspace=charlie.memberships.get().workspace,
                               name="Own", region="eu", write_key=new_write_key())
    flagged = operator_client.get(reverse("admin:integrations_connection_changelist") + "?shared=yes")
    names = {c.name for c in flagged.context["cl"].result_list}
    assert names == {"Production", "Borrowed"}


def test_admin_actions_go_through_the_services_with_the_operator_as_actor(operator: User, operator_client: Client,
                                                                         connection: Connection) -> None:
    changelist = reverse("admin:integrations_connection_changelist")
    operator_client.post(changelist, {"action": "disable", "_selected_action": [connection.pk]})
    connection.refresh_from_db()
    assert not connection.enabled
    operator_client.post(changelist, {"action": "run_check", "_selected_action": [connection.pk]})
    assert connection.verifications.filter(trigger="operator", requested_by=operator).count() == 1
    disabled = AuditEvent.objects.get(action=AuditAction.CONNECTION_DISABLED)
    assert disabled.actor == operator and disabled.ip == "127.0.0.1"


def test_operators_cannot_add_or_delete_connections(operator_client: Client, connection: Connection) -> None:
    assert operator_client.get(reverse("admin:integrations_connection_add")).status_code == 403
    assert operator_client.post(reverse("admin:integrations_connection_delete", args=[connection.pk]),
                                {"post": "yes"}).status_code == 403
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_the_ingest_key_status_filter_lists_active_and_revoked_keys_apart(
        operator_client: Client, alice: User, workspace: Workspace) -> None:
    actor = Actor(user=alice)
    ingest_key_create(actor=actor, workspace=workspace, name="Kept")
    revoked, _ = ingest_key_create(actor=actor, workspace=workspace, name="Retired")
    ingest_key_revoke(actor=actor, ingest_key=revoked)
    changelist = reverse("admin:integrations_ingestkey_changelist")

    def listed(status: str | None) -> set[str]:
        page = operator_client.get(changelist, {"status": status} if status else {})
        return {key.name for key in page.context["cl"].result_list}

    assert listed("active") == {"Kept"}
    assert listed("revoked") == {"Retired"}
    assert listed(None) == {"Kept", "Retired"}


def test_the_health_filter_and_column_use_the_pages_health_with_its_words(
        operator_client: Client, alice: User, workspace: Workspace, connection: Connection) -> None:
    """A connection whose last check passed but whose dead letters of the last 24 hours are not
    delivered is Degraded on its page; the admin says the same, under the same word."""
    Verification.objects.filter(connection=connection).update(outcome=Outcome.PASSED, finished_at=timezone.now())
    degraded = mark_checked(connection)
    dead_letter(degraded, 1)
    healthy = mark_checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Staging",
                                                      region="eu", write_key=new_write_key()))
    Verification.objects.filter(connection=healthy).update(outcome=Outcome.PASSED, finished_at=timezone.now())
    page = connection_state(connection=degraded, can_manage=True)
    assert page.word == "Degraded"
    changelist = reverse("admin:integrations_connection_changelist")

    by_health = {value: {c.name for c in operator_client.get(f"{changelist}?health={value}").context["cl"].result_list}
                 for value in ("healthy", "degraded")}
    html = operator_client.get(changelist).content.decode()

    assert by_health == {"healthy": {"Staging"}, "degraded": {"Production"}}
    assert "?health=degraded" in html and "Check incomplete" not in html
    assert '<td class="field-health_word">Degraded</td>' in html
    assert '<td class="field-health_word">Healthy</td>' in html
    # The model's column (the last check's verdict) no longer answers under the name "health".
    operator_client.raise_request_exception = False
    assert operator_client.get(f"{changelist}?health__exact=healthy").status_code == 400


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_connection_list_fits_a_1280_px_screen_with_every_column(page: Any, operator: User,
                                                                      connection: Connection) -> None:
    charlie = make_user("charlie@example.com", "Charlie Corp International Holdings")
    services.connection_create(actor=Actor(user=charlie), workspace=charlie.memberships.get().workspace,
                               name="Production analytics for the EU storefront", region="eu",
                               write_key=connection.write_key())
    page.goto(reverse("admin:login"))
    page.get_by_label("E-mail").fill(operator.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.goto(reverse("admin:integrations_connection_changelist"))
    table = page.locator("#result_list")
    expect(table).to_be_visible()
    screenshot(page, "admin-connections")
    # The admin scrolls a wide list inside its box: every column must be in view without that.
    shown = page.locator("#changelist .results").bounding_box()
    assert shown
    for header in ("Name", "Workspace", "Write key", "Health", "Last check", "Shared key"):
        box = table.get_by_role("columnheader", name=header).bounding_box()
        assert box and box["x"] + box["width"] <= shown["x"] + shown["width"] + 0.5, (header, box, shown)
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
