"""Every URL that names a workspace answers 404 to someone who is not a member of it.

The URL patterns are walked, so a view added later cannot be forgotten here.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts.audit import Actor
from accounts.models import Membership, User, Workspace
from integrations import services
from integrations.filters.services import filter_save
from integrations.ingest.keys import ingest_key_authenticate, ingest_key_create
from integrations.models import BlockedEvent, Connection, DestinationFilter, WebhookEndpoint
from integrations.webhooks.services import endpoint_create
from tests.conftest import new_write_key


def walk(patterns: list[Any], namespace: str = "", converters: tuple[str, ...] = ()) -> Iterator[tuple[str, set[str]]]:
    for entry in patterns:
        names = converters + tuple(entry.pattern.converters)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from walk(entry.url_patterns, inner, names)
        elif isinstance(entry, URLPattern) and entry.name:
            yield f"{namespace}{entry.name}", set(names)


def workspace_urls(workspace: Workspace, member_pk: int, connection_pk: int = 1,
                   ingest_key_pk: int = 1, filter_pk: int = 1, webhook_pk: int = 1, blocked_pk: int = 1) -> list[str]:
    """Every workspace URL, with ids of objects that really exist in that workspace."""
    urls = []
    for name, kwargs in walk(get_resolver().url_patterns):
        if "slug" not in kwargs or name.startswith("admin:"):
            continue
        values: dict[str, object] = {"slug": workspace.slug}
        if "pk" in kwargs:
            if name.startswith("integrations:ingest_key"):
                values["pk"] = ingest_key_pk
            elif name.startswith("integrations:webhook"):
                values["pk"] = webhook_pk
            elif name.startswith("integrations:"):
                values["pk"] = connection_pk
            else:
                values["pk"] = member_pk
        if "filter_pk" in kwargs:
            values["filter_pk"] = filter_pk
        if "blocked_pk" in kwargs:
            values["blocked_pk"] = blocked_pk
        unknown = kwargs - set(values)
        assert not unknown, f"{name}: teach this test how to fill {unknown}"
        urls.append(reverse(name, kwargs=values))
    return urls


def test_the_walk_finds_the_workspace_pages(workspace: Workspace, alice: User) -> None:
    urls = workspace_urls(workspace, 1)
    assert len(urls) >= 8
    assert reverse("members", kwargs={"slug": workspace.slug}) in urls


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_outsider_gets_404_on_every_workspace_url(method: str, charlie_client: Client, workspace: Workspace,
                                                     alice: User, bob: User) -> None:
    member_pk = Membership.objects.get(user=bob, workspace=workspace).pk
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    ingest_key, key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Production")
    destination_filter = filter_save(actor=Actor(user=alice), connection=connection, title="No tests",
                                     condition="userId = 'test'", action="drop")
    webhook = endpoint_create(actor=Actor(user=alice), workspace=workspace, name="Chat assistant").endpoint
    blocked = BlockedEvent.objects.create(workspace=workspace, message_id="m-1", type="track", name="Signed Up",
                                          body=b"{}", violations=[])
    for path in workspace_urls(workspace, member_pk, connection.pk, ingest_key.pk, destination_filter.pk,
                               webhook.pk, blocked.pk):
        response = getattr(charlie_client, method)(path)
        assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}"
    assert Membership.objects.filter(pk=member_pk).exists()
    assert Connection.objects.filter(pk=connection.pk, name="Production", enabled=True).exists()
    assert ingest_key_authenticate(key) == ingest_key
    assert DestinationFilter.objects.filter(pk=destination_filter.pk, title="No tests").exists()
    assert WebhookEndpoint.objects.filter(pk=webhook.pk, enabled=True, name="Chat assistant").exists()
    assert BlockedEvent.objects.filter(pk=blocked.pk, released_at__isnull=True).exists()


def test_an_unknown_workspace_is_a_404_too(alice_client: Client) -> None:
    assert alice_client.get("/w/no-such-workspace/settings/members/").status_code == 404


def test_signed_out_visitors_are_sent_to_sign_in(client: Client, workspace: Workspace) -> None:
    response = client.get(reverse("members", kwargs={"slug": workspace.slug}))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))
