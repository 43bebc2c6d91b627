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
from integrations.models.filters import (
    MAX_FILTERS_PER_CONNECTION,
    DestinationFilter,
    FilterAction,
    FilteredBatch,
)
from integrations.models.imports import ImportJob, ImportStatus
from integrations.models.ingest import IngestKey
from integrations.models.segment_workspace import CallOutcome, PublicApiCall, SegmentSource, SegmentToken
from integrations.models.tracking_plans import (
    BLOCKED_RETENTION,
    BlockedEvent,
    OnViolation,
    TrackingPlan,
    UnplannedEvents,
    UnplannedProperties,
    ViolationCount,
    ViolationForward,
)
from integrations.models.webhooks import (
    ReceiptOutcome,
    SignatureVerdict,
    SigningMode,
    WebhookEndpoint,
    WebhookReceipt,
)

__all__ = [
    "BLOCKED_RETENTION",
    "MASK",
    "MAX_FILTERS_PER_CONNECTION",
    "AttemptOutcome",
    "BlockedEvent",
    "CallOutcome",
    "Connection",
    "DeadLetter",
    "DeadLetterReplay",
    "DeliveryAttempt",
    "DeliveryCount",
    "DestinationFilter",
    "Event",
    "EventStream",
    "FilterAction",
    "FilteredBatch",
    "Health",
    "ImportJob",
    "ImportStatus",
    "IngestKey",
    "OnViolation",
    "Outcome",
    "PublicApiCall",
    "ReceiptOutcome",
    "Region",
    "RejectedEvent",
    "ReplayStatus",
    "SegmentSource",
    "SegmentToken",
    "SignatureVerdict",
    "SigningMode",
    "TrackingPlan",
    "Trigger",
    "UnplannedEvents",
    "UnplannedProperties",
    "Verification",
    "ViolationCount",
    "ViolationForward",
    "WebhookEndpoint",
    "WebhookReceipt",
]
