"""Records of filtered events are kept as long as the delivery figures they explain."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.models import DeliveryCount, FilteredBatch
from integrations.relay.accounting import filtered_record
from integrations.relay.retention import deliveries_trim
from tests.conftest import new_write_key

pytestmark = pytest.mark.django_db


def test_trimming_forgets_filtered_events_older_than_the_figures_show(alice: User, workspace: Workspace) -> None:
    connection = services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production",
                                            region="us", write_key=new_write_key())
    now = timezone.now()
    filtered_record(connection_id=connection.pk, at=now - timedelta(days=40), held=[(1, "No tests", "dropped")])
    filtered_record(connection_id=connection.pk, at=now, held=[(2, "No tests", "dropped"), (3, "Half", "sampled")])
    assert sum(DeliveryCount.objects.values_list("filtered", flat=True)) == 3
    deliveries_trim()
    assert list(FilteredBatch.objects.values_list("events", flat=True)) == [
        [[2, "No tests", "dropped"], [3, "Half", "sampled"]]]
    assert sum(DeliveryCount.objects.values_list("filtered", flat=True)) == 2
