"""Which dashboard pages the benchmark requests, for whom, with which parameters.

Every page a workspace's people open, its htmx partials (those the pages poll included),
later pages, filters and the event debugger's searches, for the owner of the largest
workspace (who also belongs to four more) and the owner of the smallest. A page still being
built answers 404 and is reported as "not built (404)", so the list can name pages before
they exist.

Import after `django.setup()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlencode

from dashboard_seed import LARGE_EMAIL, SMALL_EMAIL
from django.db.models import Count
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from accounts.models import Membership, Role
from integrations.models import Connection, DeadLetter, DeliveryAttempt, Event, ImportJob

OLDER_PAGE = 50  # where "an older page" of the attempt log starts: one page down


@dataclass(frozen=True)
class Probe:
    label: str
    email: str  # who asks
    url: str  # "" when the page has no route
    htmx: bool = False
    expect: int = 200  # workspace_home answers 302


class ProbeMaker(Protocol):
    """`pages`' local `probe`, as its helpers call it."""

    def __call__(self, label: str, name: str, *args: object, query: dict[str, object] | None = None,
                 htmx: bool = False, expect: int = 200) -> Probe: ...


@dataclass(frozen=True)
class Workspace:
    """What one workspace's probes need, looked up once with bounded, indexed queries."""

    slug: str
    busiest: int  # its first live connection (the busiest one when the workspace is the largest)
    behind: int  # a connection with a backlog, else the busiest
    dead_letters: int  # the connection with the most dead letters
    dead_letter: int  # one of its dead letters
    dead_letter_name: str  # an event name among them
    attempt_older: int  # an attempt one page down the busiest connection's log
    attempt_old: int  # an attempt three weeks back
    member_id: int  # someone to filter the audit log by
    newest_seq: int  # the log's end, and values the debugger can search for among the newest events
    user_id: str
    message_id: str
    old_message_id: str  # a messageId from the log's far end (a day old)
    event_name: str
    import_job: int  # 0 when the workspace has none


def workspace_of(email: str) -> Workspace:
    membership = Membership.objects.select_related("workspace").get(user__email=email, role=Role.OWNER)
    workspace = membership.workspace
    connections = list(Connection.objects.filter(workspace=workspace).order_by("pk"))
    live = [c for c in connections if c.enabled and not c.paused_reason and c.next_attempt_at is None]
    busiest = (live or connections)[0]
    behind = next((c for c in connections if c.next_attempt_at is not None or c.paused_reason), busiest)
    letters = (DeadLetter.objects.filter(connection__workspace=workspace).values("connection")
               .annotate(n=Count("id")).order_by("-n").first())
    letters_of = letters["connection"] if letters else busiest.pk
    letter = DeadLetter.objects.filter(connection_id=letters_of).exclude(name="").order_by("-created_at").first()
    attempts = DeliveryAttempt.objects.filter(connection=busiest).order_by("-started_at", "-id")
    older = attempts.values_list("pk", flat=True)[OLDER_PAGE:OLDER_PAGE + 1].first()
    old = attempts.filter(started_at__lt=timezone.now() - timedelta(days=21)).values_list("pk", flat=True).first()
    member = Membership.objects.filter(workspace=workspace).exclude(user__email=email).order_by("pk").first()
    newest = list(Event.objects.filter(workspace=workspace).order_by("-seq")
                  .values_list("seq", "user_id", "message_id", "name")[:200])
    oldest = Event.objects.filter(workspace=workspace).order_by("seq").values_list("message_id", flat=True).first()
    job = ImportJob.objects.filter(workspace=workspace).order_by("-created_at").values_list("pk", flat=True).first()
    return Workspace(
        slug=workspace.slug, busiest=busiest.pk, behind=behind.pk, dead_letters=letters_of,
        dead_letter=letter.pk if letter else 0, dead_letter_name=letter.name if letter else "Order Completed",
        attempt_older=older or 0, attempt_old=old or 0, member_id=member.user_id if member else membership.user_id,
        newest_seq=newest[0][0] if newest else 0, user_id=newest[len(newest) // 2][1] if newest else "",
        message_id=newest[-1][2] if newest else "", old_message_id=oldest or "",
        event_name=next((n for *_, n in newest if n), ""), import_job=job or 0)


def probes() -> list[Probe]:
    large, small = workspace_of(LARGE_EMAIL), workspace_of(SMALL_EMAIL)
    return [*pages("large", LARGE_EMAIL, large, variants=True), *pages("small", SMALL_EMAIL, small, variants=False)]


def pages(prefix: str, email: str, w: Workspace, *, variants: bool) -> list[Probe]:
    """The pages of one workspace; with `variants`, also partials, later pages and filters."""
    def probe(label: str, name: str, *args: object, query: dict[str, object] | None = None, htmx: bool = False,
              expect: int = 200) -> Probe:
        try:
            url = reverse(name, args=[w.slug, *args]) + (f"?{urlencode(query, doseq=True)}" if query else "")
        except NoReverseMatch:  # no such page (yet): reported like a 404
            url = ""
        return Probe(f"{prefix}: {label}", email, url, htmx, expect)

    base = [
        probe("workspace home (redirect)", "workspace_home", expect=302),
        probe("integrations", "integrations:index"),
        probe("connection", "integrations:connection", w.busiest),
        probe("connection attempts", "integrations:connection_attempts", w.busiest),
        probe("dead letters", "integrations:dead_letters", w.dead_letters),
        probe("debugger", "integrations:debugger"),
        probe("imports", "integrations:imports"),
        probe("api keys", "integrations:api_keys"),
        probe("rejected events", "integrations:rejected_events"),
        probe("members", "members"),
        probe("audit log", "audit_log"),
    ]
    if not variants:
        return base
    return [*base, *_partials(probe, w), *_later_pages(probe, w), *_filters(probe, w)]


def _partials(probe: ProbeMaker, w: Workspace) -> list[Probe]:
    """What htmx fetches: polled panels, opened rows, lists swapped in place."""
    return [
        probe("integrations list, htmx", "integrations:index", htmx=True),
        probe("connection with backlog", "integrations:connection", w.behind),
        probe("connection top, htmx (polled)", "integrations:connection_state", w.busiest,
              query={"tab": "overview"}, htmx=True),
        probe("attention banner, htmx (polled on every page)", "integrations:attention", htmx=True),
        probe("connection checks tab", "integrations:connection_checks", w.busiest),
        probe("connection settings tab", "integrations:connection_settings", w.busiest),
        probe("debugger chips, htmx (polled)", "integrations:debugger_statuses",
              query={"seq": list(range(max(1, w.newest_seq - 49), w.newest_seq + 1))}, htmx=True),
        probe("connection status, htmx (polled)", "integrations:connection_status", w.busiest, htmx=True),
        probe("connection deliveries, htmx (polled)", "integrations:connection_deliveries", w.busiest, htmx=True),
        probe("connection attempts list, htmx", "integrations:connection_attempts", w.busiest, htmx=True),
        probe("dead letters list, htmx", "integrations:dead_letters", w.dead_letters, htmx=True),
        probe("dead letter body, htmx", "integrations:dead_letter_body", w.dead_letters,
              query={"id": w.dead_letter}, htmx=True),
        probe("debugger list, htmx", "integrations:debugger", htmx=True),
        probe("debugger new events, htmx (polled)", "integrations:debugger_events",
              query={"after": max(0, w.newest_seq - 5)}, htmx=True),
        probe("debugger event opened, htmx", "integrations:debugger_event", query={"seq": w.newest_seq - 20},
              htmx=True),
        probe("import detail", "integrations:import", w.import_job),
        probe("import progress, htmx (polled)", "integrations:import_progress", w.import_job, htmx=True),
        probe("api keys panel, htmx", "integrations:api_keys", htmx=True),
    ]


def _later_pages(probe: ProbeMaker, w: Workspace) -> list[Probe]:
    return [
        probe("connection attempts, older page", "integrations:connection_attempts", w.busiest,
              query={"before": w.attempt_older}),
        probe("connection attempts, 3 weeks back", "integrations:connection_attempts", w.busiest,
              query={"before": w.attempt_old}),
        probe("dead letters, page 2", "integrations:dead_letters", w.dead_letters, query={"page": 2}),
        probe("dead letters, last page", "integrations:dead_letters", w.dead_letters, query={"page": 100_000}),
        probe("rejected events, page 2", "integrations:rejected_events", query={"page": 2}),
        probe("rejected events, last page", "integrations:rejected_events", query={"page": 100_000}),
        probe("audit log, page 2, htmx", "audit_log", query={"page": 2}, htmx=True),
        probe("audit log, last page", "audit_log", query={"page": 100_000}),
    ]


def _filters(probe: ProbeMaker, w: Workspace) -> list[Probe]:
    return [
        probe("connection attempts, retrying only", "integrations:connection_attempts", w.busiest,
              query={"outcome": "retrying"}),
        probe("connection attempts, rejected only", "integrations:connection_attempts", w.busiest,
              query={"outcome": "rejected"}),
        probe("dead letters, expired only", "integrations:dead_letters", w.dead_letters, query={"reason": "expired"}),
        probe("dead letters, by event name", "integrations:dead_letters", w.dead_letters,
              query={"name": w.dead_letter_name, "type": "track"}),
        probe("debugger, by event name", "integrations:debugger", query={"field": "name", "q": w.event_name}),
        probe("debugger, by user id", "integrations:debugger", query={"field": "user_id", "q": w.user_id}),
        probe("debugger, by messageId (new)", "integrations:debugger",
              query={"field": "message_id", "q": w.message_id}),
        probe("debugger, by messageId (a day old)", "integrations:debugger",
              query={"field": "message_id", "q": w.old_message_id}),
        probe("debugger, name not in the log", "integrations:debugger", query={"field": "name", "q": "No Such Event"}),
        probe("audit log, connection actions", "audit_log", query={"group": "connection"}),
        probe("audit log, one member", "audit_log", query={"actor": w.member_id}),
    ]

