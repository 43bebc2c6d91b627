"""How fast the dashboard's pages answer with a production-sized database.

    .venv/bin/python bench/dashboard.py [--quick] [--keep] [--repeat 30] [--warmup 3]

The target (issue 5): every dashboard page answers in under 150 ms at p95 with 1,000,000
events, 100 workspaces and 300 connections in PostgreSQL, its counters read from the
aggregates delivery keeps rather than from counting the event log.

1. Seed `tributary_dashbench` (dropped and re-created; see bench/dashboard_seed.py): 100
   workspaces, 300 connections, a 1,000,000-event log, 30 days of delivery attempts and
   10-minute counts, dead letters, rejected events, checks, audit rows; then ANALYZE. With
   `--keep` a database already seeded with the same plan is reused (new migrations are
   applied to it); seeding is the slow part.
2. Start the web server as production does (granian, `python -m config.serve`, production
   settings), as bench/relay_stack.py does; no worker or beat, so the data holds still. Sign
   in through the login form as the owner of the largest workspace and as the owner of the
   smallest.
3. Request every page (bench/dashboard_pages.py: pages, htmx partials, later pages, filters,
   debugger searches) `--warmup` times, then `--repeat` times, round-robin, one request at a
   time over keep-alive connections; then each a few times more in this process, to count its
   queries and measure its own work: the web process's CPU and its queries' time.
4. Print per page p50, p95 and max, queries, db ms, cpu ms and the verdict against 150 ms at
   p95; for the pages over it by their own work, and the three heaviest in any case, the
   EXPLAIN ANALYZE of the slowest query and a profile of one request; then the indexes all
   the pages' queries use and any large table one of them reads whole. A page not built yet
   answers 404 and is reported as "not built (404)".

The machine is shared: when it is busy, wall times (the target's measure) rise for reasons
that are not the pages', and the table says so; cpu ms + db ms is each page's own cost.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import django
from dashboard_meta import Plan, Seeded, read_seeded
from relay_stack import (
    REPO_ROOT,
    StackOptions,
    code_revision,
    environment,
    flush_redis,
    migrate,
    recreate_database,
)

from segment_emulator.testing import free_ports

TARGET_SECONDS = 0.150
NOWHERE = "http://127.0.0.1:9"  # Segment is never called by a page; the discard port if it were


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 timed requests per page instead of 30 "
                        "(the same data size)")
    parser.add_argument("--keep", action="store_true", help="reuse the database if it was seeded with the same "
                        "plan (the first run seeds it anyway)")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured requests per page first")
    parser.add_argument("--events", type=int, default=Plan.events, help="events in the log")
    parser.add_argument("--workspaces", type=int, default=Plan.workspaces, help="workspaces (3 connections each)")
    parser.add_argument("--web-workers", type=int, default=2, help="granian worker processes (requests are "
                        "made one at a time)")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/tributary_dashbench")
    parser.add_argument("--broker-url", default="redis://127.0.0.1:6379/6", help="Redis database for the "
                        "cache (flushed)")
    parser.add_argument("--seed-only", action="store_true", help="seed (unless --keep finds a seed) and stop")
    parser.add_argument("--explain-all", action="store_true", help="plan and profile every page, not only "
                        "the heaviest and those over the target")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.warmup = min(args.repeat, 10), min(args.warmup, 2)
    return args


def main() -> None:
    args = parse_args()
    started = time.monotonic()
    log_dir = Path(tempfile.mkdtemp(prefix="tributary-dashbench-"))
    (log_dir / "data").mkdir()
    plan = Plan(events=args.events, workspaces=args.workspaces)
    seeded, fresh = _seeded_or_fresh(args, plan)
    options = StackOptions(database_url=args.database_url, broker_url=args.broker_url, us_url=NOWHERE,
                           eu_url=NOWHERE, web_port=free_ports(1)[0], web_workers=args.web_workers,
                           worker_concurrency=1, log_dir=log_dir)
    env = environment(options)
    # The keys this database's write keys were encrypted with (every process refuses to start
    # without them), and `testserver` for the in-process pass.
    env.update({"DJANGO_SECRET_KEY": seeded.secret_key, "FIELD_ENCRYPTION_KEYS": seeded.encryption_key,
                "DJANGO_ALLOWED_HOSTS": "127.0.0.1,testserver"})
    print(f"Code {code_revision()}. Database {args.database_url.rsplit('/', 1)[-1]} "
          f"({'seeding' if fresh else 'kept, seeded ' + seeded.seeded_at[:16]}), logs in {log_dir}", flush=True)
    if fresh:
        recreate_database(args.database_url)
    flush_redis(args.broker_url)
    migrate(env, log_dir)
    _collect_static(env, log_dir)
    os.environ.update(env)
    django.setup()
    if fresh:
        from dashboard_seed import seed

        seed(plan, seeded, args.database_url)
    if not args.seed_only:
        _measure(args, options, env, seeded.password)
    print(f"\nTotal {time.monotonic() - started:.0f} s.")


def _seeded_or_fresh(args: argparse.Namespace, plan: Plan) -> tuple[Seeded, bool]:
    if args.keep:
        seeded = read_seeded(args.database_url)
        if seeded is not None and seeded.plan == asdict(plan):
            return seeded, False
        print("--keep: no finished seed of this plan in the database; seeding it.")
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return Seeded.fresh(plan, encryption_key=key), True


def _collect_static(env: dict[str, str], log_dir: Path) -> None:
    """Production serves hashed, compressed static files from STATIC_ROOT: collect them, as a
    deployment does (pages cannot render without the manifest)."""
    log = log_dir / "collectstatic.log"
    with log.open("wb") as output:
        done = subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=REPO_ROOT, env=env,
                              stdout=output, stderr=subprocess.STDOUT, timeout=300, check=False)
    if done.returncode:
        raise SystemExit(f"collectstatic failed; see {log}")


def _measure(args: argparse.Namespace, options: StackOptions, env: dict[str, str], password: str) -> None:
    from dashboard_measure import Browser, accesses, count_queries, time_pages, web_server
    from dashboard_pages import probes as all_probes
    from dashboard_report import print_accesses, print_explains, print_table, summary

    probes = all_probes()
    with web_server(options, env) as url:
        browsers = {email: Browser(url, email, password) for email in {p.email for p in probes}}
        print(f"Requesting {len(probes)} pages: {args.warmup} unmeasured, then {args.repeat} timed each, "
              f"round-robin, one at a time (granian {args.web_workers} workers, production settings).", flush=True)
        load = os.getloadavg()[0]
        timings = time_pages(browsers, probes, repeat=args.repeat, warmup=args.warmup)
    load = max(load, os.getloadavg()[0])
    queries = count_queries(probes)
    busy = load > (os.cpu_count() or 1)
    print_table(probes, timings, queries, TARGET_SECONDS, busy=busy)
    print(f"\nLoad average while timing: up to {load:.1f} on {os.cpu_count()} cores (this benchmark's client and "
          "server count for about 1).")
    if busy:
        print("The machine was busy with other work while pages were timed: wall times are upper bounds. A "
              "page's own work, the web process's CPU (cpu ms) plus its queries (db ms), depends far less on "
              "what else runs.")
    print_explains(probes, timings, queries, TARGET_SECONDS, every=args.explain_all, busy=busy)
    print_accesses(accesses(queries))
    print(summary(probes, timings, queries, TARGET_SECONDS, busy=busy))


if __name__ == "__main__":
    main()
