"""Every write to historical imports, the reads that scope them to a workspace, and the
progress figures the pages show.

Writes validate, run in a transaction, write their audit row and queue Celery work on
commit. Views, `manage.py import_events`, tasks and the admin all come through here.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction, Workspace
from accounts.permissions import require_manager
from integrations.imports.files import (
    FORMATS,
    HeaderInvalid,
    WrongFormat,
    discard,
    format_for,
    imports_dir,
    report_path_for,
    sniff,
    stale_files,
)
from integrations.imports.passes import RUNNING, queue_pass
from integrations.models import ImportJob, ImportStatus

logger = logging.getLogger(__name__)

WAITING = (ImportStatus.VALIDATING, ImportStatus.VALIDATED, ImportStatus.IMPORTING)
ENDED = (ImportStatus.DONE, ImportStatus.CANCELLED, ImportStatus.FAILED)
# A queued pass that has not started within this long is presumed lost and queued again.
PASS_LOST_AFTER = timedelta(seconds=30)
# How long a checked file waits for a choice, and an ended job keeps its error report.
KEEP_FOR = timedelta(days=7)
# A file in the imports folder no job names, untouched this long, is left over (an upload
# refused half-way, a job row deleted): removed.
ORPHAN_AFTER_SECONDS = 3600.0


def import_upload(*, actor: Actor, workspace: Workspace, stored_path: str | Path, file_name: str, size: int,
                  file_format: str | None = None, start_when_checked: bool = False,
                  queue: bool = True) -> ImportJob:
    """Adopt a file already stored in the imports folder as a new job, and queue its check.

    The format comes from the file name unless given. A file that cannot be imported (unknown
    format, empty, too large, a CSV header that does not map to Segment's fields) is refused
    with ValidationError naming the form field at fault, and deleted.
    """
    path = Path(stored_path)
    if path.parent.resolve() != imports_dir().resolve():  # never adopt, nor delete, anyone else's file
        raise ValueError("Import files must be stored in IMPORTS_DIR first.")
    try:
        require_manager(actor, workspace, to="import events")
        chosen = file_format or format_for(file_name)
        if chosen not in FORMATS:
            raise ValidationError({"format": f"Tributary cannot tell the format from the name “{file_name}”: "
                                             "choose JSONL or CSV."})
        if size > settings.IMPORT_MAX_BYTES:
            raise ValidationError({"file": f"The file is {size:,} bytes; one import takes at most "
                                           f"{settings.IMPORT_MAX_BYTES:,}. Split it into several files."})
        try:
            sniff(path, chosen)
        except HeaderInvalid as problem:
            raise ValidationError({"format" if isinstance(problem, WrongFormat) else "file": str(problem)}) from None
        with transaction.atomic():
            job = ImportJob.objects.create(
                workspace=workspace, created_by=actor.user, file_name=Path(file_name).name[:200] or "upload",
                path=str(path), errors_path=str(report_path_for(path)), format=chosen, size=size,
                import_valid_only=start_when_checked)
            audit_record(actor=actor, action=AuditAction.IMPORT_UPLOADED, workspace=workspace, target=job,
                         details={"file": job.file_name, "format": chosen, "size": size,
                                  "start_when_checked": start_when_checked})
            if queue:
                transaction.on_commit(lambda: queue_pass(job.pk, ImportStatus.VALIDATING))
    except BaseException:
        discard(path)
        raise
    return job


def import_start(*, actor: Actor, job: ImportJob, queue: bool = True) -> ImportJob:
    """The person's choice "import the valid lines": lines with errors are skipped."""
    with transaction.atomic():
        require_manager(actor, job.workspace, to="import events")
        now = timezone.now()
        if not ImportJob.objects.filter(pk=job.pk, status=ImportStatus.VALIDATED, lines_valid__gt=0).update(
                status=ImportStatus.IMPORTING, import_valid_only=True, started_at=now, offset_done=0, lines_done=0,
                events_stored=0, updated_at=now):
            job.refresh_from_db()
            raise ValidationError(_not_waiting(job))
        job.refresh_from_db()
        audit_record(actor=actor, action=AuditAction.IMPORT_STARTED, workspace=job.workspace, target=job,
                     details={"file": job.file_name, "lines": job.lines_valid, "skipped_invalid": job.lines_invalid})
        if queue:
            transaction.on_commit(lambda: queue_pass(job.pk, ImportStatus.IMPORTING))
    return job


def import_cancel(*, actor: Actor, job: ImportJob, reason: str = "") -> ImportJob:
    """Stop a job in any phase: while it is checked, waiting for a choice ("import nothing")
    or importing. Events already imported stay in the log; the file is deleted."""
    with transaction.atomic():
        require_manager(actor, job.workspace, to="import events")
        previous = job.status
        now = timezone.now()
        if not ImportJob.objects.filter(pk=job.pk, status__in=WAITING).update(
                status=ImportStatus.CANCELLED, finished_at=now, lease_until=None, updated_at=now):
            job.refresh_from_db()
            raise ValidationError(f"This import has already ended ({job.get_status_display().lower()}).")
        job.refresh_from_db()
        details: dict[str, object] = {"file": job.file_name, "while": previous, "events_stored": job.events_stored}
        if reason:
            details["reason"] = reason
        audit_record(actor=actor, action=AuditAction.IMPORT_CANCELLED, workspace=job.workspace, target=job,
                     details=details)
        transaction.on_commit(lambda: discard(job.path))
    return job


def _not_waiting(job: ImportJob) -> str:
    if job.status == ImportStatus.VALIDATED:
        return "No line of this file is valid, so there is nothing to import."
    return f"This import is not waiting for a choice any more ({job.get_status_display().lower()})."


def imports_sweep() -> int:
    """Periodic safety net: queue again the passes of jobs whose worker died (lease expired)
    or whose task was lost; end jobs left waiting for a choice past KEEP_FOR; delete error
    reports older than KEEP_FOR and files no job names. Returns the passes queued."""
    now = timezone.now()
    stalled = ImportJob.objects.filter(status__in=RUNNING).filter(
        Q(lease_until__lt=now) | Q(lease_until__isnull=True, updated_at__lt=now - PASS_LOST_AFTER))
    queued = 0
    for pk, status, lease in stalled.values_list("pk", "status", "lease_until"):
        # The expired lease is cleared and the job touched, so a job is queued again at most
        # once per PASS_LOST_AFTER however long the queue takes to reach its task.
        if ImportJob.objects.filter(pk=pk, lease_until=lease).update(lease_until=None, updated_at=now):
            queued += queue_pass(pk, status)
    for job in ImportJob.objects.filter(status=ImportStatus.VALIDATED, updated_at__lt=now - KEEP_FOR):
        import_cancel(actor=Actor.system(), job=job, reason=f"no choice made within {KEEP_FOR.days} days")
    _delete_old_reports(now)
    _delete_orphans()
    return queued


def _delete_old_reports(now: datetime) -> None:
    old = ImportJob.objects.filter(status__in=ENDED, finished_at__lt=now - KEEP_FOR).exclude(errors_path="")
    for pk, errors_path in old.values_list("pk", "errors_path"):
        discard(errors_path)
        ImportJob.objects.filter(pk=pk).update(errors_path="")


def _delete_orphans() -> None:
    candidates = {str(path): path for path in stale_files(older_than_seconds=ORPHAN_AFTER_SECONDS)}
    if not candidates:
        return
    named = set(ImportJob.objects.filter(Q(path__in=candidates) | Q(errors_path__in=candidates))
                .values_list("path", "errors_path"))
    kept = {name for pair in named for name in pair}
    live = set(ImportJob.objects.filter(status__in=WAITING, path__in=candidates).values_list("path", flat=True))
    for name, path in candidates.items():
        is_source = not name.endswith(".errors.csv")
        # An ended job's source file is no longer needed, even though its row still names it.
        if name not in kept or (is_source and name not in live):
            discard(path)


# --- reads --------------------------------------------------------------------------------


def imports_for_workspace(*, workspace: Workspace) -> QuerySet[ImportJob]:
    return ImportJob.objects.filter(workspace=workspace).select_related("created_by").order_by("-created_at", "-id")


def import_get_for_workspace(*, workspace: Workspace, pk: int) -> ImportJob:
    try:
        return imports_for_workspace(workspace=workspace).get(pk=pk)
    except ImportJob.DoesNotExist:
        raise Http404("No such import.") from None


@dataclass(frozen=True)
class Progress:
    """What a progress bar shows: how far the current phase is, how fast it goes, what remains."""

    phase: str  # "checking", "importing" or "" when nothing runs
    percent: float
    done: int  # lines checked, or valid lines imported
    total: int | None  # lines in the file once known; while importing, the valid ones
    rate: float | None  # lines a second
    eta_seconds: int | None
    elapsed_seconds: float | None = None

    @property
    def percent_whole(self) -> int:
        return int(self.percent)

    @property
    def rate_text(self) -> str:
        if not self.rate:
            return ""
        unit = "lines" if self.phase == "checking" else "events"
        return f"{self.rate:,.0f} {unit}/s"

    @property
    def eta_text(self) -> str:
        if self.eta_seconds is None:
            return "working out the time left…" if self.phase else ""
        if self.eta_seconds < 5:
            return "a few seconds left"
        return f"about {duration_text(self.eta_seconds)} left"

    @property
    def elapsed_text(self) -> str:
        return duration_text(self.elapsed_seconds) if self.elapsed_seconds is not None else ""


def duration_text(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        minutes, rest = divmod(seconds, 60)
        return f"{minutes} min {rest} s" if minutes < 10 and rest else f"{minutes} min"
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"


def import_progress(job: ImportJob, *, now: datetime | None = None) -> Progress:
    now = now or timezone.now()
    if job.status == ImportStatus.VALIDATING:
        # Lines are not known until the end: the share of the file's bytes read so far.
        elapsed = (now - job.created_at).total_seconds()
        percent = 100.0 * job.offset_done / job.size if job.size else 0.0
        byte_rate = job.offset_done / elapsed if elapsed > 0 and job.offset_done else None
        eta = int((job.size - job.offset_done) / byte_rate) if byte_rate else None
        rate = job.lines_total / elapsed if elapsed > 0 and job.lines_total else None
        return Progress("checking", min(percent, 99.9), job.lines_total, None, rate, eta, elapsed)
    if job.status in (ImportStatus.IMPORTING, ImportStatus.DONE):
        total = job.lines_valid  # only the valid lines are imported; `lines_done` counts those
        end = job.finished_at if job.status == ImportStatus.DONE and job.finished_at else now
        elapsed = (end - (job.started_at or end)).total_seconds()
        rate = job.lines_done / elapsed if elapsed > 0 and job.lines_done else None
        percent = 100.0 * job.lines_done / total if total else 100.0
        importing = job.status == ImportStatus.IMPORTING
        eta = int((total - job.lines_done) / rate) if rate and importing else None
        return Progress("importing" if importing else "", min(percent, 100.0), job.lines_done, total, rate, eta,
                        elapsed)
    percent = 100.0 if job.status == ImportStatus.VALIDATED else 0.0
    return Progress("", percent, job.lines_total, job.lines_total, None, None)
