"""The two passes over an import file. Celery runs each in slices of at most
RUN_BUDGET_SECONDS; `manage.py import_events` runs them in one go. Both resume from the last
committed checkpoint, so a killed worker costs at most one chunk of work, never an event.

Check pass (status VALIDATING):
  1. take the job's lease (a conditional UPDATE; the expiry written is the run's token);
  2. read records from `offset_done`, after cutting the error report back to the lines
     before it (rows written after the last checkpoint of a killed run);
  3. put each through the ingest API's rules, plus one of its own (a timestamp is required),
     writing a report row (line, field, reason) for each invalid one;
  4. every CHECK_CHUNK records make the report durable, then commit counts and offset with
     the lease renewed; a lost lease or a cancelled job stops the run;
  5. at the end: VALIDATED (waiting for the person's choice), or IMPORTING at once when they
     chose that at upload.
Import pass (status IMPORTING):
  1. take the lease and read records from `offset_done`;
  2. per chunk of CHUNK_LINES records, normalise the valid ones (a line without messageId
     gets one derived from the job and its line number, so a chunk run twice dedupes) and, in
     ONE transaction, append them to the log and move `offset_done`, `lines_done` (valid
     lines imported) and `events_stored`, conditional on the lease: a worker killed mid-chunk leaves neither
     behind, and the next run resumes exactly there;
  3. at the end: DONE; the file is deleted, its error report kept.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone
from kombu.exceptions import OperationalError

from accounts.audit import Actor, audit_record
from accounts.models import AuditAction
from integrations import enqueue
from integrations.imports.files import ErrorReport, Problem, Reader, Record, discard
from integrations.ingest.messages import Invalid, Normaliser
from integrations.models import ImportJob, ImportStatus
from integrations.relay.log import Message, events_append
from integrations.tracking_plans.enforcement import plan_enforce

logger = logging.getLogger(__name__)

CHECK_CHUNK = 5_000
CHUNK_LINES = 5_000
CHUNK_BYTES = 8 * 1024 * 1024
RUN_BUDGET_SECONDS = 30.0
RUNNING = (ImportStatus.VALIDATING, ImportStatus.IMPORTING)
# messageIds of lines that have none: uuid5(IMPORT_NAMESPACE, "<job id>:<line>").
IMPORT_NAMESPACE = uuid.UUID("43cec83b-6ad3-401e-b504-f82e02d11f0b")

# The field each of the ingest API's reasons is about, for the report's "field" column.
REASON_FIELDS = {
    "not_an_object": "",
    "unknown_type": "type",
    "missing_user_or_anonymous_id": "userId/anonymousId",
    "missing_event": "event",
    "missing_group_id": "groupId",
    "missing_previous_id": "previousId",
    "missing_user_id": "userId",
    "invalid_timestamp": "timestamp",
    "invalid_message_id": "messageId",
    "event_too_large": "",
    "too_deeply_nested": "",
    "invalid_unicode": "",
    "integer_too_large": "",
    "not_serialisable": "",
}
NEEDS_TIMESTAMP = Problem("timestamp", "Historical events need a timestamp: add one in ISO 8601 with a time zone, "
                                       "e.g. 2025-11-23T10:00:00Z.")

OnProgress = Callable[[ImportJob], None]


class LeaseLost(Exception):
    """The job was cancelled, or another run took it over: this run stops without writing."""


@dataclass
class Run:
    job: ImportJob
    lease: datetime
    deadline: float | None

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() > self.deadline


def line_message_id(job_id: int, line: int) -> str:
    return str(uuid.uuid5(IMPORT_NAMESPACE, f"{job_id}:{line}"))


def import_check(*, job_id: int, budget: float | None = RUN_BUDGET_SECONDS,
                 on_progress: OnProgress | None = None) -> None:
    """Run (a slice of) the check pass; a no-op when the job is not waiting for it."""
    run = _claim(job_id, ImportStatus.VALIDATING, budget)
    if run is not None:
        _guarded(run, _check, on_progress)


def import_run(*, job_id: int, budget: float | None = RUN_BUDGET_SECONDS,
               on_progress: OnProgress | None = None) -> None:
    """Run (a slice of) the import pass; a no-op when the job is not importing."""
    run = _claim(job_id, ImportStatus.IMPORTING, budget)
    if run is not None:
        _guarded(run, _import, on_progress)


def _guarded(run: Run, work: Callable[[Run, OnProgress | None], None], on_progress: OnProgress | None) -> None:
    """Database trouble leaves the lease to run out (the sweeper resumes the job then);
    anything else ends the job as failed rather than retrying it for ever."""
    try:
        work(run, on_progress)
    except LeaseLost:
        logger.info("imports.lease_lost", extra={"job_id": run.job.pk})
    except DatabaseError:
        raise
    except OSError as error:
        logger.warning("imports.file_unreadable", extra={"job_id": run.job.pk, "error": str(error)})
        _fail(run, "The uploaded file could not be read any more: upload it again.")
    except Exception:
        logger.exception("imports.failed", extra={"job_id": run.job.pk})
        _fail(run, "The import stopped on an unexpected error; the events stored so far stay. Upload the rest again.")


def queue_pass(job_id: int, status: str) -> bool:
    """Ask a worker to run the job's current pass; best effort (the sweeper is the safety net)."""
    queue = enqueue.check_import if status == ImportStatus.VALIDATING else enqueue.run_import
    try:
        queue(job_id, retry=False)
    except OperationalError:
        logger.warning("imports.queue_lost", extra={"job_id": job_id})
        return False
    return True


# --- the lease ------------------------------------------------------------------------------


def _new_lease() -> datetime:
    return timezone.now() + timedelta(seconds=settings.IMPORT_LEASE_SECONDS)


def _claim(job_id: int, status: str, budget: float | None) -> Run | None:
    now = timezone.now()
    lease = _new_lease()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if not ImportJob.objects.filter(free, pk=job_id, status=status).update(lease_until=lease, updated_at=now):
        return None
    job = ImportJob.objects.get(pk=job_id)
    return Run(job, lease, None if budget is None else time.monotonic() + budget)


def _held(run: Run, status: str) -> Any:
    return ImportJob.objects.filter(pk=run.job.pk, lease_until=run.lease, status=status)


def _pause(run: Run) -> None:
    """Out of time: let go of the job and queue the rest as a new task, so no task runs long."""
    if _held(run, run.job.status).update(lease_until=None, updated_at=timezone.now()):
        queue_pass(run.job.pk, run.job.status)


def _fail(run: Run, failure: str) -> None:
    job = run.job
    with transaction.atomic():
        if not ImportJob.objects.filter(pk=job.pk, lease_until=run.lease, status__in=RUNNING).update(
                status=ImportStatus.FAILED, failure=failure[:300], finished_at=timezone.now(), lease_until=None,
                updated_at=timezone.now()):
            return
        job.refresh_from_db()
        audit_record(actor=Actor.system(), action=AuditAction.IMPORT_FINISHED, workspace=job.workspace, target=job,
                     details={"file": job.file_name, "outcome": "failed", "failure": failure,
                              "events_stored": job.events_stored})
        transaction.on_commit(lambda: discard(job.path))


# --- the check pass -------------------------------------------------------------------------


def problem_of(normalise: Normaliser, event: dict[str, Any]) -> Problem | None:
    """What is wrong with one event for an import, or None."""
    try:
        normalise(event)
    except Invalid as invalid:
        return Problem(REASON_FIELDS.get(invalid.reason, ""), invalid.detail)
    return None


def prepare(event: dict[str, Any]) -> Problem | None:
    """Shape an imported event for the ingest API's rules: its timestamp is required and
    taken as it is. `sentAt` goes, since Segment would move the timestamp by the time between
    that sentAt and now, which for a past event is the whole age of the event."""
    event.pop("sentAt", None)
    if event.get("timestamp") in (None, ""):
        return NEEDS_TIMESTAMP
    return None


def _check_time() -> datetime:
    # A receive time whose text has microseconds, as almost every real one does: a time on an
    # exact second prints 7 characters shorter, and an event at the 32 KB limit must not pass
    # the check yet fail at import.
    now = timezone.now()
    return now if now.microsecond else now.replace(microsecond=1)


def _check(run: Run, on_progress: OnProgress | None) -> None:
    job = run.job
    with Reader(job.path, job.format, offset=job.offset_done) as reader:
        report = ErrorReport(job.errors_path, resume_at_line=reader.line)
        try:
            normalise = Normaliser(received_at=_check_time())
            pending = 0
            for record in reader:
                problem = record.problem or (prepare(record.event) if record.event is not None else None)
                if problem is None and record.event is not None:
                    problem = problem_of(normalise, record.event)
                job.lines_total += 1
                if problem is None:
                    job.lines_valid += 1
                else:
                    job.lines_invalid += 1
                    report.add(record.line, problem)
                pending += 1
                if pending == CHECK_CHUNK:
                    pending = 0
                    report.flush()
                    _check_checkpoint(run, record.end)
                    if on_progress:
                        on_progress(job)
                    if run.out_of_time():
                        _pause(run)
                        return
            report.flush()
        finally:
            report.close()
    _check_done(run, reader.offset)


def _check_checkpoint(run: Run, offset: int) -> None:
    job = run.job
    lease = _new_lease()
    if not _held(run, ImportStatus.VALIDATING).update(
            offset_done=offset, lines_total=job.lines_total, lines_valid=job.lines_valid,
            lines_invalid=job.lines_invalid, lease_until=lease, updated_at=timezone.now()):
        raise LeaseLost
    run.lease, job.offset_done = lease, offset


def _check_done(run: Run, offset: int) -> None:
    job = run.job
    if job.lines_total == 0:
        _fail(run, "The file holds no events, only blank lines.")
        return
    now = timezone.now()
    start = job.import_valid_only and job.lines_valid > 0
    with transaction.atomic():
        if not _held(run, ImportStatus.VALIDATING).update(
                status=ImportStatus.IMPORTING if start else ImportStatus.VALIDATED, offset_done=0,
                lines_total=job.lines_total, lines_valid=job.lines_valid, lines_invalid=job.lines_invalid,
                started_at=now if start else None, lease_until=None, updated_at=now):
            raise LeaseLost
        job.refresh_from_db()
        if start:
            # Chosen at upload ("start as soon as the check is done"): audited as the uploader's choice.
            audit_record(actor=Actor(user=job.created_by), action=AuditAction.IMPORT_STARTED,
                         workspace=job.workspace, target=job,
                         details={"file": job.file_name, "lines": job.lines_valid,
                                  "skipped_invalid": job.lines_invalid, "chosen": "at upload"})
            transaction.on_commit(lambda: queue_pass(job.pk, ImportStatus.IMPORTING))
    logger.info("imports.checked", extra={"job_id": job.pk, "lines": job.lines_total, "invalid": job.lines_invalid,
                                          "bytes": offset})


# --- the import pass ------------------------------------------------------------------------


def _import(run: Run, on_progress: OnProgress | None) -> None:
    job = run.job
    with Reader(job.path, job.format, offset=job.offset_done) as reader:
        for chunk in _chunks(reader):
            _import_chunk(run, chunk)
            if on_progress:
                on_progress(job)
            if run.out_of_time():
                _pause(run)
                return
    _import_done(run)


def _chunks(reader: Reader) -> Iterator[list[Record]]:
    chunk: list[Record] = []
    start = reader.offset
    for record in reader:
        chunk.append(record)
        if len(chunk) == CHUNK_LINES or record.end - start >= CHUNK_BYTES:
            yield chunk
            chunk, start = [], record.end
    if chunk:
        yield chunk


def _import_chunk(run: Run, records: list[Record]) -> None:
    job = run.job
    normalise = Normaliser(received_at=timezone.now())
    messages: list[Message] = []
    for record in records:
        event = record.event
        if event is None or prepare(event) is not None:
            continue  # listed in the error report by the check
        if event.get("messageId") in (None, ""):
            event["messageId"] = line_message_id(job.pk, record.line)
        try:
            messages.append(normalise(event))
        except Invalid:
            continue
    lease = _new_lease()
    with transaction.atomic():
        planned = plan_enforce(workspace_id=job.workspace_id, messages=messages, source="import").messages
        stored = events_append(workspace_id=job.workspace_id, messages=planned).stored if planned else 0
        if not _held(run, ImportStatus.IMPORTING).update(
                offset_done=records[-1].end, lines_done=F("lines_done") + len(messages),
                events_stored=F("events_stored") + stored, lease_until=lease, updated_at=timezone.now()):
            raise LeaseLost  # the chunk's events are rolled back with it
    run.lease = lease
    job.offset_done = records[-1].end
    job.lines_done += len(messages)  # the valid lines imported: progress counts them, not the skipped ones
    job.events_stored += stored


def _import_done(run: Run) -> None:
    now = timezone.now()
    with transaction.atomic():
        if not _held(run, ImportStatus.IMPORTING).update(status=ImportStatus.DONE, finished_at=now,
                                                         lease_until=None, updated_at=now):
            raise LeaseLost
        job = run.job
        job.refresh_from_db()
        audit_record(actor=Actor.system(), action=AuditAction.IMPORT_FINISHED, workspace=job.workspace, target=job,
                     details={"file": job.file_name, "outcome": "done", "events_stored": job.events_stored,
                              "already_in_workspace": max(0, job.lines_valid - job.events_stored),
                              "skipped_invalid": job.lines_invalid})
        transaction.on_commit(lambda: discard(job.path))
    logger.info("imports.done", extra={"job_id": job.pk, "events": job.events_stored,
                                       "seconds": round((now - (job.started_at or now)).total_seconds(), 1)})
