"""`bench/relay.py --filters N`: the relay end to end on one connection without and with N
destination filters, back to back and alternating, so drift on a shared machine falls on both
sides; prints both figures, their ratio, and the stack's CPU per event for each.

The filters let every event through (the drain waits for every accepted event) but do all the
work a filter can: every event is parsed, every condition evaluated, and one filter removes a
property from every event, so every body is written again: the dearest case per event.
"""
from __future__ import annotations

import statistics
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
    """Without and with, alternating (A B B A A B B A), so drift falls on both sides; each
    figure is the median of its runs. The machine is shared, so each run also reports the CPU
    the stack (web, worker, PostgreSQL, emulator) spent per delivered event: other people's
    jobs change how fast a run goes, not how much work an event costs."""
    count = bench.args.filters
    bench_one = bench.workspaces["one"]
    runs: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
    order = (False, True, True, False, False, True, True, False)
    for step, filtered in enumerate(order):
        ids = add_filters(bench.owner, bench_one.connection_ids, count) if filtered else []
        label = f"1 connection, {count} filters" if filtered else "1 connection, no filters"
        try:
            run = _end_to_end(bench, f"{label} (run {step + 1} of {len(order)})", f"filters{step}")
        finally:
            remove_filters(bench.owner, ids)
        runs["with" if filtered else "without"].append(run)
    without, with_ = (statistics.median(rate for rate, _ in runs[k]) for k in ("without", "with"))
    cpu_without, cpu_with = (statistics.median(cpu for _, cpu in runs[k]) for k in ("without", "with"))
    bench.results.set("e2e_unfiltered", without)
    bench.results.set("e2e_filtered", with_)
    print(f"  filters: end to end without filters {without:,.0f} events/s, with {count} filters {with_:,.0f} "
          f"events/s = {with_ / max(without, 1e-9):.0%} of the run without them (medians; target at least 90%)")
    print(f"    stack CPU per delivered event: without {cpu_without:,.0f} µs, with {count} filters {cpu_with:,.0f} µs "
          f"= {cpu_without / max(cpu_with, 1e-9):.0%} of the events/s on a machine to itself")


def _end_to_end(bench: Any, label: str, phase: str) -> tuple[float, float]:
    """Bench.end_to_end on the "one" workspace, under a phase name of its own (each run sends
    messageIds never sent before, so none is refused as a duplicate): events/s, and the stack's
    CPU microseconds per delivered event."""
    from relay_observe import CpuMeter, accepted, wait_delivered

    bench.settle("one")
    keys = bench.workspaces["one"].write_keys
    baseline = accepted(bench.emulator, keys)
    before = bench.meter.snapshot()
    tally = bench.blast("one", phase, seconds=bench.args.seconds)
    drain = wait_delivered(bench.emulator, baseline, tally.accepted, timeout=bench.args.drain_timeout)
    after = bench.meter.snapshot()
    shares = CpuMeter.shares(before, after)
    parts = ("web", "worker", "postgres", "redis", "emulator")
    per_event = {part: shares.get(part, 0.0) * (after["wall"] - before["wall"]) / max(1, drain.total) * 1e6
                 for part in parts}
    cpu = sum(per_event.values())
    rate: float = bench._delivery_rate(drain, tally.started)
    print(f"  end to end, {label}: ingest {bench.describe_tally(tally)}")
    print(f"    delivered {drain.total:,} events by {drain.last_delivery - tally.started:.1f} s = {rate:,.0f} "
          f"events/s{'' if drain.drained else '  NOT DRAINED within the bounded wait'}; stack CPU {cpu:,.0f} µs "
          f"per event ({', '.join(f'{part} {per_event[part]:,.0f}' for part in parts)}; other jobs on the machine "
          f"{shares.get('other', 0.0):.0%} of a core)")
    return rate, cpu
