"""Audit rows of every kind, as the services write them, for the audit log's tests and screenshots."""
from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import AuditAction, AuditEvent, User, Workspace

CHROME_LINUX = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.6778.85 Safari/537.36")
FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"
SAFARI_IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
                 "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1")
EDGE_WINDOWS = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.70")
MOMENT = "2026-12-02T14:03:27.120000+00:00"
EARLIER = "2026-12-02T11:40:05+00:00"
KEY = {"name": "Production", "region": "us", "key": "•••• k3Yq"}

ROWS: list[tuple[str, str, str, dict[str, object]]] = [
    # action, target type, target id, details
    (AuditAction.CONNECTION_RECOVERED_NOTIFIED, "connection", "5",
     {**KEY, "after": "retrying", "since": EARLIER, "until": MOMENT, "failed_requests": 14, "last_status": 503,
      "last_reply": "Service Unavailable", "recipients": 2}),
    (AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED, "connection", "5",
     {**KEY, "dead_letters_24h": 1200, "threshold": 100, "recipients": 2}),
    (AuditAction.IMPORT_FINISHED, "importjob", "3",
     {"file": "orders-2026-11.jsonl", "outcome": "done", "events_stored": 48210, "already_in_workspace": 12,
      "skipped_invalid": 7}),
    (AuditAction.IMPORT_STARTED, "importjob", "3",
     {"file": "orders-2026-11.jsonl", "lines": 48229, "skipped_invalid": 7, "chosen": "at upload"}),
    (AuditAction.IMPORT_UPLOADED, "importjob", "3",
     {"file": "orders-2026-11.jsonl", "format": "jsonl", "size": 18_874_368, "start_when_checked": True}),
    (AuditAction.DEAD_LETTERS_REPLAYED, "connection", "5",
     {"connection": "Production", "replay": 4, "filter": {"since": EARLIER, "name": "Order Completed"},
      "matched": 120, "dead_letters": 120, "cap": 10000}),
    (AuditAction.CONNECTION_KEY_REPLACED, "connection", "5",
     {**KEY, "previous_key": "•••• a9Zt", "previous_region": "eu"}),
    (AuditAction.CONNECTION_PAUSED, "connection", "5",
     {**KEY, "reason": "Segment answered 401 for this write key: it was revoked or belongs to another region."}),
    (AuditAction.CONNECTION_CHECKED, "connection", "5",
     {"trigger": "key_replaced", "outcome": "passed", "summary": "Segment accepted a test event.",
      "test_message_id": "tributary-check-6f1c"}),
    (AuditAction.INGEST_KEY_CREATED, "ingestkey", "2", {"name": "Web app", "hint": "x8Qe"}),
    (AuditAction.MEMBER_ROLE_CHANGED, "membership", "9",
     {"email": "dora.longname-from-marketing@example-enterprises.com", "from": "member", "to": "admin"}),
    (AuditAction.MEMBER_INVITED, "membership", "9",
     {"email": "dora.longname-from-marketing@example-enterprises.com", "role": "member"}),
    (AuditAction.ACCESS_DENIED, "", "",
     {"path": "/w/alice-analytics/settings/members/add/", "method": "POST",
      "reason": "Only owners and admins can do this.", "shiny_new_key": "kept readable"}),
    (AuditAction.WORKSPACE_RENAMED, "workspace", "1", {"from": "Alice Analytics", "to": "Alice Analytics EU"}),
    # Added after the rows above, so each of them keeps its address and browser in the screenshots.
    (AuditAction.CONNECTION_RETRIED_NOW, "connection", "5", {**KEY, "failures": 9, "was_due": EARLIER}),
]
AGENTS = [CHROME_LINUX, FIREFOX_WINDOWS, SAFARI_IPHONE, EDGE_WINDOWS]
ADDRESSES = ["203.0.113.24", "2001:db8:85a3:1319:8a2e:370:7348:7334", "198.51.100.7", None]


def seed_audit_rows(workspace: Workspace, actor: User) -> None:
    now = timezone.now()
    for number, (action, target_type, target_id, details) in enumerate(ROWS):
        system = action.startswith(("connection.recovered", "connection.dead", "import.finished", "connection.paused"))
        AuditEvent.objects.create(
            workspace=workspace, actor=None if system else actor, actor_email="" if system else actor.email,
            action=action, target_type=target_type, target_id=target_id, details=details,
            ip=None if system else ADDRESSES[number % len(ADDRESSES)],
            user_agent="" if system else AGENTS[number % len(AGENTS)],
            created_at=now - timedelta(minutes=number),
        )
