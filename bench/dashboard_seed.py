"""Seed the dashboard benchmark's database: 100 workspaces with their people, 300 connections,
a 1,000,000-event log skewed like real tenants, 30 days of attempts and counts, dead letters,
rejected events, connection checks and the audit log. Then ANALYZE.

Import after `django.setup()` (production settings pointed at the bench database, with the
encryption key recorded for this database, see `Seeded`).

What goes through the product's own code and what is bulk:
- workspaces: `accounts.services.workspace_create` (the workspace, its owner's membership and
  the audit row), backdated afterwards;
- users: bulk, all with one PBKDF2 hash (each `create_user` would hash for ~0.3 s);
- other memberships, ingest keys (hashed as `IngestKey.hash` does), imports: `bulk_create`;
- connections: `bulk_create` of rows whose keys went through `Connection.set_write_key`, so
  they are encrypted (and fingerprinted) as in production;
- events: normalised by `integrations.ingest.messages.Normaliser`, written with the relay's
  own binary COPY columns and types; attempts, counts, dead letters, checks, audit rows and
  rejected events: COPY, with foreign-key triggers off for the load (the rows are consistent
  by construction; `session_replication_role = replica`).
"""

from __future__ import annotations

import multiprocessing
import os
import random
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
import psycopg
from dashboard_meta import Plan, Seeded, record_seeded
from dashboard_seed_deliveries import (
    ATTEMPT_COLUMNS,
    ATTEMPT_TYPES,
    COUNT_COLUMNS,
    COUNT_TYPES,
    Ledger,
    history,
)
from dashboard_seed_events import BUCKETS_PER_DAY, Emitter, copy_events, traffic_for
from dashboard_seed_records import (
    audit_rows,
    checks,
    copy_audit,
    copy_checks,
    copy_rejected,
    imports,
    ingest_keys,
    rejected_rows,
    sign_ins,
)
from dashboard_tenants import Line, Person, Story, Tenant, copy_rows, indexes_built_after, table
from django import db
from django.contrib.auth.hashers import make_password
from django.db.models import Model
from django.utils import timezone
from django.utils.text import slugify
from psycopg.types.json import set_json_dumps

from accounts import services as accounts
from accounts.audit import Actor
from accounts.models import AuditEvent, Membership, Role, User, Workspace
from integrations.ingest.messages import Normaliser
from integrations.models import (
    Connection,
    DeadLetter,
    DeliveryAttempt,
    DeliveryCount,
    Event,
    EventStream,
    Health,
    ImportJob,
    IngestKey,
)

LARGE_EMAIL = "bench-large@tributary.localhost"
SMALL_EMAIL = "bench-small@tributary.localhost"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
FIRST = ("Ada", "Ben", "Chloe", "Dev", "Elena", "Farid", "Greta", "Hiro", "Ines", "Jonas", "Kemi", "Luca", "Maya",
         "Nils", "Olga", "Priya", "Quinn", "Rosa", "Sami", "Tomas", "Uma", "Victor", "Wen", "Yara", "Zoe")
LAST = ("Adler", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jansen", "Kowalski",
        "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Silva", "Tanaka", "Varga", "Weber", "Yilmaz")
BRANDS = ("Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Wonka", "Stark", "Wayne", "Tyrell",
          "Cyberdyne", "Soylent", "Massive", "Aperture", "Gringotts", "Oscorp", "Nakatomi", "Monarch", "Pied Piper",
          "Dunder", "Sirius", "Paper Street", "Blue Sun", "Virtucon", "Bluth")
KINDS = ("Commerce", "Analytics", "Labs", "Health", "Travel", "Media", "Games", "Learning")
# How long ago (in 10-minute buckets) a connection stopped delivering, by story.
STOPS = {Story.BEHIND: (3, 18), Story.PAUSED: (6, 120), Story.DISABLED: (12, 150)}
LINE_NAMES = ("Production", "Staging", "Data warehouse", "Marketing", "EU production", "Mobile apps")
T = TypeVar("T")


def seed(plan: Plan, seeded: Seeded, database_url: str) -> None:
    """Fill the (migrated, empty) bench database; records `seeded` in it last, once all is in.

    The two big loads are Python-bound (making realistic rows), so they run side by side on
    the two cores: the event log in a forked process, the delivery history in this one.
    """
    started = time.monotonic()
    rnd = random.Random(plan.seed)
    now = timezone.now()
    tenants = _step("workspaces and people", lambda: _people(plan, seeded.password, now, rnd), _describe_people)
    _step("traffic and connections", lambda: _connections(plan, tenants, now, rnd),
          lambda _: f"{sum(len(t.lines) for t in tenants)} connections")
    db.connections.close_all()  # the child must not share this process's database socket
    log = multiprocessing.get_context("fork").Process(target=_event_log, args=(database_url, tenants, now, plan.seed))
    log.start()
    try:
        ledgers = _history(database_url, tenants, now, rnd)
        log.join()
    finally:
        if log.is_alive():  # this process failed first: stop the one it started
            log.terminate()
            log.join()
    if log.exitcode != 0:
        raise SystemExit(f"writing the event log failed (exit code {log.exitcode}); see above")
    with _bulk_connection(database_url) as connection:
        _step("dead letters", lambda: _dead_letters(connection, tenants, ledgers, rnd), lambda n: f"{n:,}",
              connection)
        _step("checks, audit log, rejected events, keys, imports",
              lambda: _records(connection, tenants, ledgers, now, rnd), lambda n: f"{n:,} audit rows", connection)
        _positions(connection, tenants)
        _step("check", lambda: _check(connection), lambda n: f"counts agree with attempts and dead letters for "
              f"{n} connections, every position is inside its log", connection)
    _step("ANALYZE", lambda: _analyze(database_url), lambda _: "everything")
    seeded.seeded_at, seeded.seconds = now.isoformat(), round(time.monotonic() - started, 1)
    record_seeded(database_url, seeded)
    print(f"  seeded in {seeded.seconds:.0f} s", flush=True)


def _event_log(database_url: str, tenants: list[Tenant], now: datetime, seed: int) -> None:
    """The forked process's work: the event log and the streams' ends, committed."""
    with _bulk_connection(database_url) as connection, \
            _indexes_built_after(connection, (Event,), "the event log"):
        _step("event log (second process)", lambda: _events(connection, tenants, now, seed),
              lambda n: f"{n:,} events", connection)


def _history(database_url: str, tenants: list[Tenant], now: datetime, rnd: random.Random) -> dict[int, Ledger]:
    """This process's share of the big loads: attempts and counts, committed."""
    with _bulk_connection(database_url) as connection, \
            _indexes_built_after(connection, (DeliveryAttempt, DeliveryCount), "attempts and counts"):
        return _step("attempts and counts", lambda: _deliveries(connection, tenants, now, rnd), _describe_ledgers,
                     connection)


@contextmanager
def _bulk_connection(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A connection for COPY, committed when the block ends. Foreign-key triggers are off for
    its session: every row refers to rows made before it, by construction."""
    with psycopg.connect(database_url) as connection:
        connection.execute("SET session_replication_role = replica")
        set_json_dumps(orjson.dumps, connection)
        yield connection


@contextmanager
def _indexes_built_after(connection: psycopg.Connection[Any], models_: tuple[type[Model], ...],
                         what: str) -> Iterator[None]:
    with indexes_built_after(connection, models_):
        yield
        started, cpu = time.monotonic(), _backend_cpu(connection)
    print(f"  built the indexes of {what} ({time.monotonic() - started:.1f} s; CPU: PostgreSQL "
          f"{_backend_cpu(connection) - cpu:.1f} s)", flush=True)


def _step(label: str, work: Callable[[], T], describe: Callable[[T], str],
          connection: psycopg.Connection[Any] | None = None) -> T:
    """Run one seeding step and say what it made, how long it took, and the CPU this process
    and its PostgreSQL backend used meanwhile (the machine is shared: wall time alone says
    little about the seeding's own cost)."""
    started, cpu = time.monotonic(), time.process_time()
    backend = _backend_cpu(connection) if connection else 0.0
    result = work()
    used = f"; its PostgreSQL backend {_backend_cpu(connection) - backend:.1f} s" if connection else ""
    print(f"  seeded {label}: {describe(result)} ({time.monotonic() - started:.1f} s; CPU: this process "
          f"{time.process_time() - cpu:.1f} s{used})", flush=True)
    return result


def _backend_cpu(connection: psycopg.Connection[Any]) -> float:
    """CPU seconds the connection's PostgreSQL backend has used (from /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{connection.info.backend_pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Workspaces and people ----------------------------------------------------------------------

def _people(plan: Plan, password: str, now: datetime, rnd: random.Random) -> list[Tenant]:
    """Users in bulk, workspaces through the service, then the other memberships."""
    hashed = make_password(password)
    tenants = [Tenant(rank=rank, name=name, domain=f"{slugify(name)}.example", logged=logged,
                      traffic=traffic_for(logged=logged, now=now, days=plan.days, log_hours=plan.log_hours, rnd=rnd),
                      lines=[])
               for rank, (name, logged) in enumerate(zip(_names(plan.workspaces, rnd), plan.shares(), strict=True),
                                                     start=1)]
    emails = {t.rank: _emails(t, rnd) for t in tenants}
    emails[1][0], emails[len(tenants)][0] = LARGE_EMAIL, SMALL_EMAIL
    users = User.objects.bulk_create([User(email=e, password=hashed, full_name=_full_name(e))
                                      for t in tenants for e in emails[t.rank]])
    by_email = {u.email: u for u in users}
    memberships = []
    for tenant in tenants:
        owner = by_email[emails[tenant.rank][0]]
        workspace = accounts.workspace_create(actor=Actor(user=owner, ip="198.51.100.7", user_agent=BROWSER),
                                              name=tenant.name)
        tenant.workspace_id, tenant.slug = workspace.pk, workspace.slug
        tenant.people = [Person(owner.pk, owner.email, Role.OWNER)]
        for number, email in enumerate(emails[tenant.rank][1:]):
            role = Role.ADMIN if number < 2 else Role.MEMBER
            tenant.people.append(Person(by_email[email].pk, email, role))
            memberships.append(Membership(workspace_id=workspace.pk, user=by_email[email], role=role,
                                          created_at=now - timedelta(days=rnd.uniform(31, 120))))
    # The large workspace's owner works for an agency: a member of four more workspaces.
    for tenant in tenants[1:5]:
        memberships.append(Membership(workspace_id=tenant.workspace_id, user=by_email[LARGE_EMAIL], role=Role.MEMBER))
        tenant.people.append(Person(by_email[LARGE_EMAIL].pk, LARGE_EMAIL, Role.MEMBER))
    Membership.objects.bulk_create(memberships)
    _backdate(tenants, now, rnd)
    return tenants


def _names(count: int, rnd: random.Random) -> list[str]:
    names = [f"{brand} {kind}" for brand in BRANDS for kind in KINDS]
    rnd.shuffle(names)
    if count > len(names):
        names += [f"Tenant {n}" for n in range(count - len(names))]
    return names[:count]


def _emails(tenant: Tenant, rnd: random.Random) -> list[str]:
    """The owner first, then admins and members: more people in bigger workspaces."""
    people = 1 + max(1, round(12 / tenant.rank ** 0.5))
    return [f"{rnd.choice(FIRST).lower()}.{rnd.choice(LAST).lower()}{n}@{tenant.domain}" for n in range(people)]


def _full_name(email: str) -> str:
    if email.endswith("tributary.localhost"):
        return "Bench " + email.split("@")[0].split("-")[1].capitalize()
    first, last = email.split("@")[0].split(".")
    return f"{first.capitalize()} {last.rstrip('0123456789').capitalize()}"


def _backdate(tenants: list[Tenant], now: datetime, rnd: random.Random) -> None:
    """The service stamped workspaces (and their audit rows) with now; they are older. Raw SQL:
    the audit log refuses updates through the ORM, and this is fixture shaping, not a change."""
    from django.db import connection

    with connection.cursor() as cursor:
        for tenant in tenants:
            created = now - timedelta(days=rnd.uniform(130, 400))
            cursor.execute(f"UPDATE {table(Workspace)} SET created_at = %s WHERE id = %s",
                           [created, tenant.workspace_id])
            cursor.execute(f"UPDATE {table(Membership)} SET created_at = %s WHERE workspace_id = %s AND role = %s",
                           [created, tenant.workspace_id, Role.OWNER])
            cursor.execute(f"UPDATE {table(AuditEvent)} SET created_at = %s WHERE workspace_id = %s",
                           [created, tenant.workspace_id])


def _describe_people(tenants: list[Tenant]) -> str:
    people = {p.email for t in tenants for p in t.people}
    return (f"{len(tenants)} workspaces, {len(people)} people; events in the log from "
            f"{tenants[0].logged:,} (largest) to {tenants[-1].logged:,} (smallest)")


# Connections --------------------------------------------------------------------------------

def _connections(plan: Plan, tenants: list[Tenant], now: datetime, rnd: random.Random) -> None:
    """Each tenant's connections and their stories; the rows, with encrypted keys."""
    expired_rank = min(len(tenants), 60)
    rows = []
    for tenant in tenants:
        tenant.lines = _stories(plan, tenant, rnd, with_expired=tenant.rank == expired_rank)
        for line in tenant.lines:
            row = _connection_row(tenant, line, now, rnd)
            line.last4 = row.write_key_last4
            rows.append(row)
    lines = [line for tenant in tenants for line in tenant.lines]
    for row, line in zip(Connection.objects.bulk_create(rows), lines, strict=True):
        line.id = row.pk


def _stories(plan: Plan, tenant: Tenant, rnd: random.Random, *, with_expired: bool) -> list[Line]:
    buckets = len(tenant.traffic.counts)
    names = [LINE_NAMES[0], *rnd.sample(LINE_NAMES[1:], plan.connections_per_workspace - 1)]
    if tenant.rank == 1:  # the largest shows every state at once
        stories = ([Story.LIVE, Story.BEHIND, Story.PAUSED] + [Story.LIVE] * len(names))[: len(names)]
    else:
        stories = [rnd.choices(list(Story)[:4], (87, 6, 4, 3))[0] for _ in names]
        if with_expired:
            stories[-1] = Story.EXPIRED
    lines: list[Line] = []
    for name, story in zip(names, stories, strict=True):
        line = Line(name=name, region="eu" if name.startswith("EU") or rnd.random() < 0.2 else "us", story=story)
        if story == Story.LIVE and rnd.random() < 0.1 and tenant.rank > 1:
            line.created_bucket = rnd.randrange(BUCKETS_PER_DAY, buckets - 2 * BUCKETS_PER_DAY)
        if story in STOPS:  # buckets ago, all inside the log's window
            line.stop_bucket = buckets - rnd.randrange(*STOPS[story])
        if story == Story.EXPIRED:
            resumed = buckets - 200
            line.pause = (resumed - 7 * BUCKETS_PER_DAY - 72, resumed)
        line.incidents = _incidents(line, buckets, rnd, many=tenant.rank == 1)
        line.rejects = rnd.choice((0.0, 0.0002, 0.0003, 0.001))
        if rnd.random() < 0.05 or (tenant.rank == 1 and not lines):  # a bad release, caught within hours
            begin = rnd.randrange(line.created_bucket + 1, buckets - 20)
            line.spell = (begin, begin + rnd.randrange(3, 15))
        lines.append(line)
    return lines


def _incidents(line: Line, buckets: int, rnd: random.Random, *, many: bool) -> list[tuple[int, int]]:
    """Outages that recovered: non-overlapping, before any stop."""
    end = min(x for x in (line.stop_bucket, line.pause[0] if line.pause else None, buckets - 2) if x is not None)
    candidates = range(line.created_bucket + 1, max(line.created_bucket + 1, end - 8))
    count = min(len(candidates), 3 if many else rnd.choice((0, 0, 0, 1, 2)))
    starts = sorted(rnd.sample(candidates, count))
    incidents: list[tuple[int, int]] = []
    for start in starts:
        if not incidents or start > incidents[-1][0] + incidents[-1][1]:
            incidents.append((start, rnd.randrange(1, 7)))
    return incidents


def _connection_row(tenant: Tenant, line: Line, now: datetime, rnd: random.Random) -> Connection:
    traffic = tenant.traffic
    created = (traffic.time_of(line.created_bucket) + timedelta(seconds=rnd.uniform(0, 600)) if line.created_bucket
               else now - timedelta(days=rnd.uniform(31, 300)))
    row = Connection(workspace_id=tenant.workspace_id, name=line.name, region=line.region,
                     created_by_id=tenant.people[0].user_id, created_at=created, enabled=line.story != Story.DISABLED,
                     health=Health.FAILING if line.story == Story.PAUSED else Health.HEALTHY)
    row.set_write_key(secrets.token_hex(16))
    if line.story == Story.PAUSED:
        row.paused_reason = "Segment refused the key (HTTP 401). Check the key and run a check."
    if line.story == Story.BEHIND:
        row.next_attempt_at = now + timedelta(seconds=rnd.uniform(5, 300))
    if line.pause:
        row.key_replaced_at = traffic.time_of(line.pause[1]) - timedelta(minutes=2)
    return row


# The event log and the delivery history ------------------------------------------------------

def _events(connection: psycopg.Connection[Any], tenants: list[Tenant], now: datetime, seed: int) -> int:
    total = 0
    for tenant in tenants:
        emitter = Emitter(tenant.domain, users=50 + tenant.logged // 40, rnd=random.Random(seed + tenant.rank))
        total += copy_events(connection, tenant.workspace_id, tenant.traffic, emitter, now)
    connection.execute(f"INSERT INTO {table(EventStream)} (workspace_id, last_seq) "
                       "SELECT unnest(%s::bigint[]), unnest(%s::bigint[])",
                       [[t.workspace_id for t in tenants], [t.traffic.last_seq for t in tenants]])
    return total


def _deliveries(connection: psycopg.Connection[Any], tenants: list[Tenant], now: datetime,
                rnd: random.Random) -> dict[int, Ledger]:
    """Each connection's attempts and counts, one COPY each; the ledgers keep only the dead
    letters (the attempt rows are written and dropped, connection by connection)."""
    ledgers = {}
    for tenant in tenants:
        for line in tenant.lines:
            ledger = history(line, tenant.traffic, rnd, now)
            copy_rows(connection, DeliveryAttempt, ATTEMPT_COLUMNS, ledger.attempts, ATTEMPT_TYPES)
            copy_rows(connection, DeliveryCount, COUNT_COLUMNS, (
                (line.id, tenant.traffic.time_of(bucket), c.delivered, c.failed, c.retried, 0, c.api_calls, c.bytes,
                 c.latency(), c.latency_max()) for bucket, c in sorted(ledger.counts.items())), COUNT_TYPES)
            ledger.written, ledger.attempts = len(ledger.attempts), []
            ledgers[line.id] = ledger
    return ledgers


def _describe_ledgers(ledgers: dict[int, Ledger]) -> str:
    attempts = sum(ledger.written for ledger in ledgers.values())
    counts = sum(len(ledger.counts) for ledger in ledgers.values())
    return f"{attempts:,} attempts, {counts:,} 10-minute counts"


def _dead_letters(connection: psycopg.Connection[Any], tenants: list[Tenant], ledgers: dict[int, Ledger],
                  rnd: random.Random) -> int:
    """Bodies made like the log's; those whose event is still in the log then take its copy."""
    rows = []
    for tenant in tenants:
        emitter = Emitter(tenant.domain, users=50, rnd=rnd)
        for line in tenant.lines:
            for letter in ledgers[line.id].letters:
                m = Normaliser(received_at=letter.received_at)(emitter.message(sent_at=letter.received_at))
                rows.append((line.id, letter.seq, m.message_id, m.type, m.name, m.body, letter.reason, letter.status,
                             letter.response, letter.created_at, letter.received_at,
                             1 if letter.replayed_at else 0, letter.replayed_at))
    rows.sort(key=lambda row: row[9])
    copy_rows(connection, DeadLetter, ("connection_id", "seq", "message_id", "type", "name", "body", "reason",
                                       "status", "response", "created_at", "received_at", "replays", "replayed_at"),
              rows)
    connection.execute(
        f"UPDATE {table(DeadLetter)} d SET message_id = e.message_id, type = e.type, name = e.name, body = e.body "
        f"FROM {table(Connection)} c, {table(Event)} e WHERE c.id = d.connection_id "
        "AND e.workspace_id = c.workspace_id AND e.seq = d.seq")
    return len(rows)


def _records(connection: psycopg.Connection[Any], tenants: list[Tenant], ledgers: dict[int, Ledger],
             now: datetime, rnd: random.Random) -> int:
    """Checks, rejected events, ingest keys, imports and the audit log; returns the audit rows."""
    created = dict(Connection.objects.values_list("pk", "created_at"))
    copy_checks(connection, [row for t in tenants for line in t.lines
                             for row in checks(t, line, created[line.id], now, rnd)])
    rejected: list[tuple[Any, ...]] = []
    for tenant in tenants:
        emitter = Emitter(tenant.domain, users=20, rnd=rnd)
        rejected += rejected_rows(tenant, emitter, max(3, tenant.logged * 3_000 // sum(t.logged for t in tenants)),
                                  now, rnd)
    copy_rejected(connection, rejected)
    IngestKey.objects.bulk_create([key for t in tenants for key in ingest_keys(t, now, rnd)])
    ImportJob.objects.bulk_create([job for t in tenants for job in imports(t, now, rnd)])
    people = list({p.user_id: p for t in tenants for p in t.people}.values())
    return copy_audit(connection, [*(row for t in tenants for row in audit_rows(t, ledgers, created, now, rnd)),
                                   *sign_ins(people, now, rnd)])


def _positions(connection: psycopg.Connection[Any], tenants: list[Tenant]) -> None:
    lines = [line for t in tenants for line in t.lines]
    connection.execute(
        f"UPDATE {table(Connection)} c SET delivered_seq = p.seq, failures = p.failures "
        "FROM (SELECT unnest(%s::bigint[]) AS id, unnest(%s::bigint[]) AS seq, unnest(%s::int[]) AS failures) p "
        "WHERE c.id = p.id",
        [[line.id for line in lines], [line.delivered_seq for line in lines], [line.failures for line in lines]])


def _check(connection: psycopg.Connection[Any]) -> int:
    """The seed keeps the product's invariants: each connection's counts add up to its attempts
    and dead letters (as accounting adds them), and its position lies within its log."""
    attempts, counts, letters = table(DeliveryAttempt), table(DeliveryCount), table(DeadLetter)
    row = connection.execute(
        f"WITH a AS (SELECT connection_id, count(*) AS calls, sum(bytes) AS bytes, "
        f"coalesce(sum(events) FILTER (WHERE outcome = 'delivered'), 0) AS delivered, "
        f"coalesce(sum(events) FILTER (WHERE outcome = 'retrying'), 0) AS retried FROM {attempts} GROUP BY 1), "
        f"c AS (SELECT connection_id, sum(api_calls) AS calls, sum(bytes) AS bytes, sum(delivered) AS delivered, "
        f"sum(retried) AS retried, sum(failed) AS failed FROM {counts} GROUP BY 1), "
        f"l AS (SELECT connection_id, count(*) AS failed FROM {letters} GROUP BY 1) "
        "SELECT count(*), count(*) FILTER (WHERE (a.calls, a.bytes, a.delivered, a.retried, coalesce(l.failed, 0)) "
        "IS DISTINCT FROM (c.calls, c.bytes, c.delivered, c.retried, c.failed)) "
        "FROM a FULL JOIN c USING (connection_id) LEFT JOIN l USING (connection_id)").fetchone()
    outside = connection.execute(
        f"SELECT count(*) FROM {table(Connection)} c JOIN {table(EventStream)} s USING (workspace_id) "
        f"WHERE c.delivered_seq > s.last_seq OR c.delivered_seq < (SELECT min(seq) - 1 FROM {table(Event)} e "
        "WHERE e.workspace_id = c.workspace_id)").fetchone()
    assert row is not None and outside is not None
    if row[1] or outside[0]:
        raise SystemExit(f"the seed is inconsistent: {row[1]} connections' counts disagree with their attempts, "
                         f"{outside[0]} positions lie outside their log")
    return int(row[0])


def _analyze(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute("ANALYZE")


