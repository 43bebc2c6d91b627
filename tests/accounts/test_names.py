"""Names cannot carry line breaks or control characters, and a stored one cannot stop an e-mail.

A CR/LF in a workspace or connection name made every e-mail about it fail (BadHeaderError).
Every form and service that sets a name refuses them with one message; subjects built from
names already stored are made single-line.
"""
from __future__ import annotations

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from accounts import services
from accounts.audit import Actor
from accounts.forms import SignUpForm, WorkspaceForm
from accounts.models import AuditAction, AuditEvent, Role, User, Workspace
from accounts.tasks import send_membership_email
from accounts.validation import NAME_CHARACTERS_MESSAGE, name_problem, one_line
from integrations import notifications
from integrations import services as connections
from integrations.forms import ConnectionForm, IngestKeyForm, RenameForm
from integrations.ingest.keys import ingest_key_create
from integrations.models import Connection
from tests.conftest import new_write_key

BAD_NAMES = [
    "Acme\r\nBcc: everyone@example.com",
    "Acme\nLabs",
    "Acme\tLabs",
    "Acme\x00Labs",
    "Acme\x7fLabs",
    "Acme\x85Labs",  # NEXT LINE, a C1 control
    "Acme\u2028Labs",  # LINE SEPARATOR
    "Invoice \u202egpj.exe",  # RIGHT-TO-LEFT OVERRIDE
    "Acme\u2066Labs",  # LEFT-TO-RIGHT ISOLATE
]
GOOD_NAMES = ["Zoë & Co.", "Café \u2013 München", "日本語チーム", "👩‍👩‍👧 Family Shop", "O'Brien (EU)"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_name_with_a_control_character_is_refused(name: str) -> None:
    assert name_problem(name) == NAME_CHARACTERS_MESSAGE


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_names_in_any_script_and_with_emoji_are_fine(name: str) -> None:
    assert name_problem(name) is None


def test_one_line_turns_every_break_into_one_space() -> None:
    assert one_line("Acme\r\nBcc: x\u2028y\x00z\u202e") == "Acme Bcc: x y z"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_every_name_form_refuses_them_next_to_the_field(name: str, db: None) -> None:
    forms = [
        (SignUpForm({"full_name": name, "email": "e@example.com", "password": "plum-orchard-42",
                     "workspace_name": "Fine"}), "full_name"),
        (SignUpForm({"full_name": "Fine", "email": "e@example.com", "password": "plum-orchard-42",
                     "workspace_name": name}), "workspace_name"),
        (WorkspaceForm({"name": name}), "name"),
        (ConnectionForm({"name": name, "write_key": new_write_key(), "region": "us"}), "name"),
        (RenameForm({"name": name}), "name"),
        (IngestKeyForm({"name": name}), "name"),
    ]
    for form, field in forms:
        assert not form.is_valid()
        # Django's own null-character check may come first; ours must be there too.
        assert NAME_CHARACTERS_MESSAGE in form.errors[field], type(form).__name__


def test_the_account_services_refuse_them(alice: User, workspace: Workspace) -> None:
    bad = "Acme\r\nLabs"
    with pytest.raises(ValidationError) as signing_up:
        services.user_sign_up(actor=Actor.system(), email="erin@example.com", password="plum-orchard-42",
                              full_name=bad, workspace_name=bad)
    assert set(signing_up.value.message_dict) == {"full_name", "workspace_name"}
    with pytest.raises(ValidationError, match="line breaks"):
        services.workspace_create(actor=Actor(user=alice), name=bad)
    with pytest.raises(ValidationError, match="line breaks"):
        services.workspace_rename(actor=Actor(user=alice), workspace=workspace, name=bad)
    assert not User.objects.filter(email="erin@example.com").exists()
    assert set(Workspace.objects.values_list("name", flat=True)) == {"Alice Analytics"}


def test_the_connection_and_ingest_key_services_refuse_them(alice: User, workspace: Workspace) -> None:
    bad = "Production\r\nBcc: everyone@example.com"
    with pytest.raises(ValidationError) as creating:
        connections.connection_create(actor=Actor(user=alice), workspace=workspace, name=bad, region="us",
                                      write_key=new_write_key())
    assert creating.value.message_dict == {"name": [NAME_CHARACTERS_MESSAGE]}
    connection = connections.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                               region="us", write_key=new_write_key())
    with pytest.raises(ValidationError, match="line breaks"):
        connections.connection_rename(actor=Actor(user=alice), connection=connection, name=bad)
    with pytest.raises(ValidationError) as keying:
        ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Web\x00app")
    assert keying.value.message_dict == {"name": [NAME_CHARACTERS_MESSAGE]}
    assert list(Connection.objects.values_list("name", flat=True)) == ["Production"]


def test_the_admin_refuses_them_too(db: None) -> None:
    # The admin's forms are model forms: the model fields carry the same validator.
    with pytest.raises(ValidationError) as checking:
        Workspace(name="Acme\nLabs", slug="acme").full_clean()
    assert checking.value.message_dict == {"name": [NAME_CHARACTERS_MESSAGE]}
    with pytest.raises(ValidationError, match="line breaks"):
        User(email="erin@example.com", full_name="Erin\r\nX", password="!").full_clean()


def test_renaming_the_workspace_shows_the_message_next_to_the_field(alice_client: Client,
                                                                    workspace: Workspace) -> None:
    response = alice_client.post(reverse("workspace_settings", args=[workspace.slug]),
                                 {"name": "Acme\r\nBcc: everyone@example.com"})
    assert response.status_code == 200
    assert response.context["form"].errors == {"name": [NAME_CHARACTERS_MESSAGE]}
    assert NAME_CHARACTERS_MESSAGE in response.content.decode()
    workspace.refresh_from_db()
    assert workspace.name == "Alice Analytics"
    assert not AuditEvent.objects.filter(action=AuditAction.WORKSPACE_RENAMED).exists()


def test_an_invitation_to_a_workspace_stored_with_a_line_break_is_still_sent(alice: User,
                                                                             workspace: Workspace) -> None:
    # A row saved before names were checked: update() skips every validator, as old data did.
    Workspace.objects.filter(pk=workspace.pk).update(name="Acme\r\nBcc: everyone@example.com")
    membership = services.membership_add(actor=Actor(user=alice), workspace=workspace,
                                         email="dora@example.com", role=Role.MEMBER)
    send_membership_email(membership.pk, True)  # what the worker runs
    assert len(mail.outbox) == 1
    message = mail.outbox[0].message()
    assert message["Subject"] == "You have been added to Acme Bcc: everyone@example.com on Tributary"
    assert message["Bcc"] is None
    assert mail.outbox[0].recipients() == ["dora@example.com"]


def test_connection_notices_about_names_stored_with_line_breaks_are_still_sent(alice: User,
                                                                               workspace: Workspace) -> None:
    connection = connections.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                               region="us", write_key=new_write_key())
    Workspace.objects.filter(pk=workspace.pk).update(name="Acme\nLabs")
    Connection.objects.filter(pk=connection.pk).update(name="Prod\r\nBcc: everyone@example.com",
                                                       paused_reason="Segment refused the write key.")
    notifications.send_paused_email(connection_id=connection.pk)
    row = AuditEvent.objects.create(workspace=workspace, action=AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED,
                                    target_type="connection", target_id=str(connection.pk),
                                    details={"dead_letters_24h": 1200, "threshold": 100})
    assert notifications.send_delivery_notice(audit_event_id=row.pk)
    subjects = [m.subject for m in mail.outbox]
    assert subjects == [
        "Delivery to “Prod Bcc: everyone@example.com” is paused (Acme Labs)",
        "1,200 events could not be delivered to “Prod Bcc: everyone@example.com” (Acme Labs)",
    ]
    assert all(m.recipients() == ["alice@example.com"] for m in mail.outbox)
