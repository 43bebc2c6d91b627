"""Tenancy-checked reads of a workspace's connections and their checks: another workspace's
connection is a 404."""
from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from accounts.models import Workspace
from integrations.models import Connection, Verification


def connections_for_workspace(*, workspace: Workspace) -> QuerySet[Connection]:
    return workspace.connections.select_related("latest_verification").order_by("name")


def connection_get_for_workspace(*, workspace: Workspace, pk: int) -> Connection:
    try:
        return connections_for_workspace(workspace=workspace).get(pk=pk)
    except Connection.DoesNotExist:
        raise Http404("No such connection.") from None


def verifications_for_connection(*, connection: Connection, limit: int = 10) -> list[Verification]:
    return list(connection.verifications.select_related("requested_by")[:limit])
