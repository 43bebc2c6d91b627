"""A workspace's tracking plan: checked at save time, enforced at ingest before the log."""
from __future__ import annotations

import base64
from collections.abc import Iterator
from copy import deepcopy
from datetime import timedelta
from typing import Any

import orjson
import pytest
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations.ingest import emit
from integrations.ingest.keys import ingest_key_create
from integrations.ingest.messages import normalise
from integrations.models import BlockedEvent, Event, TrackingPlan, ViolationCount
from integrations.tracking_plans import enforcement, services
from integrations.tracking_plans.schemas import MAX_PLAN_BYTES, plan_check, plan_compile

ORDER_COMPLETED = {
    "type": "TRACK", "key": "Order Completed", "version": 1,
    "jsonSchema": {
        "$schema": "http://json-schema.org/draft-07/schema#", "type": "object",
        "properties": {"properties": {
            "type": "object", "required": ["order_id", "total"],
            "properties": {"order_id": {"type": "string", "pattern": "^ord_[0-9]+$"},
                           "total": {"type": "number"},
                           "currency": {"type": "string", "enum": ["USD", "EUR"]}}}},
        "required": ["properties"]},
}
IDENTIFY = {"type": "IDENTIFY", "key": "", "version": 1, "jsonSchema": {
    "type": "object", "properties": {"traits": {"type": "object", "required": ["email"],
                                                "properties": {"email": {"type": "string"}}}}}}
# As Segment's Public API answers GET /tracking-plans/{id}/rules.
SEGMENT_EXPORT = {"data": {"rules": [ORDER_COMPLETED, IDENTIFY], "pagination": {"current": "MA==", "totalEntries": 2}}}


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    cache.clear()
    enforcement._plans.clear()
    yield
    enforcement._plans.clear()


@pytest.fixture
def ingest_key(alice: User, workspace: Workspace) -> str:
    return ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")[1]


def plan(alice: User, workspace: Workspace, **enforcement_: Any) -> TrackingPlan:
    services.plan_import(actor=Actor(user=alice), workspace=workspace, text=orjson.dumps(SEGMENT_EXPORT))
    settings = {"enabled": True, "unplanned_events": "allow", "unplanned_properties": "allow",
                "on_violation": "allow", "forward_violations_to": None, **enforcement_}
    result = services.plan_enforcement_save(actor=Actor(user=alice), workspace=workspace, **settings)
    enforcement.plan_forget(workspace.pk)
    return result


def post(call: str, body: Any, key: str) -> Any:
    auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
    return Client().post(f"/v1/{call}", data=orjson.dumps(body), content_type="application/json",
                         HTTP_AUTHORIZATION=auth)


def order(n: int, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": f"u{n}", "messageId": f"m-{n}",
            "properties": {"order_id": f"ord_{n}", "total": 10.5, **properties}}


def logged(workspace: Workspace) -> dict[str, dict[str, Any]]:
    return {e.message_id: orjson.loads(bytes(e.body)) for e in Event.objects.filter(workspace=workspace)}


def test_a_segment_export_is_imported_as_its_rules(alice: User, workspace: Workspace) -> None:
    saved = plan(alice, workspace)
    assert [(r["type"], r["key"]) for r in saved.rules] == [("TRACK", "Order Completed"), ("IDENTIFY", "")]
    assert services.plan_export(plan=saved)["rules"] == saved.rules
    assert AuditEvent.objects.filter(workspace=workspace, action=AuditAction.TRACKING_PLAN_IMPORTED).count() == 1


@pytest.mark.parametrize(("rules", "words"), [
    ([{"type": "TRACK", "key": "A", "jsonSchema": {"type": "strin"}}], "not a valid JSON Schema"),
    ([{"type": "TRACK", "key": "Order\u202eCompleted", "jsonSchema": {}}], "invisible or control character"),
    ([{"type": "TRACK", "key": "Signed up\n", "jsonSchema": {}}], "control character"),
    ([{"type": "TRACK", "key": "A", "jsonSchema": {"properties": {"properties": {"properties": {
        "email": {"type": "string", "pattern": "^([a-z0-9]+)+@x$"}}}}}}], "exponential time"),
    ([{"type": "TRACK", "key": "A", "jsonSchema": {"$ref": "https://example.com/schema.json"}}],
     "points outside the rule"),
    ([{"type": "TRACK", "key": "A", "jsonSchema": {"$ref": "file:///etc/passwd"}}], "points outside the rule"),
    ([{"type": "TRACK", "key": "A", "jsonSchema": {"enum": ["x" * 1000] * 1100}}], "at most 256 KB"),
    ([{"type": "WHATEVER", "key": "A", "jsonSchema": {}}], "type must be one of"),
    ([ORDER_COMPLETED, ORDER_COMPLETED], "same type, key and version"),
])
def test_a_bad_plan_is_refused_whole_with_what_to_fix(alice: User, workspace: Workspace, rules: list[Any],
                                                      words: str) -> None:
    plan(alice, workspace)
    before = TrackingPlan.objects.get(workspace=workspace)
    with pytest.raises(ValidationError) as refused:
        services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[ORDER_COMPLETED, *rules])
    assert words in refused.value.message_dict["rules"][0]
    after = TrackingPlan.objects.get(workspace=workspace)
    assert (after.rules, after.version) == (before.rules, before.version)


def test_a_one_megabyte_schema_is_refused(alice: User, workspace: Workspace) -> None:
    huge = {"type": "TRACK", "key": "A", "jsonSchema": {"description": "x" * (1024 * 1024)}}
    with pytest.raises(ValidationError, match=f"at most {MAX_PLAN_BYTES // 1024} KB"):
        services.plan_rules_save(actor=Actor(user=alice), workspace=workspace, rules=[huge])
    assert not TrackingPlan.objects.exists()


def test_without_a_plan_events_pass_untouched(workspace: Workspace, ingest_key: str) -> None:
    answer = post("batch", {"batch": [order(1, coupon="x"), {**order(2), "event": "Anything"}]}, ingest_key)
    assert answer.status_code == 200 and answer.json()["accepted"] == 2 and "blocked" not in answer.json()


def test_violations_block_and_the_answer_says_so_in_a_200(alice: User, workspace: Workspace,
                                                          ingest_key: str) -> None:
    plan(alice, workspace, on_violation="block")
    answer = post("batch", {"batch": [order(1), order(2, total="ten"), {**order(3), "properties": {"total": 1}}]},
                  ingest_key)
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == 1
    assert [b["messageId"] for b in body["blocked"]] == ["m-2", "m-3"]
    assert set(logged(workspace)) == {"m-1"}
    kept = {b.message_id: b for b in BlockedEvent.objects.filter(workspace=workspace)}
    assert [v["kind"] for v in kept["m-2"].violations] == ["type"]
    assert kept["m-2"].violations[0]["field"] == "properties.total"
    assert {v["field"] for v in kept["m-3"].violations} == {"properties.order_id"}


def test_a_single_blocked_call_is_a_200_listing_it(alice: User, workspace: Workspace, ingest_key: str) -> None:
    plan(alice, workspace, unplanned_events="block")
    answer = post("track", {**order(1), "event": "Unplanned Thing"}, ingest_key)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 0
    assert answer.json()["blocked"][0]["violations"][0]["kind"] == "unplanned_event"
    assert not Event.objects.exists()


def test_omit_removes_the_offending_and_unplanned_properties_and_lists_them(alice: User, workspace: Workspace,
                                                                           ingest_key: str) -> None:
    plan(alice, workspace, on_violation="omit", unplanned_properties="omit")
    answer = post("batch", {"batch": [order(1, currency="GBP", coupon="SPRING")]}, ingest_key)
    assert answer.json()["accepted"] == 1
    sent = logged(workspace)["m-1"]
    assert sent["properties"] == {"order_id": "ord_1", "total": 10.5}
    assert sorted(v["field"] for v in sent["context"]["violations"]) == ["properties.coupon", "properties.currency"]


def test_allow_keeps_everything_and_counts_the_violations(alice: User, workspace: Workspace,
                                                          ingest_key: str) -> None:
    plan(alice, workspace)
    post("batch", {"batch": [order(1, total="ten"), order(2, total="x")]}, ingest_key)
    assert logged(workspace)["m-1"]["properties"]["total"] == "ten"
    assert "violations" not in logged(workspace)["m-1"].get("context", {})
    counts = ViolationCount.objects.get(workspace=workspace, kind="type")
    assert (counts.event_name, counts.field, counts.count) == ("Order Completed", "properties.total", 2)


def test_the_emit_api_is_held_to_the_plan(alice: User, workspace: Workspace) -> None:
    plan(alice, workspace, on_violation="block")
    assert emit.identify(workspace, user_id="u1", traits={"email": "a@example.com"}) is True
    assert emit.identify(workspace, user_id="u2", traits={"name": "No e-mail"}) is False
    blocked = BlockedEvent.objects.get(workspace=workspace)
    assert (blocked.type, blocked.violations[0]["field"]) == ("identify", "traits.email")


def test_a_released_event_enters_the_log_once_and_is_audited(alice: User, workspace: Workspace,
                                                            ingest_key: str) -> None:
    plan(alice, workspace, on_violation="block")
    post("track", order(7, total="seven"), ingest_key)
    blocked = BlockedEvent.objects.get(workspace=workspace)
    assert services.blocked_release(actor=Actor(user=alice), workspace=workspace, ids=[blocked.pk]) == 1
    assert services.blocked_release(actor=Actor(user=alice), workspace=workspace, ids=[blocked.pk]) == 0
    assert logged(workspace)["m-7"]["properties"]["total"] == "seven"
    blocked.refresh_from_db()
    assert blocked.released_at is not None and blocked.released_by == alice
    audit = AuditEvent.objects.get(workspace=workspace, action=AuditAction.BLOCKED_EVENTS_RELEASED)
    assert audit.details["message_ids"] == ["m-7"]


def test_a_change_applies_in_this_process_at_once(alice: User, workspace: Workspace, ingest_key: str) -> None:
    plan(alice, workspace, unplanned_events="block")
    assert post("track", {**order(1), "event": "New Thing"}, ingest_key).json()["accepted"] == 0
    services.plan_rules_save(actor=Actor(user=alice), workspace=workspace,
                             rules=[ORDER_COMPLETED, {"type": "TRACK", "key": "New Thing", "jsonSchema": {}}])
    assert post("track", {**order(2), "event": "New Thing"}, ingest_key).json()["accepted"] == 1


def test_old_blocked_events_expire(alice: User, workspace: Workspace, ingest_key: str) -> None:
    plan(alice, workspace, on_violation="block")
    post("track", order(1, total="x"), ingest_key)
    assert services.tracking_plan_expire(now=timezone.now() + timedelta(days=29))[0] == 0
    assert services.tracking_plan_expire(now=timezone.now() + timedelta(days=31))[0] == 1


def test_a_workspace_without_a_plan_costs_no_query_per_request(workspace: Workspace,
                                                               django_assert_num_queries: Any) -> None:
    message = normalise({"type": "track", "event": "A", "userId": "u1"}, received_at=timezone.now())
    with django_assert_num_queries(1):  # the first request of a process reads the plan's version
        assert enforcement.plan_enforce(workspace_id=workspace.pk, messages=[message], source="t").messages == [message]
    with django_assert_num_queries(0):  # then, for RECHECK_SECONDS, nothing
        for _ in range(100):
            enforcement.plan_enforce(workspace_id=workspace.pk, messages=[message], source="t")


def test_neither_validator_ever_fetches_a_reference() -> None:
    """Save time refuses such a $ref; were one stored anyway, validation still fetches nothing."""
    from referencing.exceptions import Unresolvable

    from integrations.tracking_plans.schemas import PlanInvalid, _fast, _validator

    with pytest.raises(Unresolvable):
        list(_validator({"$ref": "https://example.com/schema.json"}).iter_errors({}))
    with pytest.raises(PlanInvalid, match="would be fetched"):
        _fast({"$ref": "https://example.com/schema.json"})
    with pytest.raises(PlanInvalid, match="would be fetched"):
        _fast({"$ref": "file:///etc/passwd"})


def test_an_event_no_rule_can_apply_to_is_not_even_parsed(alice: User, workspace: Workspace) -> None:
    """The plan has rules for one track event and identify, and no common rule: a page call
    passes on its type and name alone (a body that is not JSON shows it was never read)."""
    plan(alice, workspace, on_violation="block", unplanned_events="block")
    page = normalise({"type": "page", "name": "Home", "userId": "u1"}, received_at=timezone.now())
    unread = page._replace(body=b"not JSON")
    assert enforcement.plan_enforce(workspace_id=workspace.pk, messages=[unread], source="t").messages == [unread]
    identify = normalise({"type": "identify", "userId": "u1", "traits": {}}, received_at=timezone.now())
    assert enforcement.plan_enforce(workspace_id=workspace.pk, messages=[identify], source="t").blocked


VERSIONED = [
    {**ORDER_COMPLETED, "version": 1},
    {**ORDER_COMPLETED, "version": 2, "jsonSchema": {"type": "object", "properties": {"properties": {
        "type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "integer"}}}}}},
    {"type": "PAGE", "key": "Home", "version": 1, "jsonSchema": {"properties": {"properties": {
        "properties": {"path": {"type": "string"}}}}}},
    IDENTIFY,
    {"type": "COMMON", "key": "", "version": 1, "jsonSchema": {
        "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]}},
]


EVENT_CASES: list[dict[str, Any]] = [
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": 7}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": "ord_1", "total": 1},
     "context": {"protocols": {"event_version": 1}}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": "ord_1", "total": 1},
     "context": {"protocols": {"event_version": 2}}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": 7},
     "context": {"protocols": {"event_version": 9}}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": 7, "extra": 1}},
    {"type": "track", "event": "Unplanned", "userId": "u"},
    {"type": "track", "event": "Order Completed", "anonymousId": "a", "properties": {"order_id": 7}},
    {"type": "track", "event": "Order Completed", "properties": {"order_id": 7}},
    {"type": "page", "name": "Home", "userId": "u", "properties": {"path": "/"}},
    {"type": "page", "name": "Home", "userId": "u", "properties": {"path": 1}},
    {"type": "page", "name": "Away", "userId": "u", "properties": {"path": 1}},
    {"type": "identify", "userId": "u", "traits": {"email": "a@example.com"}},
    {"type": "identify", "userId": "u", "traits": {"email": 1}},
    {"type": "identify", "userId": "u", "traits": {"email": "a@example.com", "name": "Ana"}},
    {"type": "alias", "userId": "u", "previousId": "p"},
    {"type": "alias", "previousId": "p"},
    {"type": ["track"], "userId": "u"},
    {"type": "track", "event": 5, "userId": "u"},
    {"type": "track", "event": "", "userId": "u"},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": 7},
     "context": {"protocols": None}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": 7},
     "context": {"protocols": {"event_version": True}}},
    {"type": "track", "event": "Order Completed", "userId": "u", "properties": {"order_id": "ord_1", "total": 2}},
]


@pytest.mark.parametrize("event", EVENT_CASES)
@pytest.mark.parametrize("unplanned_properties", ["allow", "omit"])
def test_the_quick_pass_finds_nothing_exactly_when_the_full_check_finds_nothing(
        event: dict[str, Any], unplanned_properties: str) -> None:
    compiled = plan_compile(plan_id=1, version=1, rules=plan_check(VERSIONED), unplanned_events="allow",
                            unplanned_properties=unplanned_properties, on_violation="allow",
                            forward_violations_to=None)
    violations, _blocked, _omitted = enforcement.event_check(compiled, deepcopy(event))
    assert enforcement._clean(compiled, deepcopy(event)) is (violations == [])


STAMPED = [*VERSIONED[:4], {"type": "COMMON", "key": "", "version": 1, "jsonSchema": {
    "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
    "properties": {"timestamp": {"type": "string", "format": "date-time", "pattern": "^2026-01-05T"},
                   "originalTimestamp": {"type": "string", "maxLength": 24}}}}]
NORMALISERS = [
    {},  # no sentAt: the timestamp is text
    {"sent_at": "2026-01-05T10:00:01.000Z"},  # the corrected timestamp is a datetime
    {"sent_at": "2026-01-05T10:00:01+05:30", "envelope": {"context": {"library": {"name": "batch"}, "ip": "x"}}},
]


@pytest.mark.parametrize("shared", NORMALISERS)
@pytest.mark.parametrize("on_violation", ["block", "omit"])
def test_the_normalisers_dicts_give_the_verdicts_the_stored_bodies_give(shared: dict[str, Any],
                                                                        on_violation: str) -> None:
    """The HTTP batch API hands plan_enforce the dict each body was written from: it is judged
    as the body would be (a datetime timestamp as the text orjson wrote) and nothing inside it
    is changed (an event with something to report is looked at again in its parsed body)."""
    from integrations.ingest.messages import Invalid, Normaliser

    compiled = plan_compile(plan_id=1, version=1, rules=plan_check(STAMPED), unplanned_events="block",
                            unplanned_properties="omit", on_violation=on_violation, forward_violations_to=None)
    received = timezone.now().replace(year=2026, month=1, day=5, hour=10, minute=0, second=2)
    normaliser = Normaliser(received_at=received, **shared)
    timestamps = [None, "2026-01-05T10:00:00.000Z", "2026-01-05T09:59:59.5+01:00", "2026-01-04T10:00:00Z"]
    checked = 0
    for raw in [{**event, "timestamp": stamp} if stamp else event
                for event in EVENT_CASES for stamp in timestamps]:
        try:
            message, event = normaliser.normalised(deepcopy(raw))
        except Invalid:
            continue
        inside = deepcopy(event)
        parsed = orjson.loads(message.body)
        assert enforcement._given_clean(compiled, event) is enforcement._clean(compiled, parsed), raw
        assert event == parsed  # once the timestamp is text, the body itself
        for key, value in inside.items():  # nothing inside was changed
            assert key == "timestamp" or event[key] == value
        checked += 1
    assert checked >= 40
