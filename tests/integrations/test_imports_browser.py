"""Imports driven through headless Chromium with a real Celery worker: an owner uploads a file
with some invalid lines, watches the check's progress bar move, imports the valid lines,
watches the import and sees it finish; another import is stopped half-way.

Screenshots land in artifacts/import-*.png for people to look at."""
from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from accounts.models import User, Workspace
from integrations.imports import passes
from integrations.models import Event, ImportJob, ImportStatus
from tests.conftest import both_sizes, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINES = 24_000
INVALID_EVERY = 800  # 30 lines without a timestamp


def history_file(path: Path, lines: int = LINES) -> Path:
    with path.open("w", encoding="utf-8") as file:
        for n in range(1, lines + 1):
            timestamp = "" if n % INVALID_EVERY == 0 else f', "timestamp": "2024-05-{1 + n % 28:02d}T08:00:00Z"'
            file.write(f'{{"type": "track", "userId": "user-{n}", "event": "Order Completed", '
                       f'"properties": {{"revenue": {n % 90}}}{timestamp}}}\n')
    return path


@pytest.fixture
def slowed(settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Small chunks and a pause after each, so a person (and this test) can watch the bar move."""
    settings.IMPORTS_DIR = tmp_path / "imports"
    monkeypatch.setattr(passes, "CHECK_CHUNK", 1_500)
    monkeypatch.setattr(passes, "CHUNK_LINES", 1_500)
    for name in ("_check_checkpoint", "_import_chunk"):
        monkeypatch.setattr(passes, name, paused(getattr(passes, name)))


def paused(step: Callable[..., None]) -> Callable[..., None]:
    def run(*args: Any) -> None:
        step(*args)
        time.sleep(0.35)
    return run


def watch_progress(page: Any, until: str) -> list[int]:
    """The progress bar's values, sampled until the job's status is `until`."""
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = page.evaluate("""() => {
            const panel = document.querySelector('#import-panel');
            const bar = document.querySelector('[data-testid=import-progress]');
            return [panel && panel.dataset.status, bar && bar.getAttribute('aria-valuenow')];
        }""")
        if state[1] is not None:
            seen.append(int(state[1]))
        if state[0] == until:
            return seen
        page.wait_for_timeout(150)
    raise AssertionError(f"the import did not reach {until}; bar values seen: {seen}")


def test_an_owner_uploads_watches_the_check_imports_the_valid_lines_and_sees_it_finish(
        page: Any, alice: User, workspace: Workspace, celery_worker: Any, slowed: None, tmp_path: Path) -> None:
    sign_in(page, alice.email)
    page.get_by_role("navigation", name="Alice Analytics").get_by_role("link", name="Imports").click()
    expect(page.get_by_role("heading", name="No imports yet")).to_be_visible()
    both_sizes(page, "import-01-empty")

    page.get_by_role("link", name="Import a file").click()
    expect(page.get_by_role("heading", name="Import past events")).to_be_visible()
    # A CSV whose header does not map to Segment's fields is refused next to the file field.
    bad = tmp_path / "colours.csv"
    bad.write_text("type,userId,colour\ntrack,u-1,blue\n")
    page.get_by_label("File", exact=True).set_input_files(str(bad))
    page.get_by_role("button", name="Upload and check").click()
    expect(page.locator(".field.has-error")).to_contain_text("Unknown column “colour”")
    both_sizes(page, "import-02-upload-refused")

    page.get_by_label("File", exact=True).set_input_files(str(history_file(tmp_path / "orders-2024.jsonl")))
    page.get_by_role("button", name="Upload and check").click()
    expect(page).to_have_url(re.compile(r"/imports/\d+/$"))
    expect(page.get_by_role("heading", name="Checking every line")).to_be_visible()
    page.wait_for_function("() => +document.querySelector('[data-testid=import-progress]')?.getAttribute('aria-valuenow') >= 20")
    both_sizes(page, "import-03-checking")
    checking = watch_progress(page, until=ImportStatus.VALIDATED)
    assert any(0 < value < 100 for value in checking), f"the check's bar never moved: {checking}"
    assert checking == sorted(checking), f"the check's bar went backwards: {checking}"

    expect(page.get_by_test_id("lines-invalid")).to_have_text("30")
    # Nothing still says the check is running: the messages followed the job in place.
    main = page.locator("main")
    expect(main).to_contain_text("“orders-2024.jsonl” uploaded.")
    expect(main).not_to_contain_text("Checking every line")
    expect(main).not_to_contain_text("Checking lines…")
    expect(page.get_by_test_id("import-errors")).to_contain_text("Historical events need a timestamp")
    expect(page.get_by_test_id("import-errors")).to_contain_text("800")
    with page.expect_download() as download:
        page.get_by_role("link", name="Error report (CSV)").click()
    report = Path(download.value.path()).read_text().splitlines()
    assert report[0] == "line,field,reason" and len(report) == 31
    both_sizes(page, "import-04-checked")

    page.get_by_role("button", name="Import the 23,970 valid lines").click()
    expect(page.get_by_role("heading", name="Importing")).to_be_visible()
    page.wait_for_function("() => +document.querySelector('[data-testid=import-progress]')?.getAttribute('aria-valuenow') >= 20")
    expect(page.get_by_test_id("import-eta")).to_contain_text("left")
    # It counts the valid lines being imported, not every line of the file.
    expect(page.get_by_test_id("import-count")).to_have_text(re.compile(r"^[\d,]+ of 23,970 valid lines imported$"))
    both_sizes(page, "import-05-importing")
    importing = watch_progress(page, until=ImportStatus.DONE)
    assert any(0 < value < 100 for value in importing), f"the import's bar never moved: {importing}"

    expect(page.get_by_role("heading", name="Imported", exact=True)).to_be_visible()
    expect(page.get_by_test_id("events-stored")).to_have_text("23,970")
    expect(page.locator("#import-panel .alert-success")).to_contain_text("23,970 events imported")
    for gone in ("Importing the", "Importing events…", "Stop importing", "left"):
        expect(main).not_to_contain_text(gone)
    both_sizes(page, "import-06-done")
    assert Event.objects.count() == 23_970

    page.get_by_role("link", name="Imports").first.click()
    row = page.locator("tr[data-import='orders-2024.jsonl']")
    expect(row).to_contain_text("Imported")
    expect(row).to_contain_text("30 invalid")
    both_sizes(page, "import-07-list")


def test_an_owner_stops_an_import_half_way_and_keeps_what_was_imported(
        page: Any, alice: User, workspace: Workspace, celery_worker: Any, slowed: None, tmp_path: Path) -> None:
    sign_in(page, alice.email)
    page.goto(f"/w/{workspace.slug}/imports/new/")
    page.get_by_label("File", exact=True).set_input_files(str(history_file(tmp_path / "clicks.jsonl", lines=30_000)))
    page.get_by_label("Start importing as soon as the check is done").check()
    page.get_by_role("button", name="Upload and check").click()
    expect(page.get_by_role("heading", name="Importing")).to_be_visible(timeout=30_000)
    page.wait_for_function("() => +document.querySelector('[data-testid=import-progress]')?.getAttribute('aria-valuenow') >= 5")
    job_page = page.url
    # The list follows along too, with a small bar per running import.
    page.get_by_role("link", name="Imports").first.click()
    row = page.locator("tr[data-import='clicks.jsonl']")
    expect(row).to_contain_text("Importing")
    expect(row.get_by_role("progressbar")).to_be_visible()
    both_sizes(page, "import-08-list-running")
    page.goto(job_page)
    page.get_by_role("button", name="Stop importing").click()
    expect(page.get_by_role("heading", name="Cancelled")).to_be_visible()
    expect(page.locator("#import-panel .alert-warning")).to_contain_text("had been imported before the import was stopped")
    both_sizes(page, "import-09-stopped")
    job = ImportJob.objects.get()
    time.sleep(1)  # a chunk in flight when it was stopped is rolled back, not committed
    job.refresh_from_db()
    assert job.status == ImportStatus.CANCELLED
    assert 0 < job.events_stored < 29_963 and Event.objects.count() == job.events_stored
