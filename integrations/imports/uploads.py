"""Receiving an import file over HTTP: the upload form, and an upload handler that writes the
file straight into the imports folder as it arrives, so a 2 GB upload never sits in memory or
in a temporary copy, and stops reading once it passes IMPORT_MAX_BYTES."""
from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, SkipFile, StopUpload
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat

from integrations.imports.files import CSV, JSONL, discard, new_path

FIELD = "file"


class StoredUpload(UploadedFile[bytes]):
    """An uploaded file already in the imports folder; the job adopts `stored_path`."""

    def __init__(self, stored_path: Path, name: str, size: int, content_type: str | None) -> None:
        super().__init__(file=None, name=name, content_type=content_type, size=size)
        self.stored_path = stored_path

    def close(self) -> None:  # nothing is held open
        pass


class ImportUploadHandler(FileUploadHandler):
    chunk_size = 256 * 1024

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = int(settings.IMPORT_MAX_BYTES)
        self.too_large = False
        self.stored: list[Path] = []
        self.adopted: set[Path] = set()
        self._target: IO[bytes] | None = None
        self._size = 0

    def new_file(self, field_name: str, *args: Any, **kwargs: Any) -> None:
        super().new_file(field_name, *args, **kwargs)
        if field_name != FIELD:
            raise SkipFile
        path = new_path(".upload")
        self.stored.append(path)
        self._target, self._size = path.open("wb"), 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        assert self._target is not None
        self._size += len(raw_data)
        if self._size > self.limit:
            self.too_large = True
            self._abandon()
            raise StopUpload(connection_reset=False)  # the rest of the body is read and dropped
        self._target.write(raw_data)

    def file_complete(self, file_size: int) -> StoredUpload | None:
        if self._target is None:
            return None
        self._target.close()
        self._target = None
        return StoredUpload(self.stored[-1], self.file_name or "upload", file_size, self.content_type)

    def upload_interrupted(self) -> None:
        self._abandon()

    def discard_unadopted(self) -> None:
        """Delete what was received but did not become a job (form errors, a refused CSRF check)."""
        self._abandon()
        discard(*(path for path in self.stored if path not in self.adopted))

    def _abandon(self) -> None:
        if self._target is not None:
            self._target.close()
            self._target = None
            discard(self.stored[-1])


def too_large_message() -> str:
    return (f"The file is larger than {filesizeformat(settings.IMPORT_MAX_BYTES)}, the most one import takes: "
            "split it into several files.")


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="File",
        error_messages={"required": "Choose a file to import.",
                        "empty": "The file is empty: there is nothing to import.",
                        "invalid": "Choose a file to import."},
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.ndjson,.json,.csv,text/csv,application/x-ndjson"}),
    )
    format = forms.ChoiceField(
        label="Format", required=False,
        choices=[("", "From the file name (.jsonl, .csv)"), (JSONL, "JSONL: one JSON event a line"),
                 (CSV, "CSV with a header row")],
    )
    start_when_checked = forms.BooleanField(
        label="Start importing as soon as the check is done", required=False,
        help_text="Lines with errors are then skipped without asking (they stay listed in the error report). "
                  "Leave this off to read the report first and choose.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["file"].help_text = (f"JSONL or CSV, up to {filesizeformat(settings.IMPORT_MAX_BYTES)}. Every "
                                         "line is checked before anything is imported.")
