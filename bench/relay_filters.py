"""`bench/relay.py --filters N`: the relay end to end on one connection without and with N
destination filters, back to back and alternating (without, with, with, without), so drift
on a shared machine falls on both sides; prints both figures and their ratio.

The filters let every event through (the drain waits for every accepted event) but do all the
work a filter can: every event is parsed, every condition evaluated, and one filter removes a
property from every event, so every body is written again: the dearest case per event.
"""
from __future__ import annotations

from typing import Any

# Conditions that match the bench's events (relay_load.EVENT) without dropping any.
FILTERS: list[dict[str, Any]] = [
    {"title": "No test users", "action": "drop",
     "condition": 'userId in ["test-user", "qa-bot"] or contains(properties.email, "@test.example")'},
    {"title": "No currency", "action": "drop_properties", "condition": 'event = "Order Completed"',
     "fields": {"properties": ["currency"]}},
    {"title": "Keep all bench traffic", "action": "sample", "condition": 'match(context.library.name, "bench*")',
     "percent": 1.0, "sample_path": "userId"},
    {"title": "No big spenders from QA", "action": "drop",
     "condition": 'properties.revenue > 1000000 and type = "track"'},
]


def add_filters(owner: Any, connection_ids: list[int], count: int) -> list[int]:
    from accounts.audit import Actor
    from integrations.filters.services import filter_save
    from integrations.models import Connection

    made = []
    for connection in Connection.objects.filter(pk__in=connection_ids):
        for spec in FILTERS[:count]:
            made.append(filter_save(actor=Actor(user=owner), connection=connection, **spec).pk)
    return made


def remove_filters(owner: Any, filter_ids: list[int]) -> None:
    from accounts.audit import Actor
    from integrations.filters.services import filter_delete
    from integrations.models import DestinationFilter

    for row in DestinationFilter.objects.filter(pk__in=filter_ids).select_related("connection"):
        filter_delete(actor=Actor(user=owner), connection=row.connection, row=row)


def compare(bench: Any) -> None:
    """Without, with, with, without; each figure the mean of its two runs."""
    count = bench.args.filters
    bench_one = bench.workspaces["one"]
    rates: dict[str, list[float]] = {"without": [], "with": []}
    for step, filtered in enumerate((False, True, True, False)):
        ids = add_filters(bench.owner, bench_one.connection_ids, count) if filtered else []
        label = f"1 connection, {count} filters" if filtered else "1 connection, no filters"
        figure = f"e2e_filters_{step}"
        try:
            bench.end_to_end("one", f"{label} (run {step + 1} of 4)", figure=figure)
        finally:
            remove_filters(bench.owner, ids)
        rates["with" if filtered else "without"].append(bench.results.get(figure) or 0.0)
    without, with_ = (sum(rates[k]) / len(rates[k]) for k in ("without", "with"))
    bench.results.set("e2e_unfiltered", without)
    bench.results.set("e2e_filtered", with_)
    share = with_ / without if without else 0.0
    print(f"  filters: end to end without filters {without:,.0f} events/s, with {count} filters "
          f"{with_:,.0f} events/s = {share:.0%} of the run without them")
