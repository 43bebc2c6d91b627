"""Import files on disk: where they are kept, reading them record by record from a byte
offset, and the error report.

Nothing here holds a whole file in memory: records are read one line at a time (a CSV value
in quotes may span lines), and a record longer than MAX_RECORD_BYTES is skipped in pieces and
reported, so a file of any size is read with a few megabytes.
"""
from __future__ import annotations

import csv
import io
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson
from django.conf import settings

from integrations.ingest.messages import loads_lenient

JSONL, CSV = "jsonl", "csv"
FORMATS = {JSONL: "JSONL", CSV: "CSV"}
EXTENSIONS = {".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL, ".csv": CSV}
# An event is at most 32 KB as Segment receives it; a line this long cannot hold a valid one.
MAX_RECORD_BYTES = 1024 * 1024
READ_BUFFER = 1024 * 1024
BOM = b"\xef\xbb\xbf"

CSV_COLUMNS = ("type", "userId", "anonymousId", "event", "name", "groupId", "previousId", "messageId", "timestamp")
CSV_NESTED = ("properties", "traits", "context")
REPORT_HEADER = ("line", "field", "reason")


@dataclass(frozen=True, slots=True)
class Problem:
    """Why one record cannot be imported: the field at fault ("" for the whole line) and what to fix."""

    field: str
    reason: str


@dataclass(slots=True)
class Record:
    line: int  # where the record starts in the file, counting from 1
    end: int  # byte offset just after it
    event: dict[str, Any] | None
    problem: Problem | None


class HeaderInvalid(ValueError):
    """A file whose beginning cannot be imported (empty, or a CSV header Tributary cannot map
    to Segment's fields); the message says what to change."""


class WrongFormat(HeaderInvalid):
    """The file's beginning is not the chosen format."""


# --- where files live ---------------------------------------------------------------------


def imports_dir() -> Path:
    folder = Path(settings.IMPORTS_DIR)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def new_path(suffix: str) -> Path:
    """A fresh, unguessable name in the imports folder, created empty and private."""
    path = imports_dir() / f"{secrets.token_hex(16)}{suffix}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    return path


def report_path_for(path: str | Path) -> Path:
    return Path(path).with_suffix(".errors.csv")


class TooLarge(ValueError):
    pass


def store(source: IO[bytes], *, limit: int) -> tuple[Path, int]:
    """Copy a file into the imports folder in 1 MB chunks; TooLarge past `limit` bytes."""
    path = new_path(".upload")
    size = 0
    try:
        with path.open("wb") as target:
            while chunk := source.read(READ_BUFFER):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"The file is larger than {limit:,} bytes, the most one import takes.")
                target.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, size


def discard(*paths: str | Path) -> None:
    for path in paths:
        if path:
            Path(path).unlink(missing_ok=True)


# The names new_path() and report_path_for() give: nothing else in the folder is ever deleted.
OWN_NAME = re.compile(r"[0-9a-f]{32}\.(upload|errors\.csv)")


def stale_files(*, older_than_seconds: float) -> list[Path]:
    """Import files untouched for that long (an upload being written is not)."""
    folder = Path(settings.IMPORTS_DIR)
    if not folder.is_dir():
        return []
    cutoff = time.time() - older_than_seconds
    return [path for path in folder.iterdir()
            if OWN_NAME.fullmatch(path.name) and path.is_file() and path.stat().st_mtime < cutoff]


def format_for(file_name: str) -> str | None:
    return EXTENSIONS.get(Path(file_name).suffix.lower())


# --- reading records ----------------------------------------------------------------------


def line_number_at(path: str | Path, offset: int) -> int:
    """The line number at a byte offset: one more than the newlines before it (read in chunks)."""
    newlines = 0
    with open(path, "rb") as file:
        remaining = offset
        while remaining > 0:
            chunk = file.read(min(READ_BUFFER, remaining))
            if not chunk:
                break
            newlines += chunk.count(b"\n")
            remaining -= len(chunk)
    return newlines + 1


class Reader:
    """The records of an import file from a byte offset, in order; blank lines are skipped.

    For CSV the header (the file's first line) is read first whatever the offset, and the
    first record read is the one after the header or at `offset`, whichever is later.
    Iterating yields Records whose `end` is the offset to resume from after them.
    """

    def __init__(self, path: str | Path, file_format: str, *, offset: int = 0) -> None:
        self.path, self.format = Path(path), file_format
        self.columns: list[tuple[str, ...]] = []
        self.file = open(self.path, "rb", buffering=READ_BUFFER)  # noqa: SIM115 (closed by close())
        try:
            start = self._read_header() if file_format == CSV else 0
            start = max(start, offset)
            self.line = line_number_at(self.path, start) if start else 1
            self.offset = start
            self.file.seek(start)
        except BaseException:
            self.file.close()
            raise

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Record]:
        while True:
            raw, line, problem = self._next_line()
            if raw is None:
                return
            if problem is not None:
                yield Record(line, self.offset, None, problem)
                continue
            if not raw.strip():
                continue
            if self.format == JSONL:
                yield self._jsonl(raw, line)
            else:
                yield self._csv(raw, line)

    def _next_line(self) -> tuple[bytes | None, int, Problem | None]:
        """One physical line (with its newline), its number, or a Problem for an overlong one."""
        line = self.line
        raw = self.file.readline(MAX_RECORD_BYTES + 1)
        if not raw:
            return None, line, None
        if self.offset == 0 and raw.startswith(BOM):
            raw = raw[len(BOM):]
            self.offset += len(BOM)
        self.offset += len(raw)
        if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
            self._skip_rest_of_line()
            self.line += 1
            return b"", line, Problem("", f"The line is longer than {MAX_RECORD_BYTES // 1024 // 1024} MB; "
                                          "an event is at most 32 KB.")
        self.line += raw.count(b"\n")  # 0 for a last line without a newline
        return raw, line, None

    def _skip_rest_of_line(self) -> None:
        while piece := self.file.readline(READ_BUFFER):
            self.offset += len(piece)
            if piece.endswith(b"\n"):
                return

    def _jsonl(self, raw: bytes, line: int) -> Record:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            try:
                value = loads_lenient(raw)  # a lone surrogate is JSON: the check then names it
            except ValueError:
                return Record(line, self.offset, None, Problem("", f"Not valid JSON: {error.msg} at column "
                                                                   f"{error.colno}."))
        if not isinstance(value, dict):
            return Record(line, self.offset, None, Problem("", "Each line must be one JSON object (an event)."))
        return Record(line, self.offset, value, None)

    def _csv(self, raw: bytes, line: int) -> Record:
        """One CSV record: lines are joined while a quoted value is open (an odd number of
        quotes so far, as in RFC 4180 where a quote inside a value is doubled)."""
        quotes = raw.count(b'"')
        while quotes % 2:
            more, _, problem = self._next_line()
            if not more or problem is not None or len(raw) + len(more) > MAX_RECORD_BYTES:
                return Record(line, self.offset, None, Problem("", "A quoted value opened on this line is never "
                                                                   "closed: check for a stray quote (\")."))
            raw += more
            quotes += more.count(b'"')
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Record(line, self.offset, None, Problem("", "Not UTF-8 text: save the file as UTF-8."))
        rows = list(csv.reader(io.StringIO(text, newline="")))
        if len(rows) != 1:
            return Record(line, self.offset, None, Problem("", "Not one CSV row: check the quotes on this line."))
        return self._event_from_row(rows[0], line)

    def _event_from_row(self, row: list[str], line: int) -> Record:
        if len(row) != len(self.columns):
            return Record(line, self.offset, None, Problem(
                "", f"The row has {len(row)} values but the header has {len(self.columns)} columns."))
        event: dict[str, Any] = {}
        for path, value in zip(self.columns, row, strict=True):
            if value == "":
                continue
            if len(path) == 1:
                event[path[0]] = value
                continue
            target = event
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return Record(line, self.offset, event, None)

    def _read_header(self) -> int:
        raw = self.file.readline(MAX_RECORD_BYTES + 1)
        if raw.startswith(BOM):
            raw = raw[len(BOM):]
            end = len(BOM) + len(raw)
        else:
            end = len(raw)
        self.columns = parse_header(raw)
        return end


def parse_header(raw: bytes) -> list[tuple[str, ...]]:
    """The columns of a CSV header as paths into the event (`context.page.url` →
    ("context", "page", "url")), or HeaderInvalid saying what to change."""
    if not raw.strip():
        raise HeaderInvalid("The first line must be the header, naming the columns (type, userId, …).")
    if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):
        raise HeaderInvalid("The header line is longer than 1 MB.")
    try:
        names = [name.strip() for name in next(csv.reader([raw.decode("utf-8").rstrip("\r\n")]))]
    except UnicodeDecodeError:
        raise HeaderInvalid("The file is not UTF-8 text: save it as UTF-8.") from None
    paths: list[tuple[str, ...]] = []
    for name in names:
        prefix, _, rest = name.partition(".")
        if name in CSV_COLUMNS:
            paths.append((name,))
        elif prefix in CSV_NESTED and rest and all(rest.split(".")):
            paths.append((prefix, *rest.split(".")))
        else:
            shown = name if len(name) <= 40 else name[:40] + "…"
            raise HeaderInvalid(f"Unknown column “{shown}” in the header: use {', '.join(CSV_COLUMNS)}, or "
                                "properties.<key>, traits.<key> and context.<key>.")
    if "type" not in names:
        raise HeaderInvalid("The header has no “type” column: each row needs its type (track, identify, …).")
    _refuse_overlaps(names, paths)
    return paths


def _refuse_overlaps(names: list[str], paths: list[tuple[str, ...]]) -> None:
    seen: dict[tuple[str, ...], str] = {}
    for name, path in zip(names, paths, strict=True):
        if path in seen:
            raise HeaderInvalid(f"The column “{name}” appears twice in the header.")
        seen[path] = name
    for path, name in seen.items():
        for length in range(1, len(path)):
            if path[:length] in seen:
                raise HeaderInvalid(f"The columns “{seen[path[:length]]}” and “{name}” overlap: keep one of them.")


def sniff(path: str | Path, file_format: str) -> None:
    """Refuse, before any work, a file that is empty or whose beginning is not the format:
    HeaderInvalid saying what is wrong. Reads at most the first record."""
    with open(path, "rb") as file:
        raw = file.readline(MAX_RECORD_BYTES + 1).removeprefix(BOM)
        first = raw
        while raw and not raw.strip():
            raw = file.readline(MAX_RECORD_BYTES + 1)
    if not raw:
        raise HeaderInvalid("The file is empty: there is nothing to import.")
    if file_format == CSV:
        if first.lstrip().startswith(b"{"):
            raise WrongFormat("This looks like JSONL, not CSV: choose JSONL as the format.")
        parse_header(first)  # the header is the first line, blank or not
    elif not raw.lstrip().startswith(b"{"):
        raise WrongFormat("This does not look like JSONL: each line must be a JSON object such as "
                            '{"type": "track", …}. For a CSV file choose CSV as the format.')


# --- the error report ---------------------------------------------------------------------


class ErrorReport:
    """The CSV of invalid lines (line, field, reason), appended as the check goes.

    Its rows are in line order, so a check resumed at line N first cuts the rows of lines
    from N on (written after the last committed checkpoint) and nothing is listed twice.
    """

    def __init__(self, path: str | Path, *, resume_at_line: int) -> None:
        self.path = Path(path)
        self._cut_from(resume_at_line)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self.file = self.path.open("a", encoding="utf-8", newline="")
        self.writer = csv.writer(self.file)
        if fresh:
            self.writer.writerow(REPORT_HEADER)

    def add(self, line: int, problem: Problem) -> None:
        self.writer.writerow((line, problem.field, problem.reason.replace("\r", " ").replace("\n", " ")))

    def flush(self) -> None:
        """Make the rows durable before the counts that include them are committed."""
        self.file.flush()
        os.fsync(self.file.fileno())

    def close(self) -> None:
        self.file.close()

    def _cut_from(self, line: int) -> None:
        if not self.path.exists():
            return
        with self.path.open("r+b") as file:
            file.readline()  # the header
            while True:
                position = file.tell()
                row = file.readline()
                if not row:
                    return
                number = row.split(b",", 1)[0]
                if number.isdigit() and int(number) >= line:
                    file.truncate(position)
                    return


def report_rows(path: str | Path, *, limit: int) -> list[dict[str, str]]:
    """The first `limit` rows of an error report, for the page."""
    if not path or not Path(path).exists():
        return []
    rows: list[dict[str, str]] = []
    with Path(path).open(encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            if len(rows) == limit:
                break
            rows.append(row)
    return rows
