"""Reads of a connection's filters; the connection itself was already read through its
tenancy-checked selector, so another workspace's filter is a 404 here too."""
from __future__ import annotations

from datetime import timedelta

from django.db.models import Sum
from django.http import Http404
from django.utils import timezone

from integrations.models import Connection, DeliveryCount, DestinationFilter


def filters_for_connection(*, connection: Connection) -> list[DestinationFilter]:
    return list(DestinationFilter.objects.filter(connection=connection).order_by("position", "id"))


def filter_get_for_connection(*, connection: Connection, pk: int) -> DestinationFilter:
    try:
        return DestinationFilter.objects.get(connection=connection, pk=pk)
    except DestinationFilter.DoesNotExist:
        raise Http404("No such filter.") from None


def filtered_last_24h(*, connection: Connection) -> int:
    since = timezone.now() - timedelta(hours=24)
    total = DeliveryCount.objects.filter(connection=connection, bucket__gte=since).aggregate(n=Sum("filtered"))["n"]
    return int(total or 0)
