"""What else a month of use leaves behind: daily connection checks, the audit log, rejected
events, ingest keys and finished imports. Bulk-written with COPY; every value is one the
product itself would have written (audit details as the services write them, rejection
reasons from the real normaliser)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg
from dashboard_seed_deliveries import Ledger
from dashboard_seed_events import Emitter, bucket_start
from dashboard_tenants import Line, Person, Story, Tenant, copy_rows, table
from psycopg.types.json import Jsonb

from accounts.models import AuditEvent
from integrations.ingest.messages import Invalid, Normaliser
from integrations.models import Connection, ImportJob, IngestKey, RejectedEvent, Verification
from integrations.models.ingest import KEY_PREFIX

BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4"
PASSED = [
    {"check": "key_format", "status": "passed", "message": "Key format is plausible"},
    {"check": "cdn_lookup", "status": "passed", "message": "Key recognised by Segment"},
    {"check": "region", "status": "passed", "message": "region {region} confirmed"},
    {"check": "test_event", "status": "passed",
     "message": "test event accepted: look for message {mid} in your Source Debugger"},
]
UNKNOWN_KEY = ("Segment does not recognise this write key. Check that you copied the whole key of the right "
               "source and that the source still exists, then paste it again.")
AUDIT_COLUMNS = ("workspace_id", "actor_id", "actor_email", "action", "target_type", "target_id", "ip",
                 "user_agent", "details", "created_at")
AuditRow = tuple[int | None, int | None, str, str, str, str, str | None, str, Jsonb, datetime]


def describe(line: Line) -> dict[str, str]:
    """What the services put in a connection's audit details (its masked key, never the key)."""
    return {"name": line.name, "region": line.region, "key": f"•••• {line.last4}"}


# Connection checks ------------------------------------------------------------------------

def checks(tenant: Tenant, line: Line, created: datetime, now: datetime,
           rnd: random.Random) -> Iterator[tuple[Any, ...]]:
    """The check run when the connection was created, then the daily 04:07 check."""
    owner = tenant.people[0].user_id
    yield _check(line, created + timedelta(seconds=2), "created", owner, passed=True, rnd=rnd)
    for day in _daily(created, now):
        yield _check(line, day, "scheduled", None, passed=_passes(line, tenant, day), rnd=rnd)


def _passes(line: Line, tenant: Tenant, moment: datetime) -> bool:
    traffic = tenant.traffic
    if line.story == Story.PAUSED and line.stop_bucket is not None:
        return moment < traffic.time_of(line.stop_bucket)
    if line.story == Story.EXPIRED and line.pause:
        return not traffic.time_of(line.pause[0]) <= moment < traffic.time_of(line.pause[1])
    return True


def _check(line: Line, at: datetime, trigger: str, requested_by: int | None, *, passed: bool,
           rnd: random.Random) -> tuple[Any, ...]:
    mid = f"tributary-check-{rnd.getrandbits(128):032x}"
    if passed:
        checks = [{**c, "message": c["message"].format(region=line.region.upper(), mid=mid)} for c in PASSED]
        summary = " · ".join(c["message"] for c in checks[1:])
        outcome = "passed"
    else:
        checks = [PASSED[0], {"check": "cdn_lookup", "status": "failed", "message": UNKNOWN_KEY}]
        checks += [{"check": c, "status": "skipped", "message": "Not run: an earlier check did not pass."}
                   for c in ("region", "test_event")]
        summary, outcome, mid = UNKNOWN_KEY, "failed", ""
    finished = at + timedelta(milliseconds=rnd.randrange(300, 2500))
    return (line.id, trigger, requested_by, outcome, summary, Jsonb(checks), mid, at, finished, "")


def copy_checks(connection: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> None:
    copy_rows(connection, Verification, ("connection_id", "trigger", "requested_by_id", "outcome", "summary",
                                         "checks", "test_message_id", "created_at", "finished_at",
                                         "requested_user_agent"), rows)
    # Each connection shows its newest check.
    connection.execute(
        f"UPDATE {table(Connection)} c SET latest_verification_id = v.id FROM (SELECT DISTINCT ON (connection_id) "
        f"connection_id, id FROM {table(Verification)} ORDER BY connection_id, created_at DESC) v "
        "WHERE v.connection_id = c.id")


# The audit log ----------------------------------------------------------------------------

def audit_rows(tenant: Tenant, ledgers: dict[int, Ledger], created: dict[int, datetime], now: datetime,
               rnd: random.Random) -> Iterator[AuditRow]:
    """The workspace's history: people joining, connections made, checked, paused and
    resumed, keys replaced, dead letters expired and replayed."""
    owner = tenant.people[0]
    workspace = tenant.workspace_id
    for person in tenant.people[1:]:
        at = now - timedelta(days=rnd.uniform(31, 120))
        yield _audit(workspace, owner.user_id, owner.email, "member.added", "membership", person.user_id, at,
                     {"email": person.email, "role": person.role})
    for line in tenant.lines:
        yield from _line_history(tenant, line, ledgers[line.id], created[line.id], now, rnd)


def _line_history(tenant: Tenant, line: Line, ledger: Ledger, created: datetime, now: datetime,
                  rnd: random.Random) -> Iterator[AuditRow]:
    owner, workspace, traffic = tenant.people[0], tenant.workspace_id, tenant.traffic
    yield _audit(workspace, owner.user_id, owner.email, "connection.created", "connection", line.id, created,
                 describe(line))
    for at in _daily(created, now):
        yield _audit(workspace, None, "", "connection.checked", "connection", line.id, at + timedelta(seconds=2),
                     {"trigger": "scheduled", "outcome": "passed" if _passes(line, tenant, at) else "failed"})
    stop = line.pause[0] if line.pause else line.stop_bucket
    if stop is not None and line.story in (Story.PAUSED, Story.EXPIRED):
        yield _audit(workspace, None, "", "connection.paused", "connection", line.id, traffic.time_of(stop),
                     {**describe(line), "reason": "Segment refused the key (HTTP 401). Check the key and run a check."})
    if line.story == Story.DISABLED and line.stop_bucket is not None:
        yield _audit(workspace, owner.user_id, owner.email, "connection.disabled", "connection", line.id,
                     traffic.time_of(line.stop_bucket), describe(line))
    if line.pause:
        resumed = traffic.time_of(line.pause[1])
        yield _audit(workspace, owner.user_id, owner.email, "connection.key_replaced", "connection", line.id,
                     resumed - timedelta(minutes=2), {**describe(line), "previous_key": "•••• 0d1e"})
        yield _audit(workspace, None, "", "connection.resumed", "connection", line.id, resumed, describe(line))
    expired: dict[datetime, int] = {}
    for letter in ledger.letters:
        if letter.reason == "expired":
            expired[letter.created_at] = expired.get(letter.created_at, 0) + 1
        elif letter.replayed_at is not None:
            yield _audit(workspace, owner.user_id, owner.email, "dead_letter.replayed", "connection", line.id,
                         letter.replayed_at - timedelta(seconds=1), {**describe(line), "count": 1})
    for at, events in expired.items():
        yield _audit(workspace, None, "", "connection.events_expired", "connection", line.id, at,
                     {"events": events, "max_age_hours": 168})


def _daily(created: datetime, now: datetime) -> Iterator[datetime]:
    """Beat's daily check, 04:07 UTC, from the day after the connection was made."""
    day = bucket_start(created).replace(hour=4, minute=7) + timedelta(days=1)
    while day < now:
        yield day
        day += timedelta(days=1)


def sign_ins(people: list[Person], now: datetime, rnd: random.Random, days: int = 180) -> Iterator[AuditRow]:
    """Each person's sign-ins (every day or two) and the odd failed one. Account events have
    no workspace: the audit page finds them through the workspace's members."""
    for person in people:
        at = now - timedelta(days=days)
        while True:
            at += timedelta(hours=rnd.expovariate(1 / 30))
            if at >= now:
                break
            if rnd.random() < 0.04:
                yield _audit(None, person.user_id, person.email, "auth.login_failed", "", "", at,
                             {"email": person.email})
            yield _audit(None, person.user_id, person.email, "auth.logged_in", "user", person.user_id, at, {})


def _audit(workspace: int | None, actor: int | None, email: str, action: str, target_type: str,
           target_id: int | str, at: datetime, details: dict[str, Any]) -> AuditRow:
    ip = f"198.51.100.{(actor or 0) % 250 + 1}" if actor else None
    return (workspace, actor, email, action, target_type, str(target_id), ip, BROWSER if actor else "",
            Jsonb(details), at)


def copy_audit(connection: psycopg.Connection[Any], rows: list[AuditRow]) -> int:
    rows.sort(key=lambda row: row[-1])  # ids in time order, as appends would have made them
    return copy_rows(connection, AuditEvent, AUDIT_COLUMNS, rows)


# Rejected events, ingest keys, imports -----------------------------------------------------

def mistake(event: dict[str, Any], kind: int) -> dict[str, Any]:
    """What emitters get wrong: a track without its name, no user at all, a timestamp that is
    not one, a misspelt type, a messageId far too long."""
    if kind == 0:
        return {**{k: v for k, v in event.items() if k != "event"}, "type": "track"}
    if kind == 1:
        return {k: v for k, v in event.items() if k not in ("userId", "anonymousId", "previousId")}
    if kind == 2:
        return {**event, "timestamp": "yesterday 10:00"}
    if kind == 3:
        return {**event, "type": "trak"}
    return {**event, "messageId": "m" * 140}


def rejected_rows(tenant: Tenant, emitter: Emitter, count: int, now: datetime,
                  rnd: random.Random) -> Iterator[tuple[Any, ...]]:
    """Invalid calls, refused by the real normaliser: its reason and detail are what the page shows."""
    normalise = Normaliser(received_at=now)
    moments = sorted(now - timedelta(days=30 * rnd.random() ** 0.7) for _ in range(count))
    for moment in moments:
        raw = mistake(emitter.message(sent_at=moment), rnd.randrange(5))
        try:
            normalise(raw)
            continue
        except Invalid as invalid:
            reason, detail = invalid.reason, invalid.detail
        source = ("http:batch", "http:track", "python")[rnd.randrange(3)]
        index = rnd.randrange(100) if source == "http:batch" else None
        given = raw.get("messageId")
        message_id = given if isinstance(given, str) else ""
        yield (tenant.workspace_id, moment, source, index, reason, detail[:300], message_id[:100],
               orjson.dumps(raw).decode()[:1000])


def copy_rejected(connection: psycopg.Connection[Any], rows: list[tuple[Any, ...]]) -> int:
    rows.sort(key=lambda row: row[1])
    return copy_rows(connection, RejectedEvent, ("workspace_id", "received_at", "source", "index", "reason",
                                                 "detail", "message_id", "excerpt"), rows)


def ingest_keys(tenant: Tenant, now: datetime, rnd: random.Random) -> list[IngestKey]:
    owner = tenant.people[0].user_id
    names = ["Production", "Staging"][: 1 + (tenant.rank <= 40)]
    keys = []
    for name in [*names, "Old production"]:
        key = KEY_PREFIX + f"{rnd.getrandbits(240):060x}"
        created = now - timedelta(days=rnd.uniform(40, 300))
        revoked = created + timedelta(days=20) if name.startswith("Old") else None
        keys.append(IngestKey(workspace_id=tenant.workspace_id, name=name, key_hash=IngestKey.hash(key),
                              hint=key[-4:], created_by_id=owner, created_at=created, revoked_at=revoked,
                              last_used_at=None if revoked else now - timedelta(seconds=rnd.uniform(1, 50))))
    return keys


def imports(tenant: Tenant, now: datetime, rnd: random.Random) -> list[ImportJob]:
    """Finished imports of past events (none still running: no worker runs during the bench)."""
    jobs = []
    for number in range(max(0, 4 - tenant.rank // 10)):
        created = now - timedelta(days=rnd.uniform(1, 29))
        lines = rnd.randrange(2_000, 400_000)
        invalid = rnd.choice((0, 0, rnd.randrange(1, 40)))
        status = ("done", "done", "cancelled", "failed")[number % 4]
        done = lines if status == "done" else lines // 3
        jobs.append(ImportJob(
            workspace_id=tenant.workspace_id, created_by_id=tenant.people[0].user_id, created_at=created,
            file_name=f"{('orders', 'signups', 'experiments', 'pageviews')[number % 4]}-2026-{number + 1:02d}."
                      f"{'jsonl' if number % 2 else 'csv'}",
            path=f"imports/{tenant.workspace_id}/{rnd.getrandbits(64):016x}", format="jsonl" if number % 2 else "csv",
            size=lines * 420, status=status, import_valid_only=bool(invalid), lines_total=lines,
            lines_valid=lines - invalid, lines_invalid=invalid, offset_done=done * 420, lines_done=done,
            events_stored=done - (invalid if status == "done" else 0), started_at=created + timedelta(minutes=2),
            finished_at=created + timedelta(minutes=2 + lines / 20_000),
            failure="The file changed while it was imported." if status == "failed" else ""))
    return jobs

