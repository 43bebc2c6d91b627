"""The audit log reads as sentences: details in words, targets by name, browsers in short."""
from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from accounts.audit import Actor, audit_record
from accounts.audit_text import sentence, short_user_agent, target_text
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.models import Connection
from tests.accounts.audit_rows import (
    CHROME_LINUX,
    EDGE_WINDOWS,
    FIREFOX_WINDOWS,
    MOMENT,
    ROWS,
    SAFARI_IPHONE,
    seed_audit_rows,
)
from tests.conftest import new_write_key


def row(action: str, details: object, target_type: str = "", target_id: str = "") -> AuditEvent:
    return AuditEvent(action=action, details=details, target_type=target_type, target_id=target_id)


def test_a_moment_reads_as_a_date_and_time() -> None:
    text = sentence(row(AuditAction.CONNECTION_RECOVERED_NOTIFIED, dict(ROWS[0][3])))
    assert text == ("“Production” delivers again after failing from 2 Dec 2026 11:40 UTC until 2 Dec 2026 14:03 UTC, "
                    "14 failed requests (last answer 503 Service Unavailable); e-mailed 2 owners and admins")


def test_an_import_reads_with_its_file_name_and_counts() -> None:
    finished = row(AuditAction.IMPORT_FINISHED, dict(ROWS[2][3]), "importjob", "3")
    assert sentence(finished) == ("orders-2026-11.jsonl: 48,210 events stored, 12 already in the workspace, "
                                  "skipped 7 invalid lines")
    assert target_text(finished) == "import #3 (orders-2026-11.jsonl)"
    uploaded = row(AuditAction.IMPORT_UPLOADED, dict(ROWS[4][3]), "importjob", "3")
    assert sentence(uploaded) == "orders-2026-11.jsonl (JSONL, 18.0 MB), to start once checked"


@pytest.mark.parametrize(("action", "details", "expected"), [
    (AuditAction.MEMBER_INVITED, {"email": "dora@example.com", "role": "admin"}, "dora@example.com invited as admin"),
    (AuditAction.MEMBER_INVITATION_ACCEPTED, {"email": "dora@example.com", "role": "member"},
     "dora@example.com chose a password and joined as member"),
    (AuditAction.MEMBER_REMOVED, {"email": "bob@example.com", "role": "member", "left": True},
     "bob@example.com (member) left the workspace"),
    (AuditAction.CONNECTION_KEY_REPLACED,
     {"name": "Production", "region": "us", "key": "•••• k3Yq", "previous_key": "•••• a9Zt", "previous_region": "eu"},
     "“Production”: write key •••• a9Zt → •••• k3Yq, region EU → US"),
    (AuditAction.CONNECTION_CREATED, {"name": "Production", "region": "eu", "key": "•••• k3Yq"},
     "“Production” (EU, write key •••• k3Yq)"),
    (AuditAction.LOCKED_OUT, {"email": "alice@example.com"}, "alice@example.com, after repeated failed sign-ins"),
    (AuditAction.SIGN_UP_EXISTING, {"email": "dora@example.com", "invited": True},
     "dora@example.com: its owner was e-mailed a link to claim the account"),
    (AuditAction.CONNECTION_EVENTS_EXPIRED, {"events": 1, "max_age_hours": 72},
     "1 undelivered event passed the maximum age of 72 hours and became dead letters"),
    (AuditAction.DEAD_LETTERS_DISCARDED, {"connection": "Production", "selection": [4, 5, 6], "dead_letters": 3},
     "3 dead letters of “Production”, 3 chosen dead letters (ids 4, 5, 6)"),
    (AuditAction.CONNECTION_PAUSED, {"name": "Staging", "region": "eu", "key": "•••• k3Yq", "reason": "Unknown key.",
                                     "told": []},
     "“Staging” (EU, write key •••• k3Yq): Unknown key; not e-mailed (no check had passed yet)"),
    (AuditAction.CONNECTION_PAUSED, {"name": "Staging", "region": "eu", "key": "•••• k3Yq", "reason": "Unknown key.",
                                     "told": [1, 4]},
     "“Staging” (EU, write key •••• k3Yq): Unknown key; e-mailed 2 owners and admins"),
    (AuditAction.CONNECTION_RETRIED_NOW, {"name": "Production", "region": "us", "key": "•••• k3Yq", "failures": 9,
                                          "was_due": "2026-12-02T14:07:30+00:00"},
     "“Production” (US, write key •••• k3Yq): tried again at once after 9 failed requests, instead of at "
     "2 Dec 2026 14:07 UTC"),
])
def test_each_action_reads_as_a_sentence(action: str, details: dict[str, object], expected: str) -> None:
    assert sentence(row(action, details)) == expected


def test_unknown_keys_and_actions_still_read_as_key_and_value() -> None:
    assert sentence(row("future.thing", {"until": MOMENT, "skipped_invalid": 3, "dry_run": False})) == (
        "until: 2 Dec 2026 14:03 UTC; skipped invalid lines: 3; dry run: no")
    assert sentence(row(AuditAction.MEMBER_ADDED, {"email": "x@example.com", "role": "member", "via": "api"})) == (
        "x@example.com as member; via: api")
    assert sentence(row(AuditAction.LOGGED_IN, {})) == ""
    assert sentence(row("future.thing", ["not", "a", "dict"])) == "details: not, a, dict"


def test_every_action_with_its_usual_details_reads_without_braces_or_codes() -> None:
    for action, target_type, target_id, details in ROWS:
        text = sentence(row(action, dict(details), target_type, target_id))
        assert text and "{" not in text and "_" not in text.replace("tributary-check", ""), (action, text)


@pytest.mark.parametrize(("agent", "expected"), [
    (CHROME_LINUX, "Chrome 131 on Linux"),
    (FIREFOX_WINDOWS, "Firefox 133 on Windows"),
    (SAFARI_IPHONE, "Safari 18 on iOS"),
    (EDGE_WINDOWS, "Edge 131 on Windows"),
    ("curl/8.5.0", "curl 8.5"),
    ("python-requests/2.34.2", "python-requests 2.34"),
    ("python-httpx/0.28.1", "python-httpx 0.28"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile "
     "Safari/537.36", "Chrome 131 on Android"),
    ("SomeMonitoringBot/2.1 (+https://monitor.example.com/about-our-bot)", "SomeMonitoringBot/2.1 (+https://monitor…"),
    ("", ""),
])
def test_a_user_agent_is_shortened_to_browser_and_system(agent: str, expected: str) -> None:
    assert short_user_agent(agent) == expected


def test_the_audit_page_shows_sentences_not_raw_details(alice: User, alice_client: Client,
                                                        workspace: Workspace) -> None:
    seed_audit_rows(workspace, alice)
    page = alice_client.get(reverse("audit_log", args=[workspace.slug])).content.decode()
    assert "import #3 (orders-2026-11.jsonl)" in page
    assert "skipped 7 invalid lines" in page
    assert "until 2 Dec 2026 14:03 UTC" in page
    assert "Chrome 131 on Linux" in page
    assert f'title="{CHROME_LINUX}"' in page  # the whole user agent is one hover away
    assert "skipped_invalid" not in page and "{&#x27;" not in page and "importjob" not in page


def test_the_action_filter_names_every_group_in_words(alice: User, alice_client: Client,
                                                      workspace: Workspace) -> None:
    form = alice_client.get(reverse("audit_log", args=[workspace.slug])).context["form"]
    labels = dict(form.fields["group"].choices)
    assert labels["dead_letter"] == "Dead letters" and labels["auth"] == "Sign-ins and passwords"
    assert all("_" not in label for label in labels.values())
    assert set(labels) == {"", *AuditAction.groups()}


def test_a_connection_row_names_the_connection_even_when_its_details_did_not(
        alice: User, alice_client: Client, workspace: Workspace) -> None:
    actor = Actor(user=alice)
    connection = services.connection_create(actor=actor, workspace=workspace, name="Production", region="us",
                                            write_key=new_write_key())
    services.connection_rename(actor=actor, connection=connection, name="Production EU")
    throttled = audit_record(actor=actor, action=AuditAction.CONNECTION_CHECK_THROTTLED, workspace=workspace,
                             target=connection, details={"retry_in": 40})
    Connection.objects.filter(pk=connection.pk).update(name="Renamed since")
    page = alice_client.get(reverse("audit_log", args=[workspace.slug])).content.decode()
    assert target_text(throttled) == f"connection #{connection.pk} (Production EU)"  # its name at the time
    assert page.count(f"connection #{connection.pk} (Production EU)") == 2  # the rename and the throttled check
    assert "target name:" not in page and "Next check possible in 40 s" in page


def test_an_old_connection_row_without_a_name_falls_back_to_what_it_knows() -> None:
    renamed = row(AuditAction.CONNECTION_RENAMED, {"from": "Prod", "to": "Production"}, "connection", "7")
    assert target_text(renamed) == "connection #7 (Production)"
    throttled = row(AuditAction.CONNECTION_CHECK_THROTTLED, {"retry_in": 40}, "connection", "7")
    assert target_text(throttled) == "connection #7" and sentence(throttled) == "Next check possible in 40 s"
