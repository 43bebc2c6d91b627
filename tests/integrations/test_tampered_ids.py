"""Numbers typed into URLs, query strings and forms by hand: too large for any column, or
well formed but no such time. Each is answered as naming nothing (404, an empty answer or a
message), never with a server error."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.models import Workspace
from integrations.models import Connection

HUGE = "99999999999999999999999"


def test_ids_too_large_for_a_column_name_nothing(alice_client: Client, workspace: Workspace,
                                                  connection: Connection) -> None:
    w = f"/w/{workspace.slug}"
    c = f"{w}/settings/integrations/segment/{connection.pk}"
    answers: dict[str, Any] = {
        "statuses": alice_client.get(f"{w}/debugger/statuses/", {"seq": [HUGE, "1"]}),
        "events": alice_client.get(f"{w}/debugger/events/", {"after": HUGE}),
        "event": alice_client.get(f"{w}/debugger/event/", {"seq": HUGE}),
        "dead letter": alice_client.get(f"{c}/dead-letters/body/", {"id": HUGE}),
        "connection": alice_client.get(f"{w}/settings/integrations/segment/{HUGE}/"),
        "release": alice_client.post(f"{w}/violations/release/", {"ids": [HUGE]}),
    }
    assert {name: answer.status_code for name, answer in answers.items()} == {
        "statuses": 204, "events": 204, "event": 404, "dead letter": 404, "connection": 404, "release": 302}


def test_a_cursor_time_that_does_not_exist_is_ignored(alice_client: Client, workspace: Workspace) -> None:
    answer = alice_client.get(f"/w/{workspace.slug}/debugger/events/", {"rejected_after": "2026-13-45T99:99"})
    assert answer.status_code == 204


@pytest.mark.parametrize("value", ["0", "-1", "1.0", "١٢", " 7", HUGE])
def test_only_whole_numbers_a_column_holds_are_ids(value: str) -> None:
    from accounts.http import id_from, ids_from

    assert id_from(value) == (7 if value == " 7" else 0)
    assert ids_from([value, "3", "3"]) == ([7, 3] if value == " 7" else [3])
