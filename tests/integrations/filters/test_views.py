"""The Filters tab: saving from the sentence form or pasted FQL, clear errors at save time,
the preview over the latest events, enabling, deleting, audit rows, and who may do what."""
from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services as connection_services
from integrations.filters import services
from integrations.ingest import emit
from integrations.models import Connection, DestinationFilter
from tests.conftest import new_write_key
from tests.integrations.support import url

pytestmark = pytest.mark.django_db


@pytest.fixture
def plain_connection(alice: User, workspace: Workspace) -> Connection:
    return connection_services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                                 region="us", write_key=new_write_key())


def form(**values: Any) -> dict[str, Any]:
    data = {"title": "No test users", "action": "drop", "join": "all", "field_1": "", "operator_1": "is",
            "value_1": "", "fql": "", "percent": "10", "sample_path": "userId", "fields_text": ""}
    data.update(values)
    return data


def test_the_sentence_form_saves_fql_and_audits(alice_client: Client, workspace: Workspace,
                                                plain_connection: Connection) -> None:
    response = alice_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form(
        field_1="properties.email", operator_1="contains", value_1="@test.com",
        field_2="type", operator_2="in", value_2="track, page"))
    assert response.status_code == 302
    row = DestinationFilter.objects.get(connection=plain_connection)
    assert row.condition == '(contains(properties.email, "@test.com")) and (type in ["track", "page"])'
    audit = AuditEvent.objects.get(action=AuditAction.FILTER_CREATED)
    assert audit.details["title"] == "No test users" and audit.workspace == workspace
    page = alice_client.get(url("connection_filters", workspace, pk=plain_connection.pk)).content.decode()
    assert "No test users" in page and "contains(properties.email" in page


def test_fql_pasted_from_segment_is_accepted(alice_client: Client, workspace: Workspace,
                                             plain_connection: Connection) -> None:
    fql = "type = 'track' and ( event = 'Click' or match( event, 'Button *' ) )"
    alice_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form(fql=fql))
    assert DestinationFilter.objects.get().condition == fql


@pytest.mark.parametrize(("values", "message"), [
    ({"fql": "event = "}, "ends too early"),
    ({"fql": "match(event, '*a*a*a*a*a*a*a*a*a*b')"}, "more than 8"),
    ({"fql": "match(event, '[abc')"}, "opens"),
    ({"field_1": "properties.revenue", "operator_1": "gt", "value_1": "lots"}, "not a number"),
    ({"fql": "true", "action": "sample", "percent": ""}, "share of matching events"),
    ({"fql": "true", "action": "drop_properties", "fields_text": ""}, "at least one property"),
    ({"fql": "", "field_1": ""}, "Add a condition"),
])
def test_bad_filters_get_a_clear_error_and_nothing_is_saved(alice_client: Client, workspace: Workspace,
                                                           plain_connection: Connection, values: dict[str, str],
                                                           message: str) -> None:
    response = alice_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form(**values))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not DestinationFilter.objects.exists()


def error_places(html: str) -> tuple[str, str]:
    """The condition rows (with the errors shown under them) and the FQL field, apart."""
    rows_start = html.index('<div class="filter-row')
    fql_start = html.rindex('<div class="field', 0, html.index('name="fql"'))
    return html[rows_start:fql_start], html[fql_start:html.index("</div>", html.index('name="fql"'))]


def test_saving_without_a_condition_says_so_at_the_condition_rows_not_under_the_fql(
        alice_client: Client, workspace: Workspace, plain_connection: Connection) -> None:
    response = alice_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form())
    assert response.status_code == 400
    assert response.context["form"].errors["field_1"] == ["Add a condition: a field, what it should be, and a value."]
    assert "fql" not in response.context["form"].errors
    rows, fql = error_places(response.content.decode())
    assert "Add a condition" in rows and "Add a condition" not in fql
    assert 'class="filter-row has-error"' in rows and "has-error" not in fql


def test_a_bad_second_row_is_named_at_that_row(alice_client: Client, workspace: Workspace,
                                              plain_connection: Connection) -> None:
    response = alice_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form(
        field_1="event", operator_1="is", value_1="Click",
        field_2="properties.revenue", operator_2="gt", value_2="lots", value_3="", field_3="", operator_3="is"))
    errors = response.context["form"].errors
    assert response.status_code == 400 and "field_1" not in errors
    assert "not a number" in errors["field_2"][0]


def test_the_preview_counts_what_the_filter_would_do_to_the_latest_events(
        alice_client: Client, workspace: Workspace, plain_connection: Connection) -> None:
    for n in range(10):
        emit.track(workspace, "Order Completed", user_id=f"user{n}",
                   properties={"email": f"u{n}@{'test' if n < 3 else 'real'}.com", "revenue": n})
    response = alice_client.post(url("filter_preview", workspace, pk=plain_connection.pk),
                                 form(field_1="properties.email", operator_1="contains", value_1="@test.com"))
    page = response.content.decode()
    assert 'data-testid="preview-dropped">3<' in page
    assert "Of the latest 10 events" in page
    assert not DestinationFilter.objects.exists()  # a preview saves nothing
    changed = alice_client.post(url("filter_preview", workspace, pk=plain_connection.pk),
                                form(action="drop_properties", fql="true", fields_text="properties.email"))
    text = changed.content.decode()
    assert 'data-testid="preview-changed">10<' in text and 'data-testid="preview-after"' in text


def test_enable_disable_change_and_delete_are_audited(alice: User, alice_client: Client, workspace: Workspace,
                                                     plain_connection: Connection) -> None:
    row = services.filter_save(actor=Actor(user=alice), connection=plain_connection, title="Sampled",
                               condition="true", action="sample", percent=0.5, sample_path="userId")
    alice_client.post(url("filter_enabled", workspace, pk=plain_connection.pk, filter_pk=row.pk), {"enabled": "0"})
    row.refresh_from_db()
    assert not row.enabled and row.version == 2
    alice_client.post(url("filter_edit", workspace, pk=plain_connection.pk, filter_pk=row.pk),
                      form(title="Sampled", action="sample", fql="type = 'track'", percent="25"))
    row.refresh_from_db()
    assert (row.condition, row.percent, row.version) == ("type = 'track'", 0.25, 3)
    alice_client.post(url("filter_delete", workspace, pk=plain_connection.pk, filter_pk=row.pk))
    assert not DestinationFilter.objects.exists()
    assert list(AuditEvent.objects.filter(action__startswith="filter.").order_by("id").values_list(
        "action", flat=True)) == ["filter.created", "filter.disabled", "filter.updated", "filter.deleted"]


def test_members_see_filters_but_cannot_change_them(alice: User, bob_client: Client, workspace: Workspace,
                                                   plain_connection: Connection) -> None:
    row = services.filter_save(actor=Actor(user=alice), connection=plain_connection, title="No tests",
                               condition="userId = 'test'", action="drop")
    page = bob_client.get(url("connection_filters", workspace, pk=plain_connection.pk)).content.decode()
    assert "No tests" in page and "Save filter" not in page
    assert bob_client.post(url("connection_filters", workspace, pk=plain_connection.pk), form(fql="true")).status_code == 403
    assert bob_client.post(url("filter_delete", workspace, pk=plain_connection.pk, filter_pk=row.pk)).status_code == 403
    assert DestinationFilter.objects.count() == 1


def test_an_outsider_gets_404(alice: User, charlie_client: Client, workspace: Workspace,
                              plain_connection: Connection) -> None:
    row = services.filter_save(actor=Actor(user=alice), connection=plain_connection, title="No tests",
                               condition="true", action="drop")
    for name, kwargs in [("connection_filters", {}), ("filter_edit", {"filter_pk": row.pk}),
                         ("filter_delete", {"filter_pk": row.pk})]:
        assert charlie_client.post(url(name, workspace, pk=plain_connection.pk, **kwargs)).status_code == 404
    assert DestinationFilter.objects.count() == 1


def test_a_connection_has_at_most_ten_filters(alice: User, plain_connection: Connection) -> None:
    for n in range(10):
        services.filter_save(actor=Actor(user=alice), connection=plain_connection, title=f"F{n}", condition="true",
                             action="drop")
    with pytest.raises(Exception, match="at most 10"):
        services.filter_save(actor=Actor(user=alice), connection=plain_connection, title="F11", condition="true",
                             action="drop")
