"""Settings → Integrations pages: who may do what, and what each answer says."""
from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.models import Connection, Health, Outcome, Verification
from tests.conftest import new_write_key


def url(name: str, workspace: Workspace, **kwargs: int) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


@pytest.fixture
def connection(alice: User, workspace: Workspace) -> Connection:
    return services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                      region="us", write_key=new_write_key())


def test_an_owner_connects_a_source_and_lands_on_its_page(alice_client: Client, workspace: Workspace) -> None:
    key = new_write_key()
    response = alice_client.post(url("connection_create", workspace),
                                 {"name": "Production", "write_key": key, "region": "eu"})
    connection = Connection.objects.get()
    assert response["Location"] == url("connection", workspace, pk=connection.pk)
    assert connection.region == "eu" and connection.write_key() == key
    assert connection.latest_verification is not None  # its check is queued
    page = alice_client.get(response["Location"]).content.decode()
    assert f"•••• {key[-4:]}" in page and key not in page


def test_an_invalid_key_is_reported_next_to_the_field_and_not_refilled(alice_client: Client,
                                                                      workspace: Workspace) -> None:
    response = alice_client.post(url("connection_create", workspace),
                                 {"name": "Production", "write_key": "abc def ghi jkl mno", "region": "us"})
    assert response.status_code == 422
    assert "write_key" in response.context["form"].errors
    assert "abc def ghi jkl mno" not in response.content.decode()
    assert not Connection.objects.exists()


def key_form_errors(response: Any, form: str) -> list[str]:
    return list(response.context[form].errors["write_key"])


def write_key_inputs(html: str) -> list[str]:
    return re.findall(r'<input[^>]*name="write_key"[^>]*>', html)


def test_the_write_key_inputs_have_no_browser_limit_that_would_cut_a_paste(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    connect = alice_client.get(url("connection_create", workspace)).content.decode()
    replace = alice_client.get(url("connection_settings", workspace, pk=connection.pk)).content.decode()
    inputs = write_key_inputs(connect) + write_key_inputs(replace)
    assert len(inputs) == 2
    assert not [tag for tag in inputs if "maxlength" in tag]


@pytest.mark.parametrize("length", [129, 5_000])
def test_an_over_long_key_is_refused_by_its_length_and_nothing_is_connected(
        alice_client: Client, workspace: Workspace, length: int) -> None:
    response = alice_client.post(url("connection_create", workspace),
                                 {"name": "Production", "write_key": "a" * length, "region": "us"})
    assert response.status_code == 422
    assert key_form_errors(response, "form") == [
        f"A Segment write key is at most 128 characters; this one has {length:,}. Copy it again from Segment."]
    shown = re.search(r'<ul class="field-errors" id="id_write_key_error">(.*?)</ul>', response.content.decode(), re.S)
    assert shown is not None and f"this one has {length:,}" in shown.group(1)
    assert not Connection.objects.exists()


def test_an_over_long_replacement_key_is_refused_by_its_length_and_the_old_one_kept(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    old_key = connection.write_key()
    response = alice_client.post(url("connection_key", workspace, pk=connection.pk),
                                 {"write_key": "a" * 5_000, "region": "us"})
    assert response.status_code == 422
    assert key_form_errors(response, "key_form") == [
        "A Segment write key is at most 128 characters; this one has 5,000. Copy it again from Segment."]
    connection.refresh_from_db()
    assert connection.write_key() == old_key


@pytest.mark.parametrize(("key", "expected"), [
    ("abc def ghi jkl mno", "A Segment write key has no spaces, line breaks or colons: copy it again from Segment."),
    ("abc:defghijklmnopq", "A Segment write key has no spaces, line breaks or colons: copy it again from Segment."),
    ("short", "A Segment write key is at least 16 characters; this one has 5. Copy the whole key from Segment."),
    ("abcdefghijklmnop!", "A Segment write key has only letters, digits, dots, dashes and underscores: "
                          "copy it again from Segment."),
])
def test_a_malformed_key_gets_one_sentence_on_both_forms(alice_client: Client, workspace: Workspace,
                                                        connection: Connection, key: str, expected: str) -> None:
    connect = alice_client.post(url("connection_create", workspace),
                                {"name": "Staging", "write_key": key, "region": "us"})
    replace = alice_client.post(url("connection_key", workspace, pk=connection.pk),
                                {"write_key": key, "region": "us"})
    assert key_form_errors(connect, "form") == [expected]
    assert key_form_errors(replace, "key_form") == [expected]
    shown = re.search(r'<ul class="field-errors" id="id_write_key_error">(.*?)</ul>', connect.content.decode(), re.S)
    assert shown is not None and shown.group(1).count("<li") == 1 and expected in shown.group(1)


def test_the_same_key_twice_is_refused_with_the_existing_name(alice_client: Client, workspace: Workspace) -> None:
    key = new_write_key()
    alice_client.post(url("connection_create", workspace), {"name": "Production", "write_key": key, "region": "us"})
    response = alice_client.post(url("connection_create", workspace),
                                 {"name": "Staging", "write_key": key, "region": "us"})
    assert response.status_code == 422
    assert "already connected in this workspace as “Production”" in str(response.context["form"].errors)
    assert key not in response.content.decode()


def test_the_flash_after_connecting_does_not_contradict_the_top(alice_client: Client, workspace: Workspace) -> None:
    response = alice_client.post(url("connection_create", workspace),
                                 {"name": "Production", "write_key": new_write_key(), "region": "us"}, follow=True)
    page = response.content.decode()
    assert "“Production” connected." in page and "Checking the key with Segment now" not in page
    assert 'data-testid="health-word">Checking<' in page and "Healthy" not in page


TABS = {"connection": "Overview", "connection_deliveries": "Deliveries", "connection_attempts": "Attempts",
        "dead_letters": "Dead letters", "connection_checks": "Checks", "connection_settings": "Settings"}


@pytest.mark.parametrize("name", list(TABS))
def test_every_tab_is_its_own_page_under_the_same_top(name: str, alice_client: Client, workspace: Workspace,
                                                      connection: Connection) -> None:
    page = alice_client.get(url(name, workspace, pk=connection.pk)).content.decode()
    assert 'data-testid="connection-state"' in page and 'data-testid="connection-tabs"' in page
    current = re.findall(r'<a class="tab" href="([^"]+)" aria-current="page">([^<]+)</a>', page)
    assert current == [(url(name, workspace, pk=connection.pk), TABS[name])]
    for other in TABS:
        assert f'href="{url(other, workspace, pk=connection.pk)}"' in page
    assert page.count("<h1") == 1


def test_the_top_polls_every_second_while_a_check_runs_then_every_five(
        alice_client: Client, workspace: Workspace, connection: Connection, segment: Any) -> None:
    state = url("connection_state", workspace, pk=connection.pk)
    running = alice_client.get(state, {"tab": "checks"}, HTTP_HX_REQUEST="true").content.decode()
    assert running.lstrip().startswith('<section id="connection-state"') and "<html" not in running
    assert f'hx-get="{state}?tab=checks&amp;was=checking" hx-trigger="every 1s"' in running and "Checking the key with Segment" in running
    segment.register_key(connection.write_key(), "us")
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    done = alice_client.get(state, {"tab": "overview"}, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 5s"' in done and ">Healthy<" in done
    # On the Overview tab the overview's body comes along, out of band, with the verdict.
    assert '<div id="overview-body" class="stack overview-body" hx-swap-oob="true">' in done
    assert "Key recognised by Segment" in done


def test_changing_the_region_checks_the_stored_key_there(alice_client: Client, workspace: Workspace,
                                                         connection: Connection) -> None:
    key = connection.write_key()
    response = alice_client.post(url("connection_region", workspace, pk=connection.pk), {"region": "eu"})
    assert response["Location"] == url("connection", workspace, pk=connection.pk)
    connection.refresh_from_db()
    assert connection.region == "eu" and connection.write_key() == key and connection.awaiting_check
    assert connection.latest_verification is not None and connection.latest_verification.trigger == "region_changed"
    audit = AuditEvent.objects.get(action=AuditAction.CONNECTION_REGION_CHANGED)
    assert audit.details["previous_region"] == "us" and key not in str(audit.details)
    page = alice_client.get(response["Location"]).content.decode()
    assert "Region changed from US to EU." in page


def test_a_region_that_is_not_offered_is_refused_next_to_the_field(alice_client: Client, workspace: Workspace,
                                                                  connection: Connection) -> None:
    response = alice_client.post(url("connection_region", workspace, pk=connection.pk), {"region": "asia"})
    assert response.status_code == 422 and "region" in response.context["region_form"].errors
    connection.refresh_from_db()
    assert connection.region == "us"


def test_a_member_cannot_change_the_region(bob_client: Client, workspace: Workspace, connection: Connection) -> None:
    assert bob_client.post(url("connection_region", workspace, pk=connection.pk), {"region": "eu"}).status_code == 403
    connection.refresh_from_db()
    assert connection.region == "us"


def test_the_wrong_region_verdict_links_owners_to_the_region_control(
        alice: User, alice_client: Client, bob_client: Client, workspace: Workspace, segment: Any) -> None:
    key = new_write_key()
    segment.register_key(key, "eu")
    wrong = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                       region="us", write_key=key)
    services.verification_run(verification_id=wrong.latest_verification.pk)  # type: ignore[union-attr]
    page = alice_client.get(url("connection", workspace, pk=wrong.pk)).content.decode()
    assert 'data-testid="health-word">Paused<' in page and "Wrong region" in page
    assert f'href="{url("connection_settings", workspace, pk=wrong.pk)}#region"' in page
    assert "Events are kept and will be sent once a check passes." in page
    settings_page = alice_client.get(url("connection_settings", workspace, pk=wrong.pk)).content.decode()
    assert 'id="region"' in settings_page and 'id="replace-key"' in settings_page
    member = bob_client.get(url("connection", workspace, pk=wrong.pk)).content.decode()
    assert "#region" not in member and "ask alice@example.com" in member


def test_a_member_sees_status_but_no_forms(bob_client: Client, workspace: Workspace,
                                           connection: Connection) -> None:
    listing = bob_client.get(url("index", workspace))
    assert listing.status_code == 200 and b"Production" in listing.content
    assert url("connection_create", workspace).encode() not in listing.content
    for tab in ("connection", "connection_checks", "connection_settings"):
        detail = bob_client.get(url(tab, workspace, pk=connection.pk))
        assert detail.status_code == 200
        assert "rename_form" not in detail.context and "key_form" not in detail.context
        for action in ("connection_rename", "connection_key", "connection_region", "connection_enabled",
                       "connection_delete", "connection_check"):
            assert url(action, workspace, pk=connection.pk).encode() not in detail.content


def test_a_member_cannot_change_a_connection_and_the_attempt_is_audited(bob: User, bob_client: Client,
                                                                       workspace: Workspace,
                                                                       connection: Connection) -> None:
    assert bob_client.get(url("connection_create", workspace)).status_code == 403
    assert bob_client.post(url("connection_enabled", workspace, pk=connection.pk),
                           {"enabled": "false"}).status_code == 403
    assert bob_client.post(url("connection_delete", workspace, pk=connection.pk)).status_code == 403
    connection.refresh_from_db()
    assert connection.enabled
    assert AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED, actor=bob).count() == 3


def test_the_status_panel_is_served_alone_for_polling(alice_client: Client, workspace: Workspace,
                                                      connection: Connection) -> None:
    response = alice_client.get(url("connection_status", workspace, pk=connection.pk), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content


def test_running_a_check_from_the_page_and_being_throttled(alice_client: Client, workspace: Workspace,
                                                           connection: Connection) -> None:
    check = url("connection_check", workspace, pk=connection.pk)
    for _ in range(4):
        assert alice_client.post(check, HTTP_HX_REQUEST="true").status_code == 200
    refused = alice_client.post(check, HTTP_HX_REQUEST="true")
    assert "Too many checks for this connection: try again in" in refused.content.decode()
    assert connection.verifications.count() == 5


def test_replacing_the_key_renaming_and_disabling(alice_client: Client, workspace: Workspace,
                                                  connection: Connection) -> None:
    replacement = new_write_key()
    alice_client.post(url("connection_key", workspace, pk=connection.pk),
                      {"write_key": replacement, "region": "eu"})
    alice_client.post(url("connection_rename", workspace, pk=connection.pk), {"name": "Production EU"})
    alice_client.post(url("connection_enabled", workspace, pk=connection.pk), {"enabled": "false"})
    connection.refresh_from_db()
    assert connection.write_key() == replacement and connection.region == "eu"
    assert connection.name == "Production EU" and not connection.enabled


def test_a_bad_replacement_key_is_reported_on_the_page(alice_client: Client, workspace: Workspace,
                                                       connection: Connection) -> None:
    old_key = connection.write_key()
    response = alice_client.post(url("connection_key", workspace, pk=connection.pk),
                                 {"write_key": "short", "region": "us"})
    assert response.status_code == 422 and "write_key" in response.context["key_form"].errors
    connection.refresh_from_db()
    assert connection.write_key() == old_key


def test_deleting_asks_first_naming_the_connection(alice_client: Client, workspace: Workspace,
                                                   connection: Connection) -> None:
    confirm = alice_client.get(url("connection_delete", workspace, pk=connection.pk))
    assert confirm.status_code == 200 and "Production" in confirm.content.decode()
    assert Connection.objects.filter(pk=connection.pk).exists()
    done = alice_client.post(url("connection_delete", workspace, pk=connection.pk))
    assert done["Location"] == url("index", workspace)
    assert not Connection.objects.filter(pk=connection.pk).exists()


def test_the_list_shows_each_connection_with_its_state(alice_client: Client, workspace: Workspace,
                                                       connection: Connection, settings: Any) -> None:
    page = alice_client.get(url("index", workspace)).content.decode()
    assert "Production" in page and connection.masked_key in page and "US" in page
    assert 'data-testid="health-word" title="Checking the key with Segment' in page  # the same word as its page


def badge(page: str) -> str:
    found = re.search(r'<span class="badge ([\w-]+)" id="enabled-badge"[^>]*>([^<]+)<', page)
    assert found, "no Enabled/Disabled pill"
    return f"{found.group(1)}: {found.group(2)}"


def test_the_pill_and_the_settings_card_agree_with_a_top_that_says_nothing_is_sent(
        alice_client: Client, bob_client: Client, workspace: Workspace, connection: Connection,
        segment: Any) -> None:
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    settings_page = alice_client.get(url("connection_settings", workspace, pk=connection.pk)).content.decode()
    assert ">Paused<" in settings_page
    assert badge(settings_page) == "badge-enabled-stopped: Enabled · paused"
    assert "Sending is on" not in settings_page and "Disable the connection to stop sending" not in settings_page
    assert "Enabled, but nothing is sent" in settings_page
    assert "Nothing is sent until the write key or region is corrected and a check passes" in settings_page
    member = bob_client.get(url("connection_settings", workspace, pk=connection.pk)).content.decode()
    assert "Enabled, but nothing is sent until the write key or region is corrected" in member
    # The top's poll brings the pill along, so it changes when the health does.
    segment.register_key(connection.write_key(), "us")
    services.verification_request(actor=Actor(user=connection.created_by), connection=connection, trigger="manual")
    connection.refresh_from_db()
    polled = alice_client.get(url("connection_state", workspace, pk=connection.pk), {"tab": "settings"},
                              HTTP_HX_REQUEST="true").content.decode()
    assert badge(polled) == "badge-enabled-stopped: Enabled · checking" and 'hx-swap-oob="true"' in polled
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    polled = alice_client.get(url("connection_state", workspace, pk=connection.pk), {"tab": "settings"},
                              HTTP_HX_REQUEST="true").content.decode()
    assert badge(polled) == "badge-enabled: Enabled"
    settings_page = alice_client.get(url("connection_settings", workspace, pk=connection.pk)).content.decode()
    assert "Sending is on" in settings_page and badge(settings_page) == "badge-enabled: Enabled"


def test_the_top_tells_the_banner_when_its_health_changed_so_both_change_together(
        alice_client: Client, workspace: Workspace, connection: Connection, segment: Any) -> None:
    state = url("connection_state", workspace, pk=connection.pk)
    same = alice_client.get(state, {"tab": "settings", "was": "checking"}, HTTP_HX_REQUEST="true")
    assert "HX-Trigger" not in same.headers
    assert f'hx-get="{state}?tab=settings&amp;was=checking"' in same.content.decode()
    services.verification_run(verification_id=connection.latest_verification.pk)  # type: ignore[union-attr]
    changed = alice_client.get(state, {"tab": "settings", "was": "checking"}, HTTP_HX_REQUEST="true")
    assert changed.headers["HX-Trigger"] == "health-changed"
    assert f'hx-get="{state}?tab=settings&amp;was=paused-alert"' in changed.content.decode()
    again = alice_client.get(state, {"tab": "settings", "was": "paused-alert"}, HTTP_HX_REQUEST="true")
    assert "HX-Trigger" not in again.headers
    # The check panel's last answer swaps the top out of band: it tells the banner too.
    panel = alice_client.get(url("connection_status", workspace, pk=connection.pk), HTTP_HX_REQUEST="true")
    assert panel.headers["HX-Trigger"] == "health-changed"
    page = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
    assert 'hx-trigger="every 5s, health-changed from:body"' in page
    assert " hx-on" not in page and "<script>" not in page  # CSP-clean: behaviour stays in app.js


def test_the_delete_page_names_the_state_with_the_health_word_of_every_other_page(
        alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    Verification.objects.filter(connection=connection).update(outcome=Outcome.FAILED, finished_at=timezone.now())
    services.connection_pause(connection_id=connection.pk, health=Health.FAILING,
                              reason="Segment does not recognise this write key.")
    page = alice_client.get(url("connection", workspace, pk=connection.pk)).content.decode()
    confirm = alice_client.get(url("connection_delete", workspace, pk=connection.pk)).content.decode()
    assert 'data-testid="health-word">Paused<' in page
    assert 'data-testid="health-word">Paused<' in confirm and "Needs attention" not in confirm
