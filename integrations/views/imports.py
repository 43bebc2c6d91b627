"""Historical imports: upload a JSONL or CSV file of past events, check it, import it with progress.

Everyone in the workspace sees the imports, their progress and their error reports; owners
and admins upload, choose what to import and cancel. A job's page updates in place (htmx polls
its panel) while the file is checked or imported.
"""
from __future__ import annotations

from pathlib import Path
from typing import cast

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import URLPattern, path
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.audit import Actor
from accounts.http import WorkspaceRequest
from accounts.permissions import workspace_view
from accounts.views import attach_errors
from integrations.imports import (
    import_cancel,
    import_get_for_workspace,
    import_progress,
    import_start,
    import_upload,
    imports_for_workspace,
)
from integrations.imports.files import FORMATS, report_rows
from integrations.imports.uploads import (
    FIELD,
    ImportUploadForm,
    ImportUploadHandler,
    StoredUpload,
    too_large_message,
)
from integrations.models import ImportJob, ImportStatus
from integrations.selectors.health import State, workspace_connections_health

PAGE_SIZE = 25
ERRORS_SHOWN = 10
RUNNING = (ImportStatus.VALIDATING, ImportStatus.IMPORTING)


@workspace_view()
@require_GET
def imports(request: WorkspaceRequest) -> HttpResponse:
    jobs = imports_for_workspace(workspace=request.workspace)
    page = Paginator(jobs, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [(job, import_progress(job)) for job in page]
    context = {"page": page, "rows": rows, "any_running": any(job.status in RUNNING for job in page),
               "nav": "imports"}
    template = "integrations/_import_rows.html" if request.htmx else "integrations/imports.html"
    return render(request, template, context)


@csrf_exempt  # checked below, once the upload handler is in place (reading the token reads the body)
@workspace_view(manage=True)
@require_http_methods(["GET", "POST"])
def upload(request: WorkspaceRequest) -> HttpResponse:
    handler = ImportUploadHandler(request)
    request.upload_handlers = [handler]
    try:
        return _upload(request, handler)
    finally:
        handler.discard_unadopted()


@csrf_protect
def _upload(request: WorkspaceRequest, handler: ImportUploadHandler) -> HttpResponse:
    workspace = request.workspace
    if request.method != "POST":
        return _upload_page(request, ImportUploadForm())
    # Reading the form runs the upload handler, which stops storing past IMPORT_MAX_BYTES.
    form = ImportUploadForm(request.POST, request.FILES)
    if form.is_valid():
        stored: StoredUpload = form.cleaned_data[FIELD]
        try:
            job = import_upload(actor=Actor.from_request(request), workspace=workspace,
                                stored_path=stored.stored_path, file_name=stored.name or "upload", size=stored.size or 0,
                                file_format=form.cleaned_data["format"] or None,
                                start_when_checked=form.cleaned_data["start_when_checked"])
        except ValidationError as error:
            attach_errors(form, error)
        else:
            handler.adopted.add(stored.stored_path)
            # Only what stays true: the panel says where the check stands and follows it.
            messages.success(request, f"“{job.file_name}” uploaded.")
            return redirect("integrations:import", slug=workspace.slug, pk=job.pk)
    if handler.too_large:
        form.errors.pop(FIELD, None)
        form.add_error(FIELD, too_large_message())
    return _upload_page(request, form, status=413 if handler.too_large else 422)


def _upload_page(request: WorkspaceRequest, form: ImportUploadForm, *, status: int = 200) -> HttpResponse:
    return render(request, "integrations/import_upload.html",
                  {"form": form, "nav": "imports", "max_bytes": settings.IMPORT_MAX_BYTES}, status=status)


@workspace_view()
@require_GET
def detail(request: WorkspaceRequest, pk: int) -> HttpResponse:
    job = import_get_for_workspace(workspace=request.workspace, pk=pk)
    return render(request, "integrations/import_detail.html", _context(job))


@workspace_view()
@require_GET
def progress(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The job's panel alone: htmx polls it while the file is checked or imported."""
    job = import_get_for_workspace(workspace=request.workspace, pk=pk)
    return render(request, "integrations/_import_panel.html", _context(job))


@workspace_view(manage=True)
@require_POST
def start(request: WorkspaceRequest, pk: int) -> HttpResponse:
    job = import_get_for_workspace(workspace=request.workspace, pk=pk)
    try:
        # No message: the panel says "Importing", counts the valid lines and turns to the end.
        import_start(actor=Actor.from_request(request), job=job)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("integrations:import", slug=job.workspace.slug, pk=job.pk)


@workspace_view(manage=True)
@require_POST
def cancel(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """"Import nothing" after the check, or stop a check or an import under way."""
    job = import_get_for_workspace(workspace=request.workspace, pk=pk)
    try:
        was = job.status
        import_cancel(actor=Actor.from_request(request), job=job)
        if was == ImportStatus.IMPORTING:
            messages.success(request, f"Import stopped. The {job.events_stored:,} event{'s' if job.events_stored != 1 else ''} "
                                      "already imported stay; the rest were not imported.")
        else:
            messages.success(request, "Nothing was imported. The file is deleted; its error report stays here for 7 days.")
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    return redirect("integrations:import", slug=job.workspace.slug, pk=job.pk)


@workspace_view()
@require_GET
def errors(request: WorkspaceRequest, pk: int) -> HttpResponse:
    """The error report as CSV (line, field, reason), for any member of the workspace."""
    job = import_get_for_workspace(workspace=request.workspace, pk=pk)
    if not job.errors_path or not Path(job.errors_path).is_file():
        raise Http404("This import has no error report.")
    name = f"{Path(job.file_name).stem or 'import'}-errors.csv"
    response = FileResponse(open(job.errors_path, "rb"), as_attachment=True, filename=name,  # noqa: SIM115
                            content_type="text/csv; charset=utf-8")
    response["Cache-Control"] = "private, no-store"
    # Streamed, since a report can list a million lines; workspace_view is typed for HttpResponse.
    return cast(HttpResponse, response)


def _context(job: ImportJob) -> dict[str, object]:
    report = job.errors_path if job.lines_invalid and job.errors_path and Path(job.errors_path).is_file() else ""
    return {
        "job": job,
        "progress": import_progress(job),
        "running": job.status in RUNNING,
        "format_label": FORMATS.get(job.format, job.format),
        "report_available": bool(report),
        "error_rows": report_rows(report, limit=ERRORS_SHOWN) if report else [],
        "errors_shown": ERRORS_SHOWN,
        "duplicates": max(0, job.lines_valid - job.events_stored) if job.status == ImportStatus.DONE else 0,
        "steps": _steps(job),
        "destinations": _destinations(job) if job.status in (ImportStatus.IMPORTING, ImportStatus.DONE) else None,
        "nav": "imports",
    }


def _destinations(job: ImportJob) -> dict[str, list[str]]:
    """Where imported events go, by each connection's health as its page says it: the names of
    the sources delivery is queued for, and "Name (Disabled)" for those that send nothing now
    (disabled, paused, waiting for a check, key unreadable). Two reads."""
    sending: list[str] = []
    held: list[str] = []
    for connection, health in workspace_connections_health(workspace=job.workspace):
        if health.state == State.DISABLED or health.stopped:
            held.append(f"{connection.name} ({health.word})")
        else:
            sending.append(connection.name)
    return {"sending": sending, "held": held}


def _steps(job: ImportJob) -> list[tuple[str, str]]:
    """The three steps (check, choose, import) and each one's state: done, current, stopped or ""."""
    labels = ("Check every line", "Choose what to import", "Import")
    reached = {ImportStatus.VALIDATING: 0, ImportStatus.VALIDATED: 1, ImportStatus.IMPORTING: 2,
               ImportStatus.DONE: 3}
    if job.status in reached:
        at = reached[ImportStatus(job.status)]
        return [(label, "done" if n < at else "current" if n == at else "") for n, label in enumerate(labels)]
    # Cancelled or failed: where it stopped. A finished check resets the offset to 0.
    if job.started_at:
        at = 2
    elif job.lines_total and not job.offset_done:
        at = 1
    else:
        at = 0
    return [(label, "done" if n < at else "stopped" if n == at else "") for n, label in enumerate(labels)]


urlpatterns: list[URLPattern] = [
    path("imports/", imports, name="imports"),
    path("imports/new/", upload, name="import_upload"),
    path("imports/<int:pk>/", detail, name="import"),
    path("imports/<int:pk>/progress/", progress, name="import_progress"),
    path("imports/<int:pk>/start/", start, name="import_start"),
    path("imports/<int:pk>/cancel/", cancel, name="import_cancel"),
    path("imports/<int:pk>/errors.csv", errors, name="import_errors"),
]
