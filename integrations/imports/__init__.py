"""Historical imports: a JSONL or CSV file of past events, checked line by line with a
downloadable error report, then appended to the workspace's log in chunks by Celery with
their original timestamps, resumable after a worker restart.

`files` reads and writes the files, `passes` runs the check and the import, `services` holds
the writes, reads and progress figures, `uploads` receives files over HTTP.
"""
from __future__ import annotations

from integrations.imports.passes import import_check, import_run, line_message_id
from integrations.imports.services import (
    Progress,
    import_cancel,
    import_get_for_workspace,
    import_progress,
    import_start,
    import_upload,
    imports_for_workspace,
    imports_sweep,
)

__all__ = [
    "Progress",
    "import_cancel",
    "import_check",
    "import_get_for_workspace",
    "import_progress",
    "import_run",
    "import_start",
    "import_upload",
    "imports_for_workspace",
    "imports_sweep",
    "line_message_id",
]
