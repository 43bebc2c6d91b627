"""`bench/relay.py --plan N`: the relay end to end on one connection without, and with a
tracking plan of N rules plus relay_filters' first 3 destination filters on the connection
(issue #12's speed target: at least 90% of the run without them). Runs alternate (without,
with, with, without, twice) so drift on a shared machine falls on both sides; prints both
figures, their ratio, the median ratio of neighbouring runs (drift between two runs 20 s
apart is smaller than across the whole comparison), and the stack's CPU per delivered event
without and with (what other people's jobs on a shared machine change least).

The plan is enforced as a customer would set it (unplanned events blocked, unplanned
properties omitted, violations blocked) and every bench event matches its rule, so every
event is parsed and validated against its rule and the common rule, and all are delivered
(the drain waits for every accepted event). Between runs the plan is disabled, which is what
a workspace without a plan costs: one cached lookup.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any

import relay_filters

# The filters added with the plan; PLAN_BENCH_FILTERS=0 measures the plan alone.
FILTERS = int(os.environ.get("PLAN_BENCH_FILTERS", "3"))
# Each process rechecks a workspace's plan this often (integrations.tracking_plans.enforcement).
RECHECK_SECONDS = 5.0

# The rule the bench's event (relay_load.EVENT) matches.
ORDER_COMPLETED: dict[str, Any] = {
    "type": "TRACK", "key": "Order Completed", "version": 1,
    "jsonSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "definitions": {"money": {"type": "number", "minimum": 0}},
        "properties": {
            "properties": {
                "type": "object", "required": ["order_id", "revenue", "currency"],
                "properties": {"order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
                               "revenue": {"$ref": "#/definitions/money"},
                               "currency": {"type": "string", "enum": ["EUR", "USD", "GBP"]},
                               "plan": {"type": "string", "enum": ["free", "pro", "enterprise"]},
                               "coupon": {"type": ["string", "null"]}}},
            "context": {"type": "object", "required": ["library"]}},
        "required": ["properties"]},
}
COMMON: dict[str, Any] = {
    "type": "COMMON", "key": "", "version": 1,
    "jsonSchema": {"type": "object", "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
                   "properties": {"timestamp": {"type": "string", "format": "date-time"}}},
}


def rules(count: int) -> list[dict[str, Any]]:
    """`count` rules: the bench event's, the common one, and other track events' rules."""
    made = [ORDER_COMPLETED, COMMON]
    for n in range(count - len(made)):
        made.append({"type": "TRACK", "key": f"Bench Event {n:02d}", "version": 1, "jsonSchema": {
            "type": "object", "properties": {"properties": {
                "type": "object", "required": ["id"],
                "properties": {"id": {"type": "string"}, "value": {"type": "number"},
                               "label": {"type": "string", "maxLength": 200}}}}}})
    return made[:count]


def set_plan(owner: Any, workspace_id: int, count: int, *, enabled: bool) -> None:
    from accounts.audit import Actor
    from accounts.models import Workspace
    from integrations.tracking_plans import services

    workspace = Workspace.objects.get(pk=workspace_id)
    actor = Actor(user=owner)
    if enabled:
        services.plan_rules_save(actor=actor, workspace=workspace, rules=rules(count))
    services.plan_enforcement_save(actor=actor, workspace=workspace, enabled=enabled, unplanned_events="block",
                                   unplanned_properties="omit", on_violation="block", forward_violations_to=None)
    time.sleep(RECHECK_SECONDS + 0.5)  # every web process has seen the change


def compare(bench: Any) -> None:
    count = bench.args.plan
    one = bench.workspaces["one"]
    workspace_id = _workspace_id(one.connection_ids[0])
    rates: dict[str, list[float]] = {"without": [], "with": []}
    cpus: dict[str, list[float]] = {"without": [], "with": []}
    runs: list[float] = []
    order = (False, True, True, False) * 2
    for step, planned in enumerate(order):
        set_plan(bench.owner, workspace_id, count, enabled=planned)
        ids = relay_filters.add_filters(bench.owner, one.connection_ids, FILTERS) if planned else []
        label = (f"1 connection, {count}-rule plan and {FILTERS} filters" if planned
                 else "1 connection, no plan or filters")
        try:
            rate, cpu = relay_filters._end_to_end(bench, f"{label} (run {step + 1} of {len(order)})", f"plan{step}")
        finally:
            relay_filters.remove_filters(bench.owner, ids)
        rates["with" if planned else "without"].append(rate)
        cpus["with" if planned else "without"].append(cpu)
        runs.append(rate)
    set_plan(bench.owner, workspace_id, count, enabled=False)
    without, with_ = (sum(rates[k]) / len(rates[k]) for k in ("without", "with"))
    bench.results.set("e2e_no_plan", without)
    bench.results.set("e2e_plan", with_)
    share = with_ / without if without else 0.0
    print(f"  tracking plan: end to end without {without:,.0f} events/s, with a {count}-rule plan and {FILTERS} "
          f"filters {with_:,.0f} events/s = {share:.0%} of the run without them (target at least 90%)")
    # Neighbours in time: (without, with), (with, without), … ; the median of their ratios.
    pairs = [(runs[i], runs[i + 1]) if not order[i] else (runs[i + 1], runs[i]) for i in range(0, len(runs), 2)]
    ratios = sorted(w / wo for wo, w in pairs if wo)
    if ratios:
        print(f"  tracking plan: ratios of neighbouring runs {', '.join(f'{r:.0%}' for r in ratios)}; "
              f"median {statistics.median(ratios):.0%}")
    # What each event costs the stack, whoever else is using the machine: the events/s ratio
    # the same work would give on a machine to itself.
    cpu_without, cpu_with = (statistics.median(cpus[k]) for k in ("without", "with"))
    print(f"    stack CPU per delivered event (medians): without {cpu_without:,.0f} µs, with the plan and filters "
          f"{cpu_with:,.0f} µs = {cpu_without / max(cpu_with, 1e-9):.0%} of the events/s on a machine to itself")


def _workspace_id(connection_id: int) -> int:
    from integrations.models import Connection

    return int(Connection.objects.values_list("workspace_id", flat=True).get(pk=connection_id))
