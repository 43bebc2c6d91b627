"""The dashboard bench's table, its verdicts and the plans of the slow pages' slowest queries."""

from __future__ import annotations

from dashboard_measure import Access, Queries, Timing, explain, profile
from dashboard_pages import Probe

PLAN_LINES = 40


def verdict(probe: Probe, timing: Timing, target: float, counted: Queries | None = None, *,
            busy: bool = False) -> str:
    """Against the target at p95 of the wall times. On a `busy` machine, a page over it whose
    own work (the web process's CPU and its queries) is under half the target says so: the
    wait was for the CPU, not the page's doing."""
    if timing.status == 404 and probe.expect != 404:
        return "not built (404)"
    if timing.status != probe.expect:
        return f"ERROR: answered {timing.status}, expected {probe.expect}"
    if timing.quantile(0.95) < target:
        return f"ok (< {target * 1000:.0f} ms)"
    slow = f"SLOW: p95 over {target * 1000:.0f} ms"
    if busy and counted is not None and counted.cpu_seconds + counted.seconds < target / 2:
        own = (counted.cpu_seconds + counted.seconds) * 1000
        return f"{slow} (its own work {own:.0f} ms: the machine was busy)"
    return slow


def print_table(probes: list[Probe], timings: dict[str, Timing], queries: dict[str, Queries], target: float, *,
                busy: bool) -> None:
    """Wall times through the web server; queries, their time and the request's CPU in-process."""
    width = max(len(p.label) for p in probes)
    print("\np50/p95/max: wall time of the timed requests through the web server. queries, db ms (their time) and "
          "cpu ms (the web process's CPU): in-process, the least of a few requests, the page's own cost. "
          "KB: the response.")
    print(f"\n| {'page':<{width}} | p50 ms | p95 ms | max ms | queries | db ms | cpu ms | KB | verdict |")
    print(f"|{'-' * (width + 2)}|-------:|-------:|-------:|--------:|------:|-------:|---:|---------|")
    for probe in probes:
        timing, counted = timings[probe.label], queries.get(probe.label)
        if timing.status == 404 and probe.expect != 404:
            cells = "- | - | - | - | - | - | -"
        else:
            counts = (f"{counted.count} | {counted.seconds * 1000:.0f} | {counted.cpu_seconds * 1000:.0f}" if counted
                      else "? | ? | ?")
            cells = (f"{timing.quantile(0.5) * 1000:.0f} | {timing.quantile(0.95) * 1000:.0f} | "
                     f"{max(timing.samples) * 1000:.0f} | {counts} | {timing.bytes / 1024:.0f}")
        print(f"| {probe.label:<{width}} | {cells} | {verdict(probe, timing, target, counted, busy=busy)} |")


def print_explains(probes: list[Probe], timings: dict[str, Timing], queries: dict[str, Queries], target: float,
                   *, every: bool, busy: bool, heaviest: int = 3) -> None:
    """Where the time goes, for each page over the target by its own work, and for the
    `heaviest` pages by own work in any case (for every page with `every`): the plan of its
    slowest query, and when its queries are not where the time goes, a profile of one request."""
    measured = [p for p in probes if p.label in queries and timings[p.label].status == p.expect]
    by_work = sorted(measured, key=lambda p: -(queries[p.label].cpu_seconds + queries[p.label].seconds))
    chosen = {p.label for p in by_work[:heaviest]}
    verdicts = {p.label: verdict(p, timings[p.label], target, queries[p.label], busy=busy) for p in measured}
    chosen |= {label for label, said in verdicts.items() if said.startswith("SLOW") and "busy" not in said}
    for probe in by_work:
        if not every and probe.label not in chosen:
            continue
        counted = queries[probe.label]
        print(f"\n{probe.label}: {counted.count} queries, {counted.seconds * 1000:.0f} ms in the database and "
              f"{counted.cpu_seconds * 1000:.0f} ms of the web process's CPU; its slowest query "
              f"({counted.slowest_seconds * 1000:.0f} ms):\n  {counted.slowest_sql[:600]}")
        if counted.slowest_sql.lstrip().upper().startswith("SELECT"):
            lines = explain(counted.slowest_sql).splitlines()
            print("\n".join(f"    {line}" for line in lines[:PLAN_LINES]))
            if len(lines) > PLAN_LINES:
                print(f"    … {len(lines) - PLAN_LINES} more lines")
        if counted.seconds < counted.cpu_seconds:
            print(f"  Most of the time is outside the database. One request, profiled:\n{profile(probe)}")


def summary(probes: list[Probe], timings: dict[str, Timing], queries: dict[str, Queries], target: float, *,
            busy: bool) -> str:
    built = [p for p in probes if not (timings[p.label].status == 404 and p.expect != 404)]
    verdicts = {p.label: verdict(p, timings[p.label], target, queries.get(p.label), busy=busy) for p in built}
    slow = [label for label, said in verdicts.items() if said.startswith(("SLOW", "ERROR")) and "busy" not in said]
    waited = [label for label, said in verdicts.items() if "busy" in said]
    line = f"\n{len(built)} of {len(probes)} pages built ({len(probes) - len(built)} answer 404); "
    if not slow and not waited:
        return line + f"every built page under {target * 1000:.0f} ms at p95."
    line += f"over {target * 1000:.0f} ms at p95 or failing: {', '.join(slow) or 'none'}"
    if waited:
        line += f"; over only while the machine was busy (their own work under half the target): {', '.join(waited)}"
    return line + "."


def print_accesses(access: Access) -> None:
    """The indexes the pages rely on, and any large table a page reads whole."""
    print("\nIndexes the pages' queries use (from their plans), with how many of the measured pages use each:")
    for index, labels in sorted(access.indexes.items(), key=lambda item: (-len(item[1]), item[0])):
        print(f"  {index}: {len(labels)}")
    if not access.scans:
        print("No page reads a large table (over 10,000 rows) with a sequential scan.")
    for table, labels in sorted(access.scans.items()):
        print(f"SEQUENTIAL SCAN of {table} in: {', '.join(sorted(labels))}")
