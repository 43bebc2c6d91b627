"""The record of refused events: what the workspace sees of an event the ingest API or an
import would not accept."""
from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from django.utils import timezone

from integrations.ingest.messages import Invalid
from integrations.models import RejectedEvent

logger = logging.getLogger(__name__)


def rejections_record(*, workspace_id: int, source: str, rejected: Sequence[tuple[int | None, Any, Invalid]]) -> None:
    """Keep each refused event (its index in the request, reason and an excerpt without the
    write key) for the workspace's debugger, in the caller's transaction."""
    now = timezone.now()
    RejectedEvent.objects.bulk_create([
        RejectedEvent(workspace_id=workspace_id, received_at=now, source=source, index=index,
                      reason=invalid.reason, detail=invalid.detail[:300], message_id=_message_id(item),
                      excerpt=_excerpt(item))
        for index, item, invalid in rejected
    ])
    logger.info("ingest.rejected", extra={"workspace_id": workspace_id, "count": len(rejected)})


def _message_id(item: Any) -> str:
    value = item.get("messageId") if isinstance(item, dict) else None
    if not isinstance(value, str):
        return ""
    # PostgreSQL text holds neither NUL nor a lone surrogate (which "replace" turns into "?").
    return value.encode("utf-8", "replace").decode().replace("\x00", "")[:100]


def _excerpt(item: Any) -> str:
    if isinstance(item, dict):
        item = {k: v for k, v in item.items() if k != "writeKey"}
    try:
        return orjson.dumps(item).decode()[:1000]
    except TypeError:
        pass
    try:
        return repr(item)[:1000]  # repr escapes NUL and lone surrogates, which PostgreSQL text refuses
    except RecursionError:  # nested past Python's recursion limit
        return "(nested too deeply to show)"
