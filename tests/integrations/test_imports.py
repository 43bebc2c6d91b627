"""Historical imports: the check and its error report, the choice, the chunked import and its
resumption, memory on large files, the pages' permissions, and `manage.py import_events`.

The passes run in the test process (as the command runs them) unless a test is about the
worker; delivery to the emulator goes through a real Celery worker."""
from __future__ import annotations

import csv
import io
import os
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import services
from integrations.imports import (
    files,
    import_cancel,
    import_check,
    import_run,
    import_start,
    import_upload,
    imports_sweep,
    line_message_id,
    passes,
)
from integrations.imports import services as import_services
from integrations.imports.files import store
from integrations.models import Connection, Event, ImportJob, ImportStatus, Outcome, Verification
from tests.conftest import mark_checked, new_write_key
from tests.integrations.relay.processes import arrived, emulator_connection, wait_for

# One JSONL file with every kind of line: valid ones (with and without messageId, a
# sentAt that must not move the timestamp), blank lines, and one of each error.
JSONL_LINES = [
    '{"type": "track", "userId": "u-1", "event": "Signed Up", "timestamp": "2024-03-01T09:00:00Z", "messageId": "m-1"}',
    '{"type": "track", "userId": "u-2", "event": "Signed Up", "timestamp": "2024-03-01T09:30:00+02:00"',
    '{"type": "identify", "userId": "u-2", "traits": {"plan": "pro"}, "timestamp": "2024-03-02T10:00:00Z"}',
    "",
    '{"type": "track", "userId": "u-3", "event": "Paid"}',
    '{"type": "track", "anonymousId": "a-1", "timestamp": "2024-03-03T11:00:00Z"}',
    '{"type": "page", "anonymousId": "a-1", "name": "Pricing", "timestamp": "2024-03-03T11:01:00Z",'
    ' "sentAt": "2024-03-03T11:01:05Z"}',
    '{"type": "click", "userId": "u-4", "timestamp": "2024-03-04T12:00:00Z"}',
    '{"type": "track", "userId": "u-5", "event": "Paid", "timestamp": "last tuesday"}',
    '["not", "an", "event"]',
    '{"type": "group", "userId": "u-6", "timestamp": "2024-03-05T12:00:00Z"}',
    "   ",
    '{"type": "alias", "userId": "u-7", "previousId": "a-7", "timestamp": "2024-03-06T12:00:00Z"}',
]
JSONL_VALID_LINES = [1, 3, 7, 13]
JSONL_REPORT = [
    ("2", "", "Not valid JSON"),
    ("5", "timestamp", "Historical events need a timestamp"),
    ("6", "event", "A track call needs the event name"),
    ("8", "type", "Unknown type 'click'"),
    ("9", "timestamp", "timestamp 'last tuesday' is not an ISO-8601 time"),
    ("10", "", "Each line must be one JSON object"),
    ("11", "groupId", "A group call needs groupId"),
]

CSV_TEXT = (
    "type,userId,anonymousId,event,name,timestamp,messageId,properties.plan,properties.note,context.page.url\r\n"
    "track,u-1,,Signed Up,,2024-03-01T09:00:00Z,m-1,pro,,https://shop.example/a\r\n"
    'track,u-2,,Order Completed,,2024-03-01T10:00:00Z,,basic,"said ""hi"",\nthen left",\r\n'
    "track,u-3,,Paid,,,,,,\r\n"
    "identify,,,,,2024-03-02T10:00:00Z,,,,\r\n"
    "track,u-4,,Paid,2024-03-02T10:00:00Z\r\n"
    "\r\n"
    "page,,a-1,,Pricing,2024-03-03T11:00:00Z,,,,https://shop.example/pricing\r\n"
)
CSV_REPORT = [
    ("5", "timestamp", "Historical events need a timestamp"),
    ("6", "userId/anonymousId", "needs userId or anonymousId"),
    ("7", "", "The row has 5 values but the header has 10 columns"),
]


@pytest.fixture(autouse=True)
def imports_dir(settings: Any, tmp_path: Path) -> Path:
    folder = tmp_path / "imports"
    settings.IMPORTS_DIR = folder
    return folder


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def upload(path: Path, workspace: Workspace, user: User, *, file_format: str | None = None,
           start: bool = False) -> ImportJob:
    with path.open("rb") as source:
        stored, size = store(source, limit=10**9)
    return import_upload(actor=Actor(user=user), workspace=workspace, stored_path=stored, file_name=path.name,
                         size=size, file_format=file_format, start_when_checked=start, queue=False)


def checked(job: ImportJob) -> ImportJob:
    import_check(job_id=job.pk, budget=None)
    job.refresh_from_db()
    return job


def imported(job: ImportJob, user: User) -> ImportJob:
    import_start(actor=Actor(user=user), job=job, queue=False)
    import_run(job_id=job.pk, budget=None)
    job.refresh_from_db()
    return job


def report(job: ImportJob) -> list[tuple[str, str, str]]:
    with open(job.errors_path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["line", "field", "reason"]
    return [(line, field, reason) for line, field, reason in rows[1:]]


def assert_report(job: ImportJob, expected: list[tuple[str, str, str]]) -> None:
    rows = report(job)
    assert [(line, field) for line, field, _ in rows] == [(line, field) for line, field, _ in expected]
    for (_, _, reason), (_, _, part) in zip(rows, expected, strict=True):
        assert part in reason


def bodies(workspace: Workspace) -> list[dict[str, Any]]:
    return [orjson.loads(bytes(body)) for body in Event.objects.filter(workspace=workspace).order_by("seq")
            .values_list("body", flat=True)]


def actions(workspace: Workspace) -> list[str]:
    return list(AuditEvent.objects.filter(workspace=workspace, action__startswith="import.").order_by("id")
                .values_list("action", flat=True))


# --- the check and the choice ---------------------------------------------------------------


def test_a_jsonl_file_with_invalid_lines_gets_a_report_of_line_field_and_reason(
        tmp_path: Path, workspace: Workspace, alice: User) -> None:
    job = checked(upload(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES) + "\n"), workspace, alice))
    assert job.status == ImportStatus.VALIDATED
    assert (job.lines_total, job.lines_valid, job.lines_invalid) == (11, 4, 7)
    assert_report(job, JSONL_REPORT)
    assert not Event.objects.exists()  # nothing is imported before the choice


def test_a_csv_file_with_invalid_rows_gets_the_same_kind_of_report(tmp_path: Path, workspace: Workspace,
                                                                    alice: User) -> None:
    job = checked(upload(write(tmp_path, "past.csv", CSV_TEXT), workspace, alice))
    assert (job.lines_total, job.lines_valid, job.lines_invalid) == (6, 3, 3)
    # The quoted value spanning two lines counts as one row; the line numbers after it still
    # name the file's own lines.
    assert_report(job, CSV_REPORT)


def test_overlong_lines_unclosed_quotes_and_other_encodings_are_reported_at_their_line(
        tmp_path: Path, workspace: Workspace, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "MAX_RECORD_BYTES", 300)
    valid = '{"type": "track", "userId": "u-1", "event": "Paid", "timestamp": "2024-01-01T00:00:00Z"}'
    long_line = '{"type": "track", "userId": "' + "x" * 1000 + '"}'
    job = checked(upload(write(tmp_path, "long.jsonl", "\n".join([valid, long_line, valid]) + "\n"), workspace, alice))
    assert (job.lines_total, job.lines_valid) == (3, 2)
    assert_report(job, [("2", "", "The line is longer than")])

    csv_file = tmp_path / "odd.csv"
    csv_file.write_bytes(b"type,userId,event,timestamp\n"
                         b"track,u-1,Paid,2024-01-01T00:00:00Z\n"
                         b"track,u-\xff,Paid,2024-01-01T00:00:00Z\n"
                         b"track,u-3,Paid,2024-01-01T00:00:00Z\n"
                         b'track,"u-4,Paid,2024-01-01T00:00:00Z\n')
    job = checked(upload(csv_file, workspace, alice))
    assert (job.lines_total, job.lines_valid) == (4, 2)
    assert_report(job, [("3", "", "Not UTF-8 text"), ("5", "", "A quoted value opened on this line is never closed")])


def test_importing_the_valid_lines_stores_exactly_them_with_their_original_timestamps(
        tmp_path: Path, workspace: Workspace, alice: User, django_capture_on_commit_callbacks: Any) -> None:
    job = checked(upload(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES)), workspace, alice))
    with django_capture_on_commit_callbacks(execute=True):
        job = imported(job, alice)
    assert job.status == ImportStatus.DONE
    assert (job.lines_done, job.events_stored) == (4, 4)  # progress counts the valid lines imported
    events = bodies(workspace)
    assert [e["context"]["tributary"]["messageId"] for e in events] == [
        "m-1", line_message_id(job.pk, 3), line_message_id(job.pk, 7), line_message_id(job.pk, 13)]
    assert [e["type"] for e in events] == ["track", "identify", "page", "alias"]
    assert [datetime.fromisoformat(e["timestamp"]) for e in events] == [
        datetime.fromisoformat(t) for t in ("2024-03-01T09:00:00+00:00", "2024-03-02T10:00:00+00:00",
                                            "2024-03-03T11:01:00+00:00", "2024-03-06T12:00:00+00:00")]
    assert events[2]["originalTimestamp"] == "2024-03-03T11:01:00Z"  # its sentAt did not move it
    assert "sentAt" not in events[2]
    assert not Path(job.path).exists() and Path(job.errors_path).exists()
    assert actions(workspace) == ["import.uploaded", "import.started", "import.finished"]
    finished = AuditEvent.objects.get(action=AuditAction.IMPORT_FINISHED)
    assert finished.details["events_stored"] == 4 and finished.details["skipped_invalid"] == 7


def test_lines_that_cannot_be_serialised_are_reported_and_the_rest_imported(
        tmp_path: Path, workspace: Workspace, alice: User) -> None:
    def line(n: int, properties: str = "{}") -> str:
        return (f'{{"type": "track", "userId": "u-{n}", "event": "Paid", "timestamp": "2024-01-01T00:00:00Z", '
                f'"messageId": "m-{n}", "properties": {properties}}}')

    def nested(levels: int) -> str:
        return '{"a":' * levels + "1" + "}" * levels

    lines = [line(1), line(2, nested(64)), line(3, nested(300)), line(4, nested(1100)),
             line(5, '{"cut": "\\ud83d"}'), line(6)]
    job = checked(upload(write(tmp_path, "odd.jsonl", "\n".join(lines) + "\n"), workspace, alice))
    assert job.status == ImportStatus.VALIDATED and (job.lines_valid, job.lines_invalid) == (2, 4)
    assert_report(job, [("2", "", "more than 64 levels deep (in 'properties')"),
                        ("3", "", "more than 64 levels deep (in 'properties')"),
                        ("4", "", "Not valid JSON"),  # past the parsers' depth: not read at all
                        ("5", "", "The value at properties.cut holds a lone UTF-16 surrogate")])
    job = imported(job, alice)
    assert job.status == ImportStatus.DONE and job.events_stored == 2
    assert [e["context"]["tributary"]["messageId"] for e in bodies(workspace)] == ["m-1", "m-6"]


def test_csv_values_become_strings_and_dotted_columns_nest(tmp_path: Path, workspace: Workspace, alice: User) -> None:
    job = imported(checked(upload(write(tmp_path, "past.csv", CSV_TEXT), workspace, alice)), alice)
    first, second, page = bodies(workspace)
    assert first["properties"] == {"plan": "pro"} and first["context"]["page"] == {"url": "https://shop.example/a"}
    assert second["properties"] == {"plan": "basic", "note": 'said "hi",\nthen left'}
    assert second["context"]["tributary"]["messageId"] == line_message_id(job.pk, 3)
    assert page["name"] == "Pricing" and page["anonymousId"] == "a-1" and "userId" not in page


def test_importing_nothing_stores_nothing_deletes_the_file_and_keeps_the_report(
        tmp_path: Path, workspace: Workspace, alice: User, django_capture_on_commit_callbacks: Any) -> None:
    job = checked(upload(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES)), workspace, alice))
    with django_capture_on_commit_callbacks(execute=True):
        import_cancel(actor=Actor(user=alice), job=job)
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED and job.finished_at is not None
    assert not Event.objects.exists()
    assert not Path(job.path).exists() and len(report(job)) == 7
    with pytest.raises(ValidationError, match="not waiting for a choice"):
        import_start(actor=Actor(user=alice), job=job, queue=False)
    import_run(job_id=job.pk, budget=None)
    assert not Event.objects.exists()
    assert actions(workspace) == ["import.uploaded", "import.cancelled"]


def test_a_file_checked_clean_starts_at_once_when_chosen_at_upload(tmp_path: Path, workspace: Workspace,
                                                                    alice: User) -> None:
    lines = [line for n, line in enumerate(JSONL_LINES, start=1) if n in JSONL_VALID_LINES]
    job = checked(upload(write(tmp_path, "clean.jsonl", "\n".join(lines)), workspace, alice, start=True))
    assert job.status == ImportStatus.IMPORTING and job.started_at is not None
    assert AuditEvent.objects.get(action=AuditAction.IMPORT_STARTED).details["chosen"] == "at upload"
    import_run(job_id=job.pk, budget=None)
    assert Event.objects.count() == 4


def test_a_member_cannot_start_or_cancel_an_import(tmp_path: Path, workspace: Workspace, alice: User,
                                                   bob: User) -> None:
    job = checked(upload(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES)), workspace, alice))
    with pytest.raises(PermissionDenied, match="owners and admins"):
        import_start(actor=Actor(user=bob), job=job, queue=False)
    with pytest.raises(PermissionDenied, match="owners and admins"):
        import_cancel(actor=Actor(user=bob), job=job)
    job.refresh_from_db()
    assert job.status == ImportStatus.VALIDATED


@pytest.mark.parametrize(("name", "text", "file_format", "field", "message"), [
    ("events.txt", '{"type": "track"}\n', None, "format", "cannot tell the format"),
    ("events.csv", '{"type": "track"}\n', None, "format", "looks like JSONL"),
    ("events.jsonl", "type,userId\ntrack,u\n", None, "format", "does not look like JSONL"),
    ("events.csv", "type,userId,colour\n", None, "file", "Unknown column “colour”"),
    ("events.csv", "userId,event\n", None, "file", "no “type” column"),
    ("events.csv", "type,context.page,context.page.url\n", None, "file", "overlap"),
    ("events.jsonl", "\n\n", None, "file", "empty"),
])
def test_a_file_that_cannot_be_imported_is_refused_at_upload_and_deleted(
        tmp_path: Path, workspace: Workspace, alice: User, imports_dir: Path, name: str, text: str,
        file_format: str | None, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as refused:
        upload(write(tmp_path, name, text), workspace, alice, file_format=file_format)
    assert message in " ".join(refused.value.message_dict[field])
    assert not ImportJob.objects.exists() and list(imports_dir.iterdir()) == []


# --- resuming ---------------------------------------------------------------------------------


class WorkerKilled(BaseException):
    """What a worker dying mid-chunk looks like to the code: nothing after this line runs."""


def numbered_lines(count: int, *, invalid_every: int = 0, with_ids_every: int = 0) -> str:
    lines = []
    for n in range(1, count + 1):
        if invalid_every and n % invalid_every == 0:
            lines.append(f'{{"type": "track", "userId": "u-{n}", "event": "Paid"}}')  # no timestamp
        elif with_ids_every and n % with_ids_every == 0:
            lines.append(f'{{"type": "track", "userId": "u-{n}", "event": "Paid", "messageId": "own-{n}", '
                         f'"timestamp": "2024-01-01T00:00:00Z"}}')
        else:
            lines.append(f'{{"type": "track", "userId": "u-{n}", "event": "Paid", "timestamp": "2024-01-01T00:00:00Z"}}')
    return "\n".join(lines) + "\n"


def recorder(queued: list[tuple[int, str]]) -> Callable[[int, str], bool]:
    """A stand-in for queueing a pass that only notes what would have been queued."""
    def queue_pass(job_id: int, status: str) -> bool:
        queued.append((job_id, status))
        return True
    return queue_pass


def expire_lease(job: ImportJob) -> None:
    ImportJob.objects.filter(pk=job.pk).update(lease_until=timezone.now() - timedelta(seconds=1))


def test_an_import_killed_mid_chunk_resumes_exactly_and_stores_every_line_once(
        tmp_path: Path, workspace: Workspace, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passes, "CHUNK_LINES", 100)
    job = checked(upload(write(tmp_path, "big.jsonl", numbered_lines(1000, invalid_every=7, with_ids_every=5)),
                         workspace, alice))
    assert (job.lines_valid, job.lines_invalid) == (858, 142)
    import_start(actor=Actor(user=alice), job=job, queue=False)

    real_append, calls = getattr(passes, "events_append"), []

    def dies_on_the_fourth_chunk(**kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 4:
            real_append(**kwargs)  # the chunk's events are written…
            raise WorkerKilled  # …and the worker dies before the transaction commits
        return real_append(**kwargs)

    monkeypatch.setattr(passes, "events_append", dies_on_the_fourth_chunk)
    with pytest.raises(WorkerKilled):
        import_run(job_id=job.pk, budget=None)
    job.refresh_from_db()
    assert (job.status, job.lines_done) == (ImportStatus.IMPORTING, 300 - 300 // 7)  # the valid lines imported
    assert Event.objects.count() == job.events_stored == 300 - 300 // 7
    import_run(job_id=job.pk, budget=None)  # the dead run's lease still holds the job
    assert Event.objects.count() == job.events_stored

    expire_lease(job)
    import_run(job_id=job.pk, budget=None)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and job.events_stored == job.lines_done == 858
    message_ids = list(Event.objects.values_list("message_id", flat=True))
    assert len(message_ids) == len(set(message_ids)) == 858
    valid = [n for n in range(1, 1001) if n % 7]
    assert set(message_ids) == {f"own-{n}" if n % 5 == 0 else line_message_id(job.pk, n) for n in valid}


def test_a_chunk_run_twice_is_stored_once(tmp_path: Path, workspace: Workspace, alice: User,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Were the progress of committed chunks ever lost, their lines would dedupe: the ids of
    lines without messageId come from the job and the line number."""
    monkeypatch.setattr(passes, "CHUNK_LINES", 50)
    job = imported(checked(upload(write(tmp_path, "big.jsonl", numbered_lines(200)), workspace, alice)), alice)
    assert Event.objects.count() == 200
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.IMPORTING, offset_done=0, lines_done=0)
    import_run(job_id=job.pk, budget=None)
    job.refresh_from_db()
    assert job.status == ImportStatus.DONE and job.lines_done == 200
    assert Event.objects.count() == 200 and job.events_stored == 200


def test_a_check_killed_mid_chunk_resumes_without_listing_an_error_twice(
        tmp_path: Path, workspace: Workspace, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passes, "CHECK_CHUNK", 100)
    job = upload(write(tmp_path, "big.jsonl", numbered_lines(1000, invalid_every=7)), workspace, alice)
    real_problem_of, calls = passes.problem_of, []

    def dies_after_250_lines(normalise: Any, event: dict[str, Any]) -> Any:
        calls.append(1)
        if len(calls) == 250:
            raise WorkerKilled  # report rows of lines 201-250 are written but not committed
        return real_problem_of(normalise, event)

    monkeypatch.setattr(passes, "problem_of", dies_after_250_lines)
    with pytest.raises(WorkerKilled):
        import_check(job_id=job.pk, budget=None)
    job.refresh_from_db()
    assert (job.status, job.lines_total) == (ImportStatus.VALIDATING, 200)
    monkeypatch.setattr(passes, "problem_of", real_problem_of)
    expire_lease(job)
    job = checked(job)
    assert (job.lines_total, job.lines_valid, job.lines_invalid) == (1000, 858, 142)
    assert [int(line) for line, _, _ in report(job)] == [n for n in range(1, 1001) if n % 7 == 0]


def test_the_check_and_the_import_run_in_slices_that_requeue_themselves(
        tmp_path: Path, workspace: Workspace, alice: User, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passes, "CHECK_CHUNK", 100)
    monkeypatch.setattr(passes, "CHUNK_LINES", 100)
    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(passes, "queue_pass", recorder(queued))
    job = upload(write(tmp_path, "big.jsonl", numbered_lines(300)), workspace, alice)
    import_check(job_id=job.pk, budget=0)  # one chunk, then out of time
    job.refresh_from_db()
    assert (job.lines_total, job.lease_until, queued) == (100, None, [(job.pk, ImportStatus.VALIDATING)])
    job = checked(job)
    import_start(actor=Actor(user=alice), job=job, queue=False)
    import_run(job_id=job.pk, budget=0)
    job.refresh_from_db()
    assert (job.lines_done, queued[-1]) == (100, (job.pk, ImportStatus.IMPORTING))


def test_the_sweeper_resumes_jobs_whose_worker_died_and_tidies_up(
        tmp_path: Path, workspace: Workspace, alice: User, imports_dir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    queued: list[tuple[int, str]] = []
    monkeypatch.setattr(import_services, "queue_pass", recorder(queued))
    text = numbered_lines(10)
    dead = upload(write(tmp_path, "a.jsonl", text), workspace, alice)
    alive = upload(write(tmp_path, "b.jsonl", text), workspace, alice)
    waiting = checked(upload(write(tmp_path, "c.jsonl", text), workspace, alice))
    ended = checked(upload(write(tmp_path, "d.jsonl", numbered_lines(10, invalid_every=2)), workspace, alice))
    import_cancel(actor=Actor(user=alice), job=ended)
    now = timezone.now()
    ImportJob.objects.filter(pk=dead.pk).update(lease_until=now - timedelta(seconds=1))
    ImportJob.objects.filter(pk=alive.pk).update(lease_until=now + timedelta(seconds=30))
    ImportJob.objects.filter(pk=waiting.pk).update(updated_at=now - timedelta(days=8))
    ImportJob.objects.filter(pk=ended.pk).update(finished_at=now - timedelta(days=8))
    orphan = imports_dir / f"{'ab' * 16}.upload"
    someone_elses = imports_dir / "notes.txt"
    for path in (orphan, someone_elses):
        path.write_bytes(b"{}")
        os.utime(path, (time.time() - 7200, time.time() - 7200))

    assert imports_sweep() == 1
    assert queued == [(dead.pk, ImportStatus.VALIDATING)]
    assert ImportJob.objects.get(pk=dead.pk).lease_until is None
    assert imports_sweep() == 0  # queued once, not every sweep
    waiting.refresh_from_db()
    ended.refresh_from_db()
    assert waiting.status == ImportStatus.CANCELLED
    assert ended.errors_path == "" and not Path(report_path(ended)).exists()
    assert not orphan.exists() and someone_elses.exists() and Path(alive.path).exists()


def report_path(job: ImportJob) -> str:
    return str(Path(job.path).with_suffix(".errors.csv"))


# --- memory -----------------------------------------------------------------------------------


def write_lines(path: Path, count: int) -> None:
    """A large file, written in pieces so the test itself never holds it."""
    with path.open("w", encoding="utf-8") as file:
        for start in range(0, count, 10_000):
            file.write("".join(
                f'{{"type": "track", "userId": "user-{n:07d}", "event": "Order Completed", "properties": '
                f'{{"revenue": {n % 500}.5, "currency": "EUR", "sku": "sku-{n % 977}"}}, '
                f'"timestamp": "2024-0{1 + n % 9}-1{n % 10}T10:{n % 60:02d}:00Z"}}\n'
                for n in range(start, min(start + 10_000, count))))


def peak_memory_of(work: Callable[[], None]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checking_a_200000_line_file_holds_a_few_megabytes_whatever_its_size(
        tmp_path: Path, workspace: Workspace, alice: User) -> None:
    source = tmp_path / "large.jsonl"
    write_lines(source, 200_000)
    job = upload(source, workspace, alice)
    assert job.size > 30 * 1024 * 1024
    peak = peak_memory_of(lambda: import_check(job_id=job.pk, budget=None))
    job.refresh_from_db()
    assert (job.status, job.lines_valid) == (ImportStatus.VALIDATED, 200_000)
    assert peak < min(8 * 1024 * 1024, job.size // 8), f"peak {peak:,} bytes for a {job.size:,}-byte file"


# --- pages --------------------------------------------------------------------------------------


def url(name: str, workspace: Workspace, **kwargs: int) -> str:
    return reverse(f"integrations:{name}", kwargs={"slug": workspace.slug, **kwargs})


@pytest.fixture
def checked_job(tmp_path: Path, workspace: Workspace, alice: User) -> ImportJob:
    return checked(upload(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES)), workspace, alice))


def job_urls(workspace: Workspace, job: ImportJob) -> list[str]:
    return [url("imports", workspace), url("import_upload", workspace)] + [
        url(name, workspace, pk=job.pk) for name in ("import", "import_progress", "import_start", "import_cancel",
                                                     "import_errors")]


@pytest.mark.parametrize("method", ["get", "post"])
def test_an_outsider_gets_404_on_every_import_url_including_the_report(
        method: str, charlie_client: Client, workspace: Workspace, checked_job: ImportJob) -> None:
    for path in job_urls(workspace, checked_job):
        response = getattr(charlie_client, method)(path, {"file": io.BytesIO(b"{}")} if method == "post" else {})
        assert response.status_code == 404, f"{method.upper()} {path} answered {response.status_code}"
    checked_job.refresh_from_db()
    assert checked_job.status == ImportStatus.VALIDATED and ImportJob.objects.count() == 1


def test_another_workspaces_import_is_a_404_for_its_owner_too(alice_client: Client, charlie: User,
                                                              charlie_workspace: Workspace, tmp_path: Path) -> None:
    other = checked(upload(write(tmp_path, "x.jsonl", "\n".join(JSONL_LINES)), charlie_workspace, charlie))
    alice_workspace = Workspace.objects.exclude(pk=charlie_workspace.pk).get()
    for name in ("import", "import_progress", "import_errors"):
        assert alice_client.get(url(name, alice_workspace, pk=other.pk)).status_code == 404


def test_a_member_sees_imports_and_downloads_the_report_but_cannot_upload_or_choose(
        bob_client: Client, workspace: Workspace, checked_job: ImportJob, imports_dir: Path) -> None:
    listing = bob_client.get(url("imports", workspace)).content.decode()
    assert "past.jsonl" in listing and "Import a file" not in listing
    page = bob_client.get(url("import", workspace, pk=checked_job.pk)).content.decode()
    assert "An owner or admin of" in page and url("import_start", workspace, pk=checked_job.pk) not in page
    download = bob_client.get(url("import_errors", workspace, pk=checked_job.pk))
    assert download.status_code == 200 and download["Content-Type"] == "text/csv; charset=utf-8"
    assert download["Content-Disposition"] == 'attachment; filename="past-errors.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(download.streaming_content).decode())))  # type: ignore[attr-defined]
    assert rows[0] == ["line", "field", "reason"] and len(rows) == 8

    files_before = sorted(imports_dir.iterdir())
    assert bob_client.get(url("import_upload", workspace)).status_code == 403
    refused = bob_client.post(url("import_upload", workspace), {"file": io.BytesIO(b'{"type": "track"}\n')})
    assert refused.status_code == 403
    assert ImportJob.objects.count() == 1 and sorted(imports_dir.iterdir()) == files_before
    assert bob_client.post(url("import_start", workspace, pk=checked_job.pk)).status_code == 403
    assert bob_client.post(url("import_cancel", workspace, pk=checked_job.pk)).status_code == 403
    checked_job.refresh_from_db()
    assert checked_job.status == ImportStatus.VALIDATED
    assert AuditEvent.objects.filter(action=AuditAction.ACCESS_DENIED).count() == 4


def test_an_owner_uploads_a_file_and_lands_on_its_page(alice_client: Client, workspace: Workspace,
                                                      imports_dir: Path) -> None:
    upload_file = io.BytesIO(CSV_TEXT.encode())
    upload_file.name = "history.csv"
    response = alice_client.post(url("import_upload", workspace), {"file": upload_file, "format": ""})
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == url("import", workspace, pk=job.pk)
    assert (job.file_name, job.format, job.size, job.status) == ("history.csv", "csv", len(CSV_TEXT.encode()),
                                                                 ImportStatus.VALIDATING)
    assert Path(job.path).parent == imports_dir and Path(job.path).read_bytes() == CSV_TEXT.encode()
    assert list(imports_dir.iterdir()) == [Path(job.path)]
    page = alice_client.get(response["Location"]).content.decode()
    assert "Checking every line" in page and "Stop the check" in page and 'hx-trigger="every 1s"' in page
    assert actions(workspace) == ["import.uploaded"]


def test_the_page_shows_the_choice_and_the_first_errors_after_the_check(alice_client: Client, workspace: Workspace,
                                                                         checked_job: ImportJob) -> None:
    page = alice_client.get(url("import", workspace, pk=checked_job.pk)).content.decode()
    assert "Import the 4 valid lines" in page and "Import nothing" in page
    assert "7 lines have errors." in page and "Historical events need a timestamp" in page
    assert 'hx-trigger="every 1s"' not in page
    response = alice_client.post(url("import_start", workspace, pk=checked_job.pk))
    assert response["Location"] == url("import", workspace, pk=checked_job.pk)
    checked_job.refresh_from_db()
    assert checked_job.status == ImportStatus.IMPORTING
    progress = alice_client.get(url("import_progress", workspace, pk=checked_job.pk)).content.decode()
    assert "Importing events…" in progress and "Stop importing" in progress


@pytest.mark.parametrize(("name", "content", "form", "error"), [
    ("notes.txt", b'{"type": "track"}\n', {}, "cannot tell the format from the name"),
    ("history.csv", b"type,colour\n", {}, "Unknown column"),
    ("history.csv", b"type,userId\n", {"format": "jsonl"}, "does not look like JSONL"),
    ("history.jsonl", b"", {}, "The file is empty"),
    ("history.jsonl", b'{"type": "track"}\n' * 100, {}, "the most one import takes"),
])
def test_a_refused_upload_says_what_to_fix_next_to_the_field_and_keeps_nothing(
        alice_client: Client, workspace: Workspace, imports_dir: Path, settings: Any, name: str, content: bytes,
        form: dict[str, str], error: str) -> None:
    settings.IMPORT_MAX_BYTES = 1000
    upload_file = io.BytesIO(content)
    upload_file.name = name
    response = alice_client.post(url("import_upload", workspace), {"file": upload_file, **form})
    assert response.status_code in (413, 422)
    page = response.content.decode()
    assert error in page and 'class="field has-error"' in page
    assert not ImportJob.objects.exists()
    assert not imports_dir.exists() or list(imports_dir.iterdir()) == []


def test_a_file_far_over_the_limit_is_refused_and_nothing_of_it_is_kept(
        alice_client: Client, workspace: Workspace, imports_dir: Path, settings: Any) -> None:
    settings.IMPORT_MAX_BYTES = 10
    upload_file = io.BytesIO(b"{}\n" * 400_000)
    upload_file.name = "huge.jsonl"
    response = alice_client.post(url("import_upload", workspace), {"file": upload_file})
    assert response.status_code == 413 and "the most one import takes" in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not imports_dir.exists() or list(imports_dir.iterdir()) == []


def test_the_list_shows_each_import_with_its_counts(alice_client: Client, workspace: Workspace,
                                                    checked_job: ImportJob) -> None:
    page = alice_client.get(url("imports", workspace)).content.decode()
    assert "past.jsonl" in page and "Checked: waiting for your choice" in page and "7 invalid" in page
    assert "Import a file" in page and 'hx-trigger="every 2s"' not in page


def test_the_list_is_empty_at_first(alice_client: Client, bob_client: Client, workspace: Workspace) -> None:
    assert "No imports yet" in alice_client.get(url("imports", workspace)).content.decode()
    assert "An owner or admin" in bob_client.get(url("imports", workspace)).content.decode()


# --- the command ---------------------------------------------------------------------------------


def run_command(*args: str, **options: Any) -> str:
    out = io.StringIO()
    call_command("import_events", *args, stdout=out, **options)
    return out.getvalue()


def test_the_command_imports_nothing_when_lines_are_invalid_and_says_where_the_report_is(
        tmp_path: Path, workspace: Workspace) -> None:
    source = write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES))
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"Nothing imported.*--valid-only to import the 4 valid lines"):
        call_command("import_events", str(source), workspace=workspace.slug, stdout=out)
    job = ImportJob.objects.get()
    assert "Checked 11 lines: 4 valid, 7 with errors." in out.getvalue()
    assert "line 5: timestamp: Historical events need a timestamp" in out.getvalue()
    assert f"Error report (line, field, reason): {job.errors_path}" in out.getvalue()
    assert not Event.objects.exists() and job.status == ImportStatus.VALIDATED
    assert source.exists()  # the command works on its own copy


def test_the_command_imports_the_valid_lines_with_valid_only(tmp_path: Path, workspace: Workspace) -> None:
    out = run_command(str(write(tmp_path, "past.jsonl", "\n".join(JSONL_LINES))), workspace=workspace.slug,
                      valid_only=True)
    assert "Imported 4 events in" in out and "7 lines with errors were skipped" in out
    assert Event.objects.count() == 4
    assert AuditEvent.objects.get(action=AuditAction.IMPORT_UPLOADED).actor is None  # the system


def test_the_command_imports_a_clean_csv_file_at_once(tmp_path: Path, workspace: Workspace) -> None:
    text = "type,userId,event,timestamp\n" + "".join(f"track,u-{n},Paid,2024-01-01T00:00:00Z\n" for n in range(30))
    out = run_command(str(write(tmp_path, "clean.csv", text)), workspace=workspace.slug)
    assert "Checked 30 lines: 30 valid, 0 with errors." in out and "Imported 30 events" in out
    assert Event.objects.count() == 30


def test_the_command_refuses_what_it_cannot_import(tmp_path: Path, workspace: Workspace) -> None:
    with pytest.raises(CommandError, match="No workspace has the slug"):
        run_command(str(tmp_path / "x.jsonl"), workspace="nope")
    with pytest.raises(CommandError, match="No file at"):
        run_command(str(tmp_path / "missing.jsonl"), workspace=workspace.slug)
    with pytest.raises(CommandError, match="Unknown column"):
        run_command(str(write(tmp_path, "bad.csv", "type,colour\n")), workspace=workspace.slug)


# --- through a real worker to the emulator ------------------------------------------------------


def status_of(job_id: int) -> str:
    return ImportJob.objects.values_list("status", flat=True).get(pk=job_id)


@pytest.mark.django_db(transaction=True)
def test_imported_events_reach_segment_with_their_original_timestamps_through_a_worker(
        segment: Any, celery_worker: Any, alice: User, workspace: Workspace, alice_client: Client) -> None:
    connection, key = emulator_connection(segment, alice, workspace)
    upload_file = io.BytesIO(("\n".join(JSONL_LINES) + "\n").encode())
    upload_file.name = "history.jsonl"
    alice_client.post(url("import_upload", workspace), {"file": upload_file})
    job = ImportJob.objects.get()
    wait_for(lambda: status_of(job.pk) == ImportStatus.VALIDATED, 30, "the upload checked")
    alice_client.post(url("import_start", workspace, pk=job.pk))
    wait_for(lambda: status_of(job.pk) == ImportStatus.DONE, 30, "the import done")
    wait_for(lambda: len(arrived(segment, key)) == 4, 30, "the 4 imported events at Segment")
    sent = {e["context"]["tributary"]["messageId"]: e for e in arrived(segment, key)}
    assert datetime.fromisoformat(sent["m-1"]["timestamp"]) == datetime.fromisoformat("2024-03-01T09:00:00+00:00")
    identify = sent[line_message_id(job.pk, 3)]
    assert datetime.fromisoformat(identify["timestamp"]) == datetime.fromisoformat("2024-03-02T10:00:00+00:00")
    assert identify["originalTimestamp"] == "2024-03-02T10:00:00Z" and identify["traits"] == {"plan": "pro"}
    page = sent[line_message_id(job.pk, 7)]
    assert datetime.fromisoformat(page["timestamp"]) == datetime.fromisoformat("2024-03-03T11:01:00+00:00")
    # Segment has the events before the relay has recorded its 200: wait for the position too.
    wait_for(lambda: Connection.objects.values_list("delivered_seq", flat=True).get(pk=connection.pk) == 4, 30,
             "the relay's position past the 4 events")
    assert not Path(job.path).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_an_import_whose_worker_is_killed_is_resumed_by_beat_and_stores_every_line_once(
        segment: Any, alice: User, workspace: Workspace, tmp_path: Path) -> None:
    """Real processes, as the Procfile runs them: a prefork worker killed with SIGKILL in the
    middle of an import, a second worker, and beat's sweep resuming the job after its lease."""
    from config.celery_app import app
    from tests.integrations.relay.processes import Processes

    with app.connection_for_write() as broker:  # leftovers of an interrupted run
        broker.default_channel.queue_purge(app.conf.task_default_queue)  # type: ignore[attr-defined]
    source = tmp_path / "history.jsonl"
    write_lines(source, 60_000)
    job = checked(upload(source, workspace, alice))
    processes = Processes(tmp_path / "processes", segment=segment)
    processes.folder.mkdir()
    processes.settings["IMPORT_LEASE_SECONDS"] = "5"  # not the production 60 s
    try:
        first = processes.worker("import-first", concurrency=1)
        import_start(actor=Actor(user=alice), job=job)  # queued to the worker on commit

        def lines_done() -> int:
            return ImportJob.objects.values_list("lines_done", flat=True).get(pk=job.pk)

        wait_for(lambda: lines_done() > 0, 60, "the first chunks", logs=processes.logs)
        first.kill()
        at_kill = lines_done()
        assert 0 < at_kill < 60_000, "the import finished before the worker could be killed"
        assert Event.objects.count() == at_kill  # every committed chunk, and only those

        processes.beat()
        processes.worker("import-second", concurrency=1)
        wait_for(lambda: status_of(job.pk) == ImportStatus.DONE, 90, "the import resumed and finished",
                   logs=processes.logs)
    finally:
        processes.close()
        print(processes.logs())  # shown by pytest only when the test failed
    job.refresh_from_db()
    assert job.events_stored == job.lines_done == 60_000
    assert Event.objects.count() == 60_000
    assert Event.objects.values("message_id").distinct().count() == 60_000


def test_an_operator_sees_imports_in_the_admin_and_cancels_one(checked_job: ImportJob, workspace: Workspace) -> None:
    operator = User.objects.create_user("operator@example.com", "x", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(operator)
    changelist = reverse("admin:integrations_importjob_changelist")
    page = client.get(changelist).content.decode()
    assert "past.jsonl" in page and checked_job.path not in page
    client.post(changelist, {"action": "cancel", "_selected_action": [checked_job.pk]})
    checked_job.refresh_from_db()
    assert checked_job.status == ImportStatus.CANCELLED
    cancelled = AuditEvent.objects.get(action=AuditAction.IMPORT_CANCELLED)
    assert cancelled.actor == operator and cancelled.details["reason"] == "cancelled by an operator"


def test_the_finished_page_names_the_sources_it_queued_for_and_those_that_send_nothing_now(
        alice_client: Client, workspace: Workspace, alice: User, checked_job: ImportJob) -> None:
    """Not "sent to every connected Segment source" while one is disabled: its page says the events wait."""
    actor = Actor(user=alice)
    sending = mark_checked(services.connection_create(actor=actor, workspace=workspace, name="Production",
                                                      region="us", write_key=new_write_key()))
    disabled = services.connection_create(actor=actor, workspace=workspace, name="Legacy", region="us",
                                          write_key=new_write_key())
    Verification.objects.filter(connection__in=[sending, disabled]).update(outcome=Outcome.PASSED,
                                                                          finished_at=timezone.now())
    services.connection_set_enabled(actor=actor, connection=disabled, enabled=False)
    job = imported(checked_job, alice)
    page = alice_client.get(url("import", workspace, pk=job.pk)).content.decode()
    assert job.status == ImportStatus.DONE and "every connected Segment source" not in page
    assert ("Queued for delivery to Production. Not sent while disabled, paused or waiting for a check: "
            "Legacy (Disabled); the events wait for it. Each connection's page shows its delivery.") in page
    legacy = alice_client.get(reverse("integrations:connection", kwargs={"slug": workspace.slug, "pk": disabled.pk}))
    assert "4 events wait for it." in legacy.content.decode()
