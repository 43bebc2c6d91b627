"""A connection's destination filters at delivery time.

Delivery splices stored bytes and never parses an event; a connection with filters is the
exception. For it, each batch read from the log is:
  1. checked against the connection's enabled filters, by one indexed query for their
     (id, version) pairs; a change to any filter changes that key, so everything not yet
     sent meets the filters as they are now;
  2. compiled once per key and process (`_compiled`), never per event or per batch;
  3. parsed event by event (orjson) and run through the filters in Segment's order
     (`apply_in_place`: the event was parsed here, so properties are removed from it with
     no copy): a kept event keeps its stored bytes, a changed one is written again, a held
     one (sampled out, dropped, or failed) is not sent and is counted when delivery passes it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson

from integrations.models import DestinationFilter, FilteredBatch
from integrations.segment.destination_filters import (
    CompiledFilter,
    FilterInvalid,
    FilterSpec,
    apply_in_place,
    compile_filter,
    staged,
)
from integrations.segment.fql import Condition, FQLRuntimeError

# What a held event was, in the debugger's words.
HELD_WORDS = {"sampled": "Sampled out by", "dropped": "Filtered by", "failed": "Filter failed:"}

_compiled: dict[int, tuple[tuple[tuple[int, int], ...], list[CompiledFilter]]] = {}


class Held(NamedTuple):
    """An event the filters kept from being sent: its seq, the filter's title, and how."""

    seq: int
    title: str
    outcome: str  # sampled, dropped, failed


def spec_of(row: DestinationFilter) -> FilterSpec:
    return FilterSpec(id=row.pk, title=row.title, condition=row.condition, action=row.action,
                      percent=row.percent, path=row.sample_path, fields=dict(row.fields or {}))


def connection_filters(connection_id: int) -> list[CompiledFilter]:
    """The connection's enabled filters, compiled and in Segment's order; [] without any."""
    key = tuple(DestinationFilter.objects.filter(connection_id=connection_id, enabled=True)
                .order_by("position", "id").values_list("id", "version"))
    if not key:
        _compiled.pop(connection_id, None)
        return []
    cached = _compiled.get(connection_id)
    if cached is not None and cached[0] == key:
        return cached[1]
    rows = DestinationFilter.objects.filter(pk__in=[pk for pk, _ in key]).order_by("position", "id")
    compiled = staged([_compile_or_fail_closed(spec_of(row)) for row in rows])
    _compiled[connection_id] = (key, compiled)
    return compiled


def _compile_or_fail_closed(spec: FilterSpec) -> CompiledFilter:
    """A saved filter always compiled when it was saved; should one stop compiling (a newer
    grammar), it holds back every event rather than let through what it was meant to stop."""
    try:
        return compile_filter(spec)
    except FilterInvalid as error:
        reason = str(error)

        def fail(event: dict[str, Any]) -> Any:
            raise FQLRuntimeError(reason)
        return CompiledFilter(spec, Condition(spec.condition, fail, frozenset()), False, 1)


def cache_clear() -> None:
    _compiled.clear()


def run_filters(filters: Sequence[CompiledFilter], seq: int, message_id: str, body: bytes) -> bytes | Held:
    """The body to send (the stored bytes when unchanged), or why the event is held back."""
    try:
        event = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Held(seq, filters[0].spec.title, "failed")
    outcome, by = apply_in_place(filters, event, message_id)  # the event was parsed here: no copy
    if outcome == "kept":
        return body
    if outcome == "changed":
        return orjson.dumps(event)
    return Held(seq, by.title if by else "", outcome)


def held_text(title: str, outcome: str) -> str:
    """"Filtered by 'No test users'", as the debugger shows it."""
    return f"{HELD_WORDS.get(outcome, 'Filtered by')} '{title}'"


def filtered_among(*, connection_ids: Sequence[int], seqs: Sequence[int]) -> dict[tuple[int, int], str]:
    """For the debugger: which of `seqs` the connections' filters held back, in words, by
    (connection id, seq). One range read of the per-batch records around the seqs."""
    if not connection_ids or not seqs:
        return {}
    wanted = set(seqs)
    found: dict[tuple[int, int], str] = {}
    batches = FilteredBatch.objects.filter(connection_id__in=list(connection_ids), last_seq__gte=min(wanted),
                                           first_seq__lte=max(wanted)).values_list("connection_id", "events")
    for connection_id, events in batches:
        for seq, title, outcome in events:
            if seq in wanted:
                found[(connection_id, seq)] = held_text(title, outcome)
    return found
