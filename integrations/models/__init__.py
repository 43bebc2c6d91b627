"""Models of the integrations app, one module per concern."""
from __future__ import annotations

from integrations.models.connections import (
    MASK,
    Connection,
    Health,
    Outcome,
    Region,
    Trigger,
    Verification,
)
from integrations.models.events import DeadLetter, Event, EventStream, RejectedEvent
from integrations.models.ingest import IngestKey

__all__ = [
    "MASK",
    "Connection",
    "DeadLetter",
    "Event",
    "EventStream",
    "Health",
    "IngestKey",
    "Outcome",
    "Region",
    "RejectedEvent",
    "Trigger",
    "Verification",
]
