"""How long retention takes to remove a day of PostgreSQL's partitioned event log, and what it leaves.

    .venv/bin/python bench/partitions.py [--quick] [--events 5000000] [--rowwise 200000]

The target (issue 15): removing a day of 5,000,000 events takes under a second and leaves no
bloat to vacuum.

1. Re-create the bench database (its name must contain "bench") and migrate it, which makes
   the log partitioned by day of `received_at` (integrations/migrations/0018).
2. One workspace with one connection. Fill the partition of a day past the dedupe window
   (two days ago) with `--events` events of about 300 bytes, in one INSERT … SELECT over
   generate_series, VACUUM (ANALYZE) it and CHECKPOINT, as autovacuum and checkpoints will have
   done by the time it expires; put
   `--rowwise` more in the DEFAULT partition (30 days ago, a day without a partition), which
   retention still trims row by row, for comparison. The connection has delivered them all.
3. Time `events_trim()`, the hourly retention run (make the coming days' partitions, check
   which past days every connection passed, drop them, trim DEFAULT row by row), and within it
   the DROP of the day's partition and the row-by-row trim.
4. Print those against the target, then the log's size and its dead tuples (after a forced
   statistics flush), which the drop leaves at zero and the row-by-row trim does not.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
from relay_stack import StackOptions, code_revision, environment, flush_redis, migrate, recreate_database

TARGET_SECONDS = 1.0
NOWHERE = "http://127.0.0.1:9"  # nothing here calls Segment


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000,000 events in the day and 50,000 row by row "
                        "(the target is stated for 5,000,000)")
    parser.add_argument("--events", type=int, default=5_000_000, help="events in the dropped day")
    parser.add_argument("--rowwise", type=int, default=200_000, help="events trimmed row by row from DEFAULT")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_bench_parts")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/3", help="Redis database for the "
                        "cache (flushed)")
    args = parser.parse_args()
    if args.quick:
        args.events, args.rowwise = min(args.events, 1_000_000), min(args.rowwise, 50_000)
    return args


FILL_SQL = """
INSERT INTO integrations_event (workspace_id, seq, message_id, type, name, user_id, body, size, received_at)
SELECT %(workspace)s, %(first)s + g, 'bench-' || (%(first)s + g), 'track', 'Order Completed', 'u' || (g %% 1000),
       convert_to(%(body)s || g, 'UTF8'), length(%(body)s || g),
       %(start)s::timestamptz + (g::bigint * %(spacing)s) * interval '1 microsecond'
FROM generate_series(1, %(count)s) AS g
"""
BODY = '{"type":"track","event":"Order Completed","userId":"u1","properties":{"revenue":42.5,"currency":"EUR",' \
       '"products":[{"sku":"A-1","price":19.99},{"sku":"B-2","price":22.51}]},"context":{"library":' \
       '{"name":"analytics-python","version":"2.4.0"}},"timestamp":"2026-12-01T12:00:00Z","n":'


def fill(cursor: Any, workspace_id: int, first: int, count: int, start: datetime) -> float:
    began = time.perf_counter()
    cursor.execute(FILL_SQL, {"workspace": workspace_id, "first": first, "count": count, "body": BODY,
                              "start": start, "spacing": max(1, int(86_000e6 // max(count, 1)))})
    return time.perf_counter() - began


def log_state(cursor: Any) -> tuple[int, int, int, int]:
    """(bytes, live rows, dead rows in the day partitions, dead rows in DEFAULT) over the log."""
    cursor.execute("SELECT pg_stat_force_next_flush()")
    cursor.execute("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), coalesce(sum(s.n_live_tup), 0), "
                   "coalesce(sum(s.n_dead_tup) FILTER (WHERE c.relname <> 'integrations_event_default'), 0), "
                   "coalesce(sum(s.n_dead_tup) FILTER (WHERE c.relname = 'integrations_event_default'), 0) "
                   "FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid "
                   "WHERE i.inhparent = 'integrations_event'::regclass")
    size, live, dead_days, dead_default = cursor.fetchone()
    return int(size), int(live), int(dead_days), int(dead_default)


def timed(module: Any, name: str, spent: dict[str, float]) -> None:
    """Wrap `module.name` to add its wall time to spent[name]."""
    real: Callable[..., Any] = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - began

    setattr(module, name, wrapper)


def main() -> None:
    args = parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="tributary-partitions-bench-"))
    options = StackOptions(database_url=args.database_url, broker_url=args.broker_url, us_url=NOWHERE,
                           eu_url=NOWHERE, web_port=0, web_workers=1, worker_concurrency=1,
                           log_dir=log_dir)
    env = environment(options)
    print(f"Code {code_revision()}. Database {args.database_url.rsplit('/', 1)[-1]}, logs in {log_dir}. "
          f"Load average {os.getloadavg()[0]:.1f}", flush=True)
    recreate_database(args.database_url)
    flush_redis(args.broker_url)
    migrate(env, log_dir)
    os.environ.update(env)
    django.setup()
    run(args)


def run(args: argparse.Namespace) -> None:
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Workspace
    from integrations.models import Connection, EventStream
    from integrations.relay import retention

    workspace = Workspace.objects.create(name="Partitions bench", slug="partitions-bench")
    total = args.events + args.rowwise
    EventStream.objects.create(workspace=workspace, last_seq=total)
    delivered = Connection(workspace=workspace, name="Delivered", region="us", delivered_seq=total)
    delivered.set_write_key(secrets.token_hex(16))
    delivered.save()
    today = timezone.now().date()
    day = today - timedelta(days=max(2, settings_days(retention) + 1))
    retention.partition_create(day)
    with connection.cursor() as cursor:
        start = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=1)
        took = fill(cursor, workspace.pk, 0, args.events, start)
        print(f"Filled {retention.partition_name(day)} with {args.events:,} events in {took:.1f} s", flush=True)
        old = today - timedelta(days=30)
        took = fill(cursor, workspace.pk, args.events, args.rowwise, datetime(old.year, old.month, old.day,
                                                                                 tzinfo=UTC))
        print(f"Filled the DEFAULT partition with {args.rowwise:,} events in {took:.1f} s", flush=True)
        # Vacuumed and analysed, as autovacuum will have done long before the day expires (else
        # its vacuum, started by the fill, holds the partition and the drop waits for it).
        cursor.execute(f"VACUUM (ANALYZE) {retention.partition_name(day)}")
        cursor.execute("VACUUM (ANALYZE) integrations_event_default")
        # And on disk: a day expires a day after its last write. Dropped while the kernel still
        # writes its pages back, the commit's file removal waits for that (seconds per GB here).
        cursor.execute("CHECKPOINT")
        before = log_state(cursor)
    spent: dict[str, float] = {}
    for name in ("partitions_prepare", "_all_passed", "_events_in", "_detach", "_with_short_locks", "_drop",
                 "_delete_passed"):
        timed(retention, name, spent)
    load = os.getloadavg()[0]
    began = time.perf_counter()
    removed = retention.events_trim()
    whole = time.perf_counter() - began
    with connection.cursor() as cursor:
        after = log_state(cursor)
    # Out of the log: the check, and the DETACH's transaction (its lock and commit).
    dropped_day = spent.get("_all_passed", 0.0) + spent.get("_events_in", 0.0) + spent.get("_with_short_locks", 0.0)

    print_table(args, removed, whole, dropped_day, spent, before, after, load)


def settings_days(retention: Any) -> int:
    from django.conf import settings

    return int(settings.RELAY_RETENTION_HOURS) // 24


def print_table(args: argparse.Namespace, removed: int, whole: float, dropped_day: float, spent: dict[str, float],
                before: tuple[int, int, int, int], after: tuple[int, int, int, int], load: float) -> None:
    verdict = "met" if dropped_day < TARGET_SECONDS else "NOT met"
    rows = [
        ("events removed by the run", f"{removed:,}", "", ""),
        (f"taking the day of {args.events:,} out of the log", f"{dropped_day * 1000:,.0f} ms",
         f"< {TARGET_SECONDS * 1000:,.0f} ms", verdict),
        ("  of which checking every connection passed it", f"{spent.get('_all_passed', 0.0) * 1000:,.1f} ms", "", ""),
        ("  of which the DETACH statement", f"{spent.get('_detach', 0.0) * 1000:,.1f} ms", "", ""),
        ("  of which its transaction (lock wait, DETACH, COMMIT)",
         f"{spent.get('_with_short_locks', 0.0) * 1000:,.1f} ms", "", ""),
        ("then DROP of the detached table (frees the files; blocks nothing)",
         f"{spent.get('_drop', 0.0) * 1000:,.0f} ms", "", ""),
        ("making the coming days' partitions", f"{spent.get('partitions_prepare', 0.0) * 1000:,.1f} ms", "", ""),
        (f"row by row, {args.rowwise:,} from DEFAULT (for comparison)",
         f"{spent.get('_delete_passed', 0.0) * 1000:,.0f} ms", "", ""),
        ("whole retention run", f"{whole * 1000:,.0f} ms", "", ""),
        ("log size before → after", f"{before[0] / 2**20:,.0f} MB → {after[0] / 2**20:,.0f} MB", "", ""),
        ("live rows before → after", f"{before[1]:,} → {after[1]:,}", "", ""),
        ("dead tuples after, day partitions", f"{after[2]:,}", "0", "met" if after[2] == 0 else "NOT met"),
        ("dead tuples after, DEFAULT (the row-by-row trim)", f"{after[3]:,}", "", ""),
    ]
    print(f"\nRetention on the partitioned log (load average {load:.1f} when the run started):")
    width = max(len(row[0]) for row in rows)
    for label, figure, target, outcome in rows:
        print(f"  {label:<{width}}  {figure:>22}  {target:>16}  {outcome}")


if __name__ == "__main__":
    main()
