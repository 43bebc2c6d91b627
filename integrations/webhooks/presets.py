"""Ready-made mappings, each with a sample payload the test console starts from."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

VISITOR = {
    "userId": {"from": "data.visitor.user_id"},
    "anonymousId": {"from": "data.visitor.id"},
    "timestamp": {"from": "created_at"},
}
CONVERSATION = {"conversation_id": {"from": "data.conversation.id"}, "channel": {"from": "data.conversation.channel"}}

CHAT_ASSISTANT: dict[str, Any] = {
    "routes": [
        {"when": "type == 'conversation.started'", "type": "track", "event": "Conversation Started", **VISITOR,
         "properties": {**CONVERSATION, "page_url": {"from": "data.conversation.page_url"}}},
        {"when": "type == 'message.received'", "type": "track", "event": "Message Received", **VISITOR,
         "properties": {**CONVERSATION, "message_id": {"from": "data.message.id"},
                        "author": {"from": "data.message.author"},
                        "characters": {"from": "length(data.message.text || '')"}}},
        {"when": "type == 'lead.captured'", "type": "identify", **VISITOR,
         "traits": {"email": {"from": "data.lead.email"}, "name": {"from": "data.lead.name"},
                    "phone": {"from": "data.lead.phone"}, "company": {"from": "data.lead.company"}}},
        {"when": "type == 'lead.captured'", "type": "track", "event": "Lead Captured", **VISITOR,
         "properties": {**CONVERSATION, "email": {"from": "data.lead.email"}}},
        {"when": "type == 'handoff.requested'", "type": "track", "event": "Handoff Requested", **VISITOR,
         "properties": {**CONVERSATION, "reason": {"from": "data.handoff.reason"},
                        "team": {"from": "data.handoff.team"}}},
        {"when": "type == 'contact.created'", "type": "identify", **VISITOR,
         "traits": {"from": "data.contact"}},
    ],
    "unmatched": "refuse",
}

CHAT_SAMPLE: dict[str, Any] = {
    "type": "conversation.started",
    "id": "evt_01J9Z8K2M4",
    "created_at": "2026-12-02T10:15:00Z",
    "data": {
        "conversation": {"id": "conv_5821", "channel": "web", "page_url": "https://shop.example.com/pricing"},
        "visitor": {"id": "vis_93f2", "user_id": "user-42"},
    },
}

GENERIC: dict[str, Any] = {
    "routes": [
        {"type": "track",
         "event": {"from": "event || type || 'Webhook Received'"},
         "userId": {"from": "user_id || userId || user.id || data.user_id || data.userId"},
         # Segment needs userId or anonymousId: a payload naming no user gets a fixed one.
         "anonymousId": {"from": "anonymous_id || anonymousId || data.anonymous_id || 'webhook-sender'"},
         "properties": {"from": "@"},
         "timestamp": {"from": "timestamp || created_at || data.created_at"}},
    ],
    "unmatched": "refuse",
}

GENERIC_SAMPLE: dict[str, Any] = {
    "type": "invoice.paid",
    "user_id": "user-42",
    "created_at": "2026-12-02T10:15:00Z",
    "amount": 4900,
    "currency": "EUR",
}


@dataclass(frozen=True)
class Preset:
    key: str
    label: str
    description: str
    mapping: dict[str, Any]
    sample: dict[str, Any]


PRESETS = {
    preset.key: preset for preset in (
        Preset("chat_assistant", "Chat assistant",
               "conversation.started, message.received, lead.captured, handoff.requested → Track calls; "
               "lead.captured and contact.created → Identify.", CHAT_ASSISTANT, CHAT_SAMPLE),
        Preset("generic", "Whole payload as properties",
               "Every payload becomes one Track call named by its event or type field, with the payload as "
               "its properties.", GENERIC, GENERIC_SAMPLE),
    )
}
DEFAULT_PRESET = "chat_assistant"
