"""The lean yes/no check of a rule's schema says exactly what jsonschema (draft-07) says, for
every schema in its subset, and leaves every other schema to fastjsonschema."""
from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft7Validator

from integrations.tracking_plans.lean import lean_compile
from integrations.tracking_plans.schemas import FORMATS, NO_RETRIEVAL, is_date_time, plan_check, plan_compile

SCHEMAS: list[Any] = [
    True,
    False,
    {},
    {"type": "object", "required": ["userId"], "properties": {"userId": {"type": "string", "minLength": 2}}},
    {"type": ["string", "null"], "maxLength": 3},
    {"type": "integer", "minimum": 0, "exclusiveMaximum": 10},
    {"type": "number", "exclusiveMinimum": 0.5, "maximum": 2},
    {"minimum": 1},  # applies to numbers only; bool is no number
    {"enum": ["a", 1, None, True, 2.5]},
    {"enum": [1, "1"]},
    {"enum": [False, 0]},
    {"const": 1},
    {"const": None},
    {"const": "x"},
    {"pattern": "^o-[0-9]+$"},
    {"type": "string", "pattern": "b"},
    {"format": "date-time"},
    {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
    {"items": False},
    {"items": {"enum": [1, 2]}},
    {"type": "object", "minProperties": 1, "maxProperties": 2},
    {"properties": {"a": {"type": "string"}}, "additionalProperties": False},
    {"properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}},
    {"additionalProperties": {"type": "boolean"}},
    {"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]},
    {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 2}]},
    {"allOf": [{"type": "object"}, {"required": ["a"]}], "title": "notes are ignored"},
    {"not": {"type": "string"}},
    {"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}},
    {"if": {"type": "string"}, "then": {"minLength": 2}},
    {"if": {"type": "string"}, "else": {"type": "integer"}},
    {"then": {"type": "string"}},  # then without if: ignored, as jsonschema ignores it
    {"definitions": {"money": {"type": "number", "minimum": 0}},
     "properties": {"revenue": {"$ref": "#/definitions/money"}, "tax": {"$ref": "#/definitions/money"}}},
    {"definitions": {"s": {"type": "string"}}, "$ref": "#/definitions/s", "minLength": 5},  # siblings ignored
    {"definitions": {"tree": {"type": "object", "properties": {"kids": {"type": "array",
                                                                         "items": {"$ref": "#/definitions/tree"}}},
                              "required": ["name"]}},
     "$ref": "#/definitions/tree"},
    {"properties": {"a": {"properties": {"b": {"properties": {"c": {"type": "integer"}}}}}}},
    {"properties": {"a": True, "b": False, "c": {}}},
    {"properties": {"x": {"type": "object", "properties": {"y": {"required": []}}}}},
    {"type": "object", "properties": {"properties": {"type": "object", "required": ["a b", "é"],
                                                     "properties": {"a b": {"type": "boolean"}}}}},
    # Written out in place: simple combinator branches, small $ref targets, enums after a type.
    {"type": "object", "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"], "title": "a note"}]},
    {"oneOf": [{"required": ["a"]}, {"required": ["b"]}, True], "not": {"required": ["c"]}},
    {"type": "object", "allOf": [{"required": []}, {"required": ["a"]}], "not": False},
    {"anyOf": [False, {"required": ["a"], "then": {"required": ["b"]}}]},  # then without if: a note
    {"if": {"required": ["a"]}, "then": True, "else": False},
    {"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}},
    {"type": "string", "enum": ["a", "x", 1, None]},
    {"type": "integer", "enum": [1, 2.0, "1", True]},
    {"type": "number", "enum": ["a"]},
    {"type": ["string", "null"], "enum": ["a", None]},
    {"definitions": {"money": {"type": "number", "minimum": 0}, "big": {"type": "object", "properties": {
        "a": {"type": "string"}, "b": {"type": "string"}, "c": {"type": "string"}, "d": {"type": "string"},
        "e": {"type": "string"}, "f": {"type": "string"}, "g": {"type": "string"}, "h": {"type": "string"},
        "i": {"type": "string"}, "j": {"type": "string"}, "k": {"type": "string"}, "x": {"minimum": 1}}},
        "to_money": {"$ref": "#/definitions/money"}},
     "properties": {"revenue": {"$ref": "#/definitions/money"}, "a": {"$ref": "#/definitions/big"},
                    "tax": {"$ref": "#/definitions/to_money"}, "b": {"$ref": "#"}}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 12) | st.floats(-3, 12, allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "a", "x", "1", "abc", "bcd", "o-12", "o-12\n", "o-x", "2026-01-05T10:00:00Z",
                       "2026-01-05", "é"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "c", "name", "kids", "userId", "anonymousId", "revenue", "tax",
                                       "properties", "a b", "é", "x", "y"]), inner, max_size=5),
    max_leaves=12)


def _authority(schema: Any) -> Draft7Validator:
    return Draft7Validator(schema, registry=NO_RETRIEVAL, format_checker=FORMATS)


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_the_lean_check_agrees_with_jsonschema(schema: Any) -> None:
    check = lean_compile(schema, date_time=is_date_time)
    assert check is not None, "every schema of the corpus is in the subset"
    authority = _authority(schema)

    @settings(max_examples=60, deadline=None)
    @given(instance=json_values)
    def agrees(instance: Any) -> None:
        assert check(instance) is authority.is_valid(instance)
    agrees()


@pytest.mark.parametrize("schema", SCHEMAS, ids=range(len(SCHEMAS)))
def test_the_lean_check_agrees_on_the_edges(schema: Any) -> None:
    check = lean_compile(schema, date_time=is_date_time)
    assert check is not None
    for instance in (True, False, 0, 1, 1.0, 2, 10, 0.5, -1, None, "", "o-1", "o-1\n", [], [1], [1, 2, 3, 4], {},
                     {"a": 1}, {"a": "x", "b": 1}, {"c": 1}, {"userId": "u"}, {"anonymousId": "a"},
                     {"revenue": -1}, {"revenue": 1, "tax": True}, {"name": "n", "kids": [{"name": "k"}, {}]},
                     {"name": "n", "kids": [{"name": "k", "kids": []}]}, {"a": {"b": {"c": 1.0}}},
                     {"a": {"b": {"c": 1.5}}}, {"properties": {"a b": True, "é": 1}}, {"properties": {"a b": 1}}):
        assert check(instance) is _authority(schema).is_valid(instance), instance


@pytest.mark.parametrize("schema", [
    {"multipleOf": 2},
    {"uniqueItems": True},
    {"patternProperties": {"^a": {"type": "string"}}},
    {"properties": {"a": {}}, "patternProperties": {"^b": {}}, "additionalProperties": False},
    {"propertyNames": {"maxLength": 3}},
    {"contains": {"type": "string"}},
    {"dependencies": {"a": ["b"]}},
    {"items": [{"type": "string"}]},
    {"additionalItems": False},
    {"format": "email"},
    {"enum": [[1], {"a": 1}]},
    {"$id": "#thing", "type": "string"},
    {"properties": {"a": {"$ref": "#thing"}}},
    {"properties": {"a": {"$ref": "#/definitions/absent"}}},
])
def test_a_schema_outside_the_subset_is_left_to_fastjsonschema(schema: Any) -> None:
    assert lean_compile(schema, date_time=is_date_time) is None


def test_no_text_of_the_schema_reaches_the_code() -> None:
    hostile = '"]; import os; os.system("false"); x = ["'
    schema = {"properties": {hostile: {"type": "string", "enum": [hostile, "x"]}}, "required": [hostile]}
    check = lean_compile(schema, date_time=is_date_time)
    assert check is not None
    assert check({hostile: "x"}) is _authority(schema).is_valid({hostile: "x"})
    assert check({}) is False


def test_a_rule_that_refers_to_itself_without_end_fails_rather_than_crashes() -> None:
    plan = plan_compile(plan_id=1, version=1, rules=[{"type": "COMMON", "key": "", "version": 1,
                                                      "jsonSchema": {"$ref": "#"}}],
                        unplanned_events="allow", unplanned_properties="allow", on_violation="allow",
                        forward_violations_to=None)
    assert plan.common is not None
    assert plan.common.passes({"type": "track"}) is False


def test_a_bench_sized_plan_compiles_every_rule_lean() -> None:
    rules = plan_check([{"type": "TRACK", "key": f"Event {n}", "version": 1, "jsonSchema": {
        "type": "object", "properties": {"properties": {"type": "object", "required": ["id"],
                                                        "properties": {"id": {"type": "string"}}}}}}
                        for n in range(50)])
    for rule in rules:
        assert lean_compile(rule["jsonSchema"], date_time=is_date_time) is not None
