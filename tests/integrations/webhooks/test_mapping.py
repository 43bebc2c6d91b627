"""Mappings: the presets on sample payloads, routing, fixed values and what is refused."""
from __future__ import annotations

import copy
from typing import Any

import jmespath
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.webhooks.mapping import MappingError, Unmappable, _compile, compile_mapping
from integrations.webhooks.presets import CHAT_SAMPLE, PRESETS


def chat(kind: str, **data: Any) -> dict[str, Any]:
    payload = copy.deepcopy(CHAT_SAMPLE)
    payload["type"] = kind
    payload["data"].update(data)
    return payload


CHAT = compile_mapping(PRESETS["chat_assistant"].mapping)


def test_the_chat_preset_maps_each_event_of_a_chat_assistant() -> None:
    [started] = CHAT.apply(chat("conversation.started"))
    assert started == {"type": "track", "event": "Conversation Started", "userId": "user-42", "anonymousId": "vis_93f2",
                       "timestamp": "2026-12-02T10:15:00Z",
                       "properties": {"conversation_id": "conv_5821", "channel": "web",
                                      "page_url": "https://shop.example.com/pricing"}}
    [message] = CHAT.apply(chat("message.received", message={"id": "m1", "author": "visitor", "text": "Hello!"}))
    assert message["event"] == "Message Received"
    assert message["properties"] | {} == {"conversation_id": "conv_5821", "channel": "web", "message_id": "m1",
                                          "author": "visitor", "characters": 6}
    identify, lead = CHAT.apply(chat("lead.captured", lead={"email": "ann@example.com", "phone": "+331234"}))
    assert identify["type"] == "identify" and identify["traits"] == {"email": "ann@example.com", "phone": "+331234"}
    assert lead["type"] == "track" and lead["event"] == "Lead Captured"
    [handoff] = CHAT.apply(chat("handoff.requested", handoff={"reason": "pricing question", "team": "sales"}))
    assert handoff["event"] == "Handoff Requested" and handoff["properties"]["reason"] == "pricing question"
    [contact] = CHAT.apply(chat("contact.created", contact={"email": "bo@example.com", "plan": "pro"}))
    assert contact["type"] == "identify" and contact["traits"] == {"email": "bo@example.com", "plan": "pro"}


def test_the_generic_preset_sends_the_whole_payload_as_properties() -> None:
    generic = compile_mapping(PRESETS["generic"].mapping)
    payload = {"event": "Invoice Paid", "user_id": 42, "amount": 49.0, "lines": [{"sku": "a"}]}
    [call] = generic.apply(payload)
    assert call["event"] == "Invoice Paid" and call["userId"] == "42" and call["properties"] == payload
    [unnamed] = generic.apply({"amount": 1})
    assert unnamed["event"] == "Webhook Received" and unnamed["anonymousId"] == "webhook-sender"


def test_numeric_timestamps_are_unix_seconds_or_milliseconds() -> None:
    mapping = compile_mapping({"routes": [{"type": "track", "event": "E", "userId": "u",
                                           "timestamp": {"from": "at"}}]})
    assert mapping.apply({"at": 1764670500})[0]["timestamp"] == "2025-12-02T10:15:00+00:00"
    assert mapping.apply({"at": 1764670500123})[0]["timestamp"] == "2025-12-02T10:15:00.123000+00:00"
    assert "timestamp" not in mapping.apply({})[0]


def test_a_null_result_leaves_the_field_out_and_a_wrong_kind_is_refused() -> None:
    mapping = compile_mapping({"routes": [{"type": "track", "event": {"from": "name"}, "userId": {"from": "who"},
                                           "properties": {"from": "props"}}]})
    assert mapping.apply({"name": "E", "who": "u"}) == [{"type": "track", "event": "E", "userId": "u"}]
    with pytest.raises(Unmappable, match=r"routes\[0\]\.userId gave an object"):
        mapping.apply({"name": "E", "who": {"id": 1}})
    with pytest.raises(Unmappable, match="not an object"):
        mapping.apply({"name": "E", "who": "u", "props": [1, 2]})


@pytest.mark.parametrize(("document", "where"), [
    ([], ""),
    ({"routes": []}, "routes"),
    ({"routes": [{"event": "E"}]}, "routes[0].type"),
    ({"routes": [{"type": "purchase"}]}, "routes[0].type"),
    ({"routes": [{"type": "track", "when": "type =="}]}, "routes[0].when"),
    ({"routes": [{"type": "track", "userId": {"from": "a[?"}}]}, "routes[0].userId"),
    ({"routes": [{"type": "track", "userId": {"from": "a", "else": "b"}}]}, "routes[0].userId"),
    ({"routes": [{"type": "track", "propertys": {}}]}, "routes[0].propertys"),
    ({"routes": [{"type": "track"}], "unmatched": "drop"}, "unmatched"),
    ({"routes": [{"type": "track", "traits": "all"}]}, "routes[0].traits"),
])
def test_unusable_mappings_say_where_they_are_wrong(document: Any, where: str) -> None:
    with pytest.raises(MappingError) as raised:
        compile_mapping(document)
    assert raised.value.where == where


def test_every_matching_route_adds_a_call_in_order() -> None:
    mapping = compile_mapping({"routes": [
        {"when": "kind == 'signup'", "type": "identify", "userId": {"from": "user"}, "traits": {"plan": "free"}},
        {"type": "track", "event": {"from": "kind"}, "userId": {"from": "user"}},
    ]})
    assert [c["type"] for c in mapping.apply({"kind": "signup", "user": "u"})] == ["identify", "track"]
    assert [c["type"] for c in mapping.apply({"kind": "login", "user": "u"})] == ["track"]


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.sampled_from(
    ["", "a", "conversation.started", "1"]), lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["type", "data", "visitor", "id", "a"]), inner, max_size=4), max_leaves=12)


@given(payload=JSON)
@settings(max_examples=300, deadline=None)
def test_the_fast_evaluator_means_what_jmespath_means(payload: Any) -> None:
    for text in ("@", "type", "data.visitor.id", "type == 'conversation.started'", "data.id != 'a'", "a == '1'"):
        expression = _compile(text, "")
        assert expression.fast is not None
        assert expression.search(payload) == jmespath.search(text, payload), (text, payload)
    assert _compile("length(data)", "").fast is None and _compile("a == `1`", "").fast is None
