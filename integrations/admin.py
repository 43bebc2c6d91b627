"""Operators audit connections here. No field or form shows or pre-fills a write key;
actions go through the same services as the pages, audited with the operator as actor."""
from __future__ import annotations

from typing import Any, TypeVar

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html

from accounts.admin import ReadOnlyAdmin
from accounts.audit import Actor
from integrations import crypto, services
from integrations.dead_letters.selection import Selection
from integrations.dead_letters.services import ReplayRefused, dead_letters_replay
from integrations.imports import import_cancel
from integrations.ingest import keys as ingest_keys
from integrations.models import (
    Connection,
    DeadLetter,
    DeadLetterReplay,
    DeliveryAttempt,
    DeliveryCount,
    ImportJob,
    ImportStatus,
    IngestKey,
    PublicApiCall,
    SegmentToken,
    Trigger,
    Verification,
)
from integrations.relay.accounting import histogram_percentile
from integrations.selectors.health import WORDS, ConnectionHealth, connection_state, connections_health


class SharedKeyFilter(admin.SimpleListFilter):
    title = "key shared across workspaces"
    parameter_name = "shared"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Shared with another workspace")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Connection]) -> QuerySet[Connection]:
        if self.value() == "yes":
            return queryset.filter(write_key_fingerprint__in=shared_fingerprints())
        return queryset


class HealthFilter(admin.SimpleListFilter):
    """The connection's one health word, derived by the function its pages use
    (`connection_health`) with the same words, not the last check's verdict (which the
    "last check" column shows): a connection with undelivered dead letters is Degraded here
    as it is on its page, whatever its last check said."""

    title = "health"
    parameter_name = "health"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(WORDS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[Connection]) -> QuerySet[Connection]:
        if self.value() not in WORDS:
            return queryset
        return queryset.filter(pk__in=[c.pk for c, health in connections_health(connections=queryset)
                                       if health.state == self.value()])


class ConnectionChangeList(ChangeList):
    """Derives the health of the page's connections in two reads, for the "health" column."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        ids = [c.pk for c in self.result_list]
        found = dict((c.pk, health) for c, health in
                     connections_health(connections=Connection.objects.filter(pk__in=ids)))
        for connection in self.result_list:
            connection.listed_health = found.get(connection.pk)


def shared_fingerprints() -> QuerySet[Any]:
    """Fingerprints of keys connected in more than one workspace (allowed, but worth a look)."""
    return (Connection.objects.values("write_key_fingerprint")
            .annotate(workspaces=Count("workspace", distinct=True))
            .filter(workspaces__gt=1).values("write_key_fingerprint"))


class VerificationInline(admin.TabularInline[Verification, Connection]):
    model = Verification
    extra = 0
    max_num = 0
    can_delete = False
    fields = ("created_at", "trigger", "outcome", "summary", "test_message_id", "requested_by")
    readonly_fields = fields
    ordering = ["-created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin[Connection]):
    # Health is the connection's one word, derived like its pages' (`connection_health`); the
    # last check's verdict is its own column. The list derives the health of a page of
    # connections in two reads (ConnectionChangeList), the change page in a few more.
    # It fits 1280 px beside the admin's menu and filters: the encryption key id is a filter, a
    # count above the list and a line of the change page, not a column; the workspace's name
    # wraps (the admin keeps a foreign key on one line); the last check takes three short lines.
    # Enabled is a filter, not a column: the health word says "Disabled" for a disabled one.
    list_display = ["name", "workspace_name", "region", "masked_key", "health_word", "last_check", "shared_key"]
    list_filter = ["region", HealthFilter, "enabled", "write_key_key_id", SharedKeyFilter]
    search_fields = ["name", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace", "latest_verification"]
    # Only these are shown; the encrypted value and fingerprint never appear.
    fields = ("workspace", "name", "region", "masked_key", "write_key_key_id", "enabled", "delivery_health",
              "last_check", "shared_key", "created_by", "created_at", "updated_at", "key_replaced_at")
    readonly_fields = fields
    inlines = [VerificationInline]
    actions = ["run_check", "disable", "enable"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # a key is pasted by the workspace's own admins, never by operators

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra_context = {**(extra_context or {}), "encryption_keys": encryption_key_usage()}
        return super().changelist_view(request, extra_context)

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return ConnectionChangeList

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        # `?health__exact=` would filter by the model's column, the last check's verdict, under
        # the name operators read as the connection's health: only HealthFilter answers to it.
        if lookup.startswith("health__"):
            return False
        return super().lookup_allowed(lookup, value, request)

    @admin.display(description="health")
    def health_word(self, obj: Connection) -> str:
        found: ConnectionHealth | None = getattr(obj, "listed_health", None)
        return (found or connection_state(connection=obj, can_manage=True)).word

    @admin.display(description="workspace", ordering="workspace__name")
    def workspace_name(self, obj: Connection) -> str:
        return obj.workspace.name

    @admin.display(description="write key")
    def masked_key(self, obj: Connection) -> str:
        return obj.masked_key

    @admin.display(description="health")
    def delivery_health(self, obj: Connection) -> str:
        found = connection_state(connection=obj, can_manage=True)
        reasons = " ".join(issue.reason for issue in found.issues)
        return f"{found.word}: {found.summary} {reasons}".strip()

    @admin.display(description="last check")
    def last_check(self, obj: Connection) -> str:
        run = obj.latest_verification
        if run is None:
            return "never"
        return format_html('{}<br><span class="nowrap">{}</span><br>{} UTC', run.get_outcome_display(),
                           f"{run.created_at:%Y-%m-%d}", f"{run.created_at:%H:%M}")

    @admin.display(description="shared key", boolean=True)
    def shared_key(self, obj: Connection) -> bool:
        return (Connection.objects.filter(write_key_fingerprint=obj.write_key_fingerprint)
                .exclude(workspace_id=obj.workspace_id).exists())

    @admin.action(description="Run a check on the selected connections")
    def run_check(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        queued = throttled = 0
        for connection in queryset:
            try:
                services.verification_request(actor=Actor.from_request(request), connection=connection,
                                              trigger=Trigger.OPERATOR)
                queued += 1
            except services.ChecksThrottled:
                throttled += 1
        self.message_user(request, f"{queued} check(s) queued, {throttled} refused (too many checks a minute).")

    @admin.action(description="Disable the selected connections")
    def disable(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self._set_enabled(request, queryset, enabled=False)

    @admin.action(description="Enable the selected connections")
    def enable(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        self._set_enabled(request, queryset, enabled=True)

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[Connection], *, enabled: bool) -> None:
        for connection in queryset.select_related("workspace"):
            services.connection_set_enabled(actor=Actor.from_request(request), connection=connection, enabled=enabled)
        self.message_user(request, f"{queryset.count()} connection(s) {'enabled' if enabled else 'disabled'}.",
                          messages.SUCCESS)


def encryption_key_usage() -> list[dict[str, Any]]:
    """How many stored values each key protects; a key still in use cannot be retired."""
    configured = list(crypto.keyring())
    counts = dict(Connection.objects.values_list("write_key_key_id").annotate(n=Count("id")).order_by())
    rows = [{"key_id": kid, "values": counts.get(kid, 0), "primary": i == 0, "configured": True}
            for i, kid in enumerate(configured)]
    rows += [{"key_id": kid, "values": n, "primary": False, "configured": False}
             for kid, n in counts.items() if kid not in configured]
    return rows


class SetOrNotFilter(admin.SimpleListFilter):
    """Two choices on whether a nullable column is set: `options` lists both (value, label)
    pairs in the order shown, and `set_value` says which of them means set."""

    field: str
    options: tuple[tuple[str, str], tuple[str, str]]
    set_value: str

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(self.options)

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() in dict(self.options):
            return queryset.filter(**{f"{self.field}__isnull": self.value() != self.set_value})
        return queryset


class IngestKeyStatusFilter(SetOrNotFilter):
    title = "status"
    parameter_name = "status"
    field = "revoked_at"
    options = (("active", "Active"), ("revoked", "Revoked"))
    set_value = "revoked"


@admin.register(IngestKey)
class IngestKeyAdmin(ReadOnlyAdmin[IngestKey]):
    """Read-only: keys are created by the workspace (or the command), never here. The hash is
    not shown; revoking goes through the service, audited with the operator as actor."""

    list_display = ["name", "workspace", "masked_key", "created_at", "created_by", "last_used_at", "revoked_at",
                    "active"]
    list_filter = [IngestKeyStatusFilter, ("workspace", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace", "created_by"]
    fields = ("workspace", "name", "masked_key", "created_by", "created_at", "last_used_at", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]


    @admin.display(description="key")
    def masked_key(self, obj: IngestKey) -> str:
        return ingest_keys.masked(obj)

    @admin.display(description="active", boolean=True)
    def active(self, obj: IngestKey) -> bool:
        return obj.is_active

    @admin.action(description="Revoke the selected ingest keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[IngestKey]) -> None:
        revoked = already = 0
        for ingest_key in queryset.select_related("workspace"):
            if ingest_key.is_active:
                ingest_keys.ingest_key_revoke(actor=Actor.from_request(request), ingest_key=ingest_key)
                revoked += 1
            else:
                already += 1
        self.message_user(request, f"{revoked} key(s) revoked, {already} already revoked.", messages.SUCCESS)


# --- deliveries: what was sent to Segment, read-only for everyone --------------------------


class CappedPaginator(Paginator[Any]):
    """Counts at most CAP rows: the attempt log can hold millions, and operators narrow it
    with filters and search rather than paging to the end."""

    CAP = 10_000

    @property
    def count(self) -> int:
        return self.object_list[:self.CAP].count()  # type: ignore[attr-defined,no-any-return]


class AttemptStatusFilter(admin.SimpleListFilter):
    """Segment's status in groups, without a DISTINCT over the whole attempt log."""

    title = "Segment's status"
    parameter_name = "status"
    GROUPS = {"200": "200", "400": "400, 413, 422", "401": "401, 403 and other refusals", "429": "429",
              "5xx": "5xx", "none": "No answer"}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return list(self.GROUPS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[DeliveryAttempt]) -> QuerySet[DeliveryAttempt]:
        value = self.value()
        if value in ("200", "429"):
            return queryset.filter(status=int(value))
        if value == "400":
            return queryset.filter(status__in=[400, 413, 422])
        if value == "401":
            return queryset.filter(status__gte=401, status__lt=500).exclude(status__in=[408, 410, 413, 422, 429, 460])
        if value == "5xx":
            return queryset.filter(status__gte=500)
        if value == "none":
            return queryset.filter(status__isnull=True)
        return queryset


M = TypeVar("M", bound=Model)


class ConnectionLogAdmin(ReadOnlyAdmin[M]):
    """What the delivery logs share: a row per connection and moment, found by connection or
    workspace, newest first by primary key (indexed; sorting by another column would sort the
    whole log), with a capped count."""

    search_fields = ["connection__name", "connection__workspace__name", "connection__workspace__slug"]
    list_select_related = ["connection__workspace"]
    ordering = ["-id"]
    sortable_by = ()
    show_full_result_count = False
    paginator = CappedPaginator

    @admin.display(description="connection")
    def connection_name(self, obj: DeliveryAttempt | DeliveryCount) -> str:
        return f"{obj.connection.name} ({obj.connection.masked_key})"

    @admin.display(description="workspace")
    def workspace(self, obj: DeliveryAttempt | DeliveryCount) -> str:
        return obj.connection.workspace.slug


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(ConnectionLogAdmin[DeliveryAttempt]):
    """Every request made to Segment's batch endpoint: the connection by name and masked key,
    Segment's status and the start of its answer; never the key."""

    list_display = ["started_at", "connection_name", "workspace", "outcome", "status_shown", "events", "bytes",
                    "duration_ms", "attempt", "replay", "reply_start"]
    list_filter = ["outcome", AttemptStatusFilter, "replay"]
    fields = ("connection", "started_at", "duration_ms", "events", "bytes", "first_seq", "last_seq", "status",
              "outcome", "reply", "attempt", "replay")
    readonly_fields = fields

    @admin.display(description="status")
    def status_shown(self, obj: DeliveryAttempt) -> str:
        return str(obj.status) if obj.status else "no answer"

    @admin.display(description="reply")
    def reply_start(self, obj: DeliveryAttempt) -> str:
        return obj.reply[:80]


@admin.register(DeliveryCount)
class DeliveryCountAdmin(ConnectionLogAdmin[DeliveryCount]):
    """The 10-minute counts pages and /metrics sum: delivered, dead-lettered, retried, API
    calls, bytes and the latency histogram's percentiles."""

    list_display = ["bucket", "connection_name", "workspace", "delivered", "failed", "retried", "api_calls", "bytes",
                    "latency_p50", "latency_p95"]
    fields = ("connection", "bucket", "delivered", "failed", "retried", "api_calls", "bytes", "latency")
    readonly_fields = fields

    @admin.display(description="latency p50")
    def latency_p50(self, obj: DeliveryCount) -> str:
        return _seconds(histogram_percentile(obj.latency, 0.5, obj.latency_max))

    @admin.display(description="latency p95")
    def latency_p95(self, obj: DeliveryCount) -> str:
        return _seconds(histogram_percentile(obj.latency, 0.95, obj.latency_max))


def _seconds(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f} s"


# --- Dead letters and their replays ---------------------------------------------------------


class DeadLetterReasonFilter(admin.SimpleListFilter):
    """Fixed choices: Django's default would list the column's distinct values, a full scan."""

    title = "reason"
    parameter_name = "reason"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("rejected", "Rejected by Segment"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> QuerySet[DeadLetter]:
        return queryset.filter(reason=self.value()) if self.value() else queryset


class DeadLetterReplayedFilter(SetOrNotFilter):
    title = "replayed"
    parameter_name = "replayed"
    field = "replayed_at"
    options = (("yes", "Accepted on replay"), ("no", "Not accepted on replay"))
    set_value = "yes"


@admin.register(DeadLetter)
class DeadLetterAdmin(ReadOnlyAdmin[DeadLetter]):
    """Read-only. "Replay" queues the same replay as the connection's page (one per connection,
    at most the cap), audited with the operator as actor."""

    list_display = ["created_at", "connection", "workspace", "type", "name", "reason", "status", "replays",
                    "replayed_at"]
    list_filter = [DeadLetterReasonFilter, ("connection__workspace", admin.RelatedFieldListFilter),
                   DeadLetterReplayedFilter]
    list_select_related = ["connection__workspace"]
    show_full_result_count = False
    fields = ("connection", "workspace", "seq", "message_id", "type", "name", "reason", "status", "response",
              "created_at", "received_at", "replays", "replayed_at", "event")
    readonly_fields = fields
    actions = ["replay"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[DeadLetter]:
        return super().get_queryset(request).defer("body")

    @admin.display(description="workspace")
    def workspace(self, obj: DeadLetter) -> str:
        return str(obj.connection.workspace)

    @admin.display(description="event as stored")
    def event(self, obj: DeadLetter) -> str:
        return bytes(obj.body).decode(errors="replace")[:4000]

    @admin.action(description="Replay the selected dead letters")
    def replay(self, request: HttpRequest, queryset: QuerySet[DeadLetter]) -> None:
        picked: dict[int, list[int]] = {}
        for pk, connection_id in queryset.order_by().values_list("pk", "connection_id"):
            picked.setdefault(connection_id, []).append(pk)
        queued, refused = 0, []
        for connection in Connection.objects.filter(pk__in=picked).select_related("workspace"):
            ids = tuple(picked[connection.pk][:settings.DEAD_LETTER_REPLAY_CAP])
            try:
                dead_letters_replay(actor=Actor.from_request(request), connection=connection,
                                    selection=Selection(ids=ids))
                queued += len(ids)
            except (ReplayRefused, ValidationError) as problem:
                text = problem.messages[0] if isinstance(problem, ValidationError) else str(problem)
                refused.append(f"{connection.name} ({connection.workspace}): {text}")
        if queued:
            self.message_user(request, f"Replay of {queued} dead letter(s) queued.", messages.SUCCESS)
        for line in refused:
            self.message_user(request, f"Not replayed: {line}", messages.WARNING)


@admin.register(DeadLetterReplay)
class DeadLetterReplayAdmin(ReadOnlyAdmin[DeadLetterReplay]):
    """Every replay of dead letters, read-only: who asked, what they chose, how far it got."""

    list_display = ["requested_at", "connection", "workspace", "requested_by", "status", "total", "accepted",
                    "refused", "not_sent", "updated_at"]
    list_filter = ["status"]
    search_fields = ["connection__name", "connection__workspace__slug", "requested_by__email"]
    list_select_related = ["connection__workspace", "requested_by"]
    show_full_result_count = False
    fields = ("connection", "workspace", "requested_by", "requested_at", "selection", "status", "total", "accepted",
              "refused", "not_sent", "failure", "started_at", "updated_at", "finished_at")
    readonly_fields = fields

    @admin.display(description="workspace")
    def workspace(self, obj: DeadLetterReplay) -> str:
        return str(obj.connection.workspace)



@admin.register(ImportJob)
class ImportJobAdmin(ReadOnlyAdmin[ImportJob]):
    """Operators see every workspace's imports and their progress; cancelling goes through the
    service, audited with the operator as actor. The files' paths are not shown."""

    list_display = ["file_name", "workspace", "status", "format", "size", "lines_total", "lines_invalid",
                    "events_stored", "created_at", "finished_at"]
    list_filter = ["status", "format"]
    search_fields = ["file_name", "workspace__name", "workspace__slug"]
    list_select_related = ["workspace"]
    fields = ("workspace", "created_by", "file_name", "format", "size", "status", "import_valid_only", "lines_total",
              "lines_valid", "lines_invalid", "offset_done", "lines_done", "events_stored", "created_at", "started_at",
              "finished_at", "lease_until", "failure")
    readonly_fields = fields
    actions = ["cancel"]

    @admin.action(description="Cancel the selected imports")
    def cancel(self, request: HttpRequest, queryset: QuerySet[ImportJob]) -> None:
        cancelled = 0
        for job in queryset.select_related("workspace").filter(
                status__in=[ImportStatus.VALIDATING, ImportStatus.VALIDATED, ImportStatus.IMPORTING]):
            import_cancel(actor=Actor.from_request(request), job=job, reason="cancelled by an operator")
            cancelled += 1
        self.message_user(request, f"{cancelled} import(s) cancelled.", messages.SUCCESS)


# --- Segment workspaces (issue #11): who has a Public API token, and the calls made with it -----


@admin.register(SegmentToken)
class SegmentTokenAdmin(ReadOnlyAdmin[SegmentToken]):
    """Which workspaces have a token: never the token, only its last 4 and what Segment said."""

    list_display = ["workspace", "segment_workspace_name", "region", "masked_token", "token_key_id", "checked_at",
                    "updated_at"]
    list_filter = ["region", "token_key_id"]
    search_fields = ["workspace__name", "workspace__slug", "segment_workspace_name"]
    list_select_related = ["workspace"]
    fields = ("workspace", "segment_workspace_name", "segment_workspace_id", "region", "masked_token", "token_key_id",
              "created_by", "created_at", "checked_at", "updated_at")
    readonly_fields = fields


@admin.register(PublicApiCall)
class PublicApiCallAdmin(ReadOnlyAdmin[PublicApiCall]):
    list_display = ["created_at", "workspace", "method", "path", "region", "status", "outcome", "duration_ms"]
    list_filter = ["outcome", "method", "region"]
    search_fields = ["workspace__name", "workspace__slug", "path"]
    list_select_related = ["workspace"]
    date_hierarchy = "created_at"
