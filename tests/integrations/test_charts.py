"""The Deliveries tab's 30-day bar charts: a bar per day, axis labels, a table, and round axis tops."""
from __future__ import annotations

from datetime import timedelta

from django.test import Client
from django.utils import timezone

from accounts.models import Workspace
from integrations.charts import nice_ceiling
from integrations.models import Connection
from tests.integrations.support import record, url


def test_the_chart_draws_a_bar_per_day_with_axis_labels_and_a_table(alice_client: Client, workspace: Workspace,
                                                                    connection: Connection) -> None:
    record(connection, events=1234)
    record(connection, ago=timedelta(days=2), events=300)
    page = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    chart = page[page.index('data-testid="usage-chart"'):]
    assert chart.count('<g class="bar') == 60  # 30 days, two charts
    today = timezone.now().date()
    assert f"{today:%a, %b} {today.day} (today so far): 1,234 events" in chart
    assert '<text class="axis-label"' in chart and ">2,000<" in chart  # the axis top above 1,234
    assert "1,534 in 30 days" in chart  # events delivered
    assert "Show these figures as a table" in chart and chart.count("<th scope=\"row\">") >= 30


def test_an_idle_chart_says_so(alice_client: Client, workspace: Workspace, connection: Connection) -> None:
    page = alice_client.get(url("connection_deliveries", workspace, pk=connection.pk)).content.decode()
    assert "Nothing in 30 days" in page and "No events in the last 30 days." in page


def test_axis_tops_are_round_and_even() -> None:
    assert [nice_ceiling(v) for v in (0, 3, 5, 7, 9, 10, 11, 35, 99, 1234, 50_001)] == [
        4, 4, 6, 8, 10, 10, 20, 40, 100, 2000, 60_000]
