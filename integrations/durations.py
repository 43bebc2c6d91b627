"""How long a span of time reads on pages and in e-mails: "12 s", "4 min", "3 h 5 min", "2 d 4 h"."""
from __future__ import annotations

from datetime import timedelta


def duration_text(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
