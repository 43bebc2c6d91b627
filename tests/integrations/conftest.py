"""Fixtures the connection page tests share."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.models import Connection
from tests.conftest import make_user, new_write_key
from tests.integrations.support import checked


@pytest.fixture
def connection(alice: User, workspace: Workspace, segment: Any) -> Connection:
    """A connection whose key the emulator knows, after its first check passed."""
    key = new_write_key()
    segment.register_key(key, "us")
    return checked(services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                              region="us", write_key=key))


@pytest.fixture
def operator_client(db: None) -> Client:
    user = make_user("ops@tributary.example")
    user.is_staff = user.is_superuser = True
    user.save()
    client = Client()
    client.force_login(user)
    return client
