"""Trying a filter before saving it: run it over the workspace's latest events and say what
it would do.

Only the filter being written is run (the connection's other filters are not), over the
latest PREVIEW_EVENTS events of the workspace's log, newest first: how many it would drop,
sample out, fail on or change, and a few before/after examples of each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from accounts.models import Workspace
from integrations.models import Event
from integrations.segment.destination_filters import FilterSpec, apply, compile_filter

PREVIEW_EVENTS = 1_000
EXAMPLES = 3


@dataclass
class Example:
    seq: int
    name: str
    before: str
    after: str = ""
    reason: str = ""


@dataclass
class Preview:
    looked_at: int = 0
    kept: int = 0
    changed: int = 0
    dropped: int = 0
    sampled: int = 0
    failed: int = 0
    examples: dict[str, list[Example]] = field(default_factory=lambda: {
        "dropped": [], "sampled": [], "failed": [], "changed": []})

    @property
    def held(self) -> int:
        return self.dropped + self.sampled + self.failed


def filter_preview(*, workspace: Workspace, spec: FilterSpec, limit: int = PREVIEW_EVENTS) -> Preview:
    """`spec` must have passed services.filter_validate."""
    chain = [compile_filter(spec)]
    preview = Preview()
    rows = (Event.objects.filter(workspace=workspace).order_by("-seq")
            .values_list("seq", "message_id", "name", "type", "body")[:limit])
    for seq, message_id, name, kind, body in rows:
        preview.looked_at += 1
        event = orjson.loads(bytes(body))
        verdict = apply(chain, event, message_id)
        setattr(preview, verdict.outcome, getattr(preview, verdict.outcome) + 1)
        shown = preview.examples.get(verdict.outcome)
        if shown is not None and len(shown) < EXAMPLES:
            shown.append(Example(seq, name or kind, _pretty(event),
                                 _pretty(verdict.event) if verdict.outcome == "changed" else "", verdict.reason))
    return preview


def _pretty(document: Any) -> str:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2).decode()
