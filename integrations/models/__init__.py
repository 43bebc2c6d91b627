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
from integrations.models.deliveries import AttemptOutcome, DeliveryAttempt, DeliveryCount
from integrations.models.events import (
    DeadLetter,
    DeadLetterReplay,
    Event,
    EventStream,
    RejectedEvent,
    ReplayStatus,
)
from integrations.models.imports import ImportJob, ImportStatus
from integrations.models.ingest import IngestKey
from integrations.models.webhooks import (
    ReceiptOutcome,
    SignatureVerdict,
    SigningMode,
    WebhookEndpoint,
    WebhookReceipt,
)

__all__ = [
    "MASK",
    "AttemptOutcome",
    "Connection",
    "DeadLetter",
    "DeadLetterReplay",
    "DeliveryAttempt",
    "DeliveryCount",
    "Event",
    "EventStream",
    "Health",
    "ImportJob",
    "ImportStatus",
    "IngestKey",
    "Outcome",
    "ReceiptOutcome",
    "Region",
    "RejectedEvent",
    "ReplayStatus",
    "SignatureVerdict",
    "SigningMode",
    "Trigger",
    "Verification",
    "WebhookEndpoint",
    "WebhookReceipt",
]
