"""Import a JSONL or CSV file of past events into a workspace, from the shell:

    python manage.py import_events events.jsonl --workspace acme [--format jsonl|csv] [--valid-only] [--queue]

The file is copied into IMPORTS_DIR and goes through the same services as an upload from the
Imports page, audited with the system as actor. By default both passes run in this process
(no worker needed), printing progress: the check, then, when every line is valid or with
`--valid-only`, the import. When some lines are invalid and `--valid-only` is not given,
nothing is imported: the command prints the first errors and where the full report is, and
exits with status 1. With `--queue` the passes run on Celery workers instead, and the command
prints the job's page and returns at once (`--valid-only` then imports the valid lines as soon
as the check is done).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accounts.audit import Actor
from accounts.models import Workspace
from integrations.imports import import_check, import_progress, import_run, import_start, import_upload
from integrations.imports.files import FORMATS, TooLarge, report_rows, store
from integrations.models import ImportJob, ImportStatus

ERRORS_PRINTED = 10
PRINT_EVERY_SECONDS = 2.0


class Command(BaseCommand):
    help = "Check and import a JSONL or CSV file of past events into a workspace."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", metavar="FILE", help="The JSONL or CSV file of past events.")
        parser.add_argument("--workspace", required=True, metavar="SLUG", help="The workspace's slug.")
        parser.add_argument("--format", choices=sorted(FORMATS), help="Default: from the file's extension.")
        parser.add_argument("--valid-only", action="store_true",
                            help="When some lines are invalid, import the valid ones (default: import nothing).")
        parser.add_argument("--queue", action="store_true",
                            help="Run the check and the import on Celery workers instead of in this process.")

    def handle(self, *args: Any, file: str, workspace: str, format: str | None, valid_only: bool,
               queue: bool, **options: Any) -> None:
        target = Workspace.objects.filter(slug=workspace).first()
        if target is None:
            raise CommandError(f"No workspace has the slug “{workspace}”.")
        job = self._upload(Path(file), target, format, start_when_checked=valid_only and queue, queue=queue)
        if queue:
            self.stdout.write(f"Queued import {job.pk}: follow it at {self._page(job)}")
            return
        self._last_print = 0.0
        import_check(job_id=job.pk, budget=None, on_progress=self._print_check)
        job.refresh_from_db()
        if job.status != ImportStatus.VALIDATED:
            raise CommandError(job.failure or f"The check did not finish ({job.get_status_display().lower()}).")
        self._print_check_result(job)
        if job.lines_invalid and not valid_only:
            raise CommandError(f"Nothing imported. Fix the file and run again, or run again with --valid-only to "
                               f"import the {job.lines_valid:,} valid lines (or choose on {self._page(job)}).")
        self._import(job)

    def _upload(self, path: Path, workspace: Workspace, file_format: str | None, *, start_when_checked: bool,
                queue: bool) -> ImportJob:
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        try:
            with path.open("rb") as source:
                stored, size = store(source, limit=settings.IMPORT_MAX_BYTES)
            return import_upload(actor=Actor.system(), workspace=workspace, stored_path=stored, file_name=path.name,
                                 size=size, file_format=file_format, start_when_checked=start_when_checked,
                                 queue=queue)
        except TooLarge as error:
            raise CommandError(f"{error} Set IMPORT_MAX_BYTES to allow more, or split the file.") from None
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from None

    def _import(self, job: ImportJob) -> None:
        if not job.lines_valid:
            raise CommandError("No line is valid: nothing to import.")
        import_start(actor=Actor.system(), job=job, queue=False)
        self._last_print = 0.0
        import_run(job_id=job.pk, budget=None, on_progress=self._print_import)
        job.refresh_from_db()
        if job.status != ImportStatus.DONE:
            raise CommandError(job.failure or f"The import did not finish ({job.get_status_display().lower()}).")
        progress = import_progress(job)
        already = job.lines_valid - job.events_stored
        self.stdout.write(self.style.SUCCESS(
            f"Imported {job.events_stored:,} events in {progress.elapsed_text or '0 s'}"
            f"{f' ({progress.rate_text})' if progress.rate_text else ''}."))
        if already:
            self.stdout.write(f"{already:,} lines were already in the workspace (same messageId) and were not "
                              "stored twice.")
        if job.lines_invalid:
            self.stdout.write(f"{job.lines_invalid:,} lines with errors were skipped; the report is {job.errors_path}")

    def _print_check(self, job: ImportJob) -> None:
        if self._due():
            progress = import_progress(job)
            self.stdout.write(f"Checked {job.lines_total:,} lines ({progress.percent_whole}%), "
                              f"{job.lines_invalid:,} invalid; {progress.eta_text}")

    def _print_import(self, job: ImportJob) -> None:
        if self._due():
            progress = import_progress(job)
            self.stdout.write(f"Imported {job.lines_done:,} of {job.lines_valid:,} valid lines ({progress.percent_whole}%), "
                              f"{progress.rate_text}; {progress.eta_text}")

    def _print_check_result(self, job: ImportJob) -> None:
        self.stdout.write(f"Checked {job.lines_total:,} lines: {job.lines_valid:,} valid, {job.lines_invalid:,} "
                          "with errors.")
        if not job.lines_invalid:
            return
        for row in report_rows(job.errors_path, limit=ERRORS_PRINTED):
            self.stdout.write(f"  line {row['line']}: {row['field'] + ': ' if row['field'] else ''}{row['reason']}")
        if job.lines_invalid > ERRORS_PRINTED:
            self.stdout.write(f"  … and {job.lines_invalid - ERRORS_PRINTED:,} more.")
        self.stdout.write(f"Error report (line, field, reason): {job.errors_path}")

    def _due(self) -> bool:
        now = time.monotonic()
        if now - self._last_print < PRINT_EVERY_SECONDS:
            return False
        self._last_print = now
        return True

    def _page(self, job: ImportJob) -> str:
        return f"{settings.SITE_URL}{reverse('integrations:import', kwargs={'slug': job.workspace.slug, 'pk': job.pk})}"
