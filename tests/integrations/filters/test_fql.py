"""FQL as Segment documents it: the examples of its reference page, evaluated on its example
event, and the errors a person sees for what does not parse."""
from __future__ import annotations

import time
from typing import Any

import pytest

from integrations.segment.fql import FQLRuntimeError, FQLSyntaxError, compile_fql

# Segment's example event (its FQL reference), with two fields of our own for paths and numbers.
EVENT = {
    "event": "Button Clicked",
    "type": "track",
    "context": {"library": {"name": "analytics.js", "version": "1.0"}},
    "properties": {"features": ["discounts", "dark-mode"], "product 1": {"price": "19.99"}, "revenue": 150,
                   "enabled": True},
    "traits": {"email": "ana@company.com"},
}

# Every example of Segment's reference table, with its documented result.
DOCUMENTED = [
    ("event = 'Button Clicked'", True),
    ("event = 'Screen Tapped'", False),
    ("context.path.path = '/login'", False),
    ("type = 'identify' or type = 'track'", True),
    ("event = 'Button Clicked' and type = 'track'", True),
    ("match( context.library.version, '1.*' )", True),
    ("match( context.library.version, '2.*' )", False),
    ("type = 'track' and ( event = 'Click' or match( event, 'Button *' ) )", True),
    ("!contains( context.library.name, 'js' )", False),
    ("'dark-mode' in properties.features", True),
    ("'blink' in properties.features", False),
    ("( type = 'track' or type = 'identify' ) and ( properties.enabled or match( traits.email, '*@company.com' ) )",
     True),
    ("!( type in ['track', 'identify'] )", False),
]


@pytest.mark.parametrize(("fql", "expected"), DOCUMENTED)
def test_segments_documented_examples_evaluate_as_documented(fql: str, expected: bool) -> None:
    assert compile_fql(fql).test(EVENT) is expected


@pytest.mark.parametrize(("fql", "expected"), [
    ('properties.product\\ 1.price = "19.99"', True),  # an escaped space in a field name
    ("properties.revenue > 100", True),
    ("properties.revenue >= 150 and properties.revenue <= 150", True),
    ("properties.revenue < 100", False),
    ('properties.revenue > "100"', False),  # numbers compare only with numbers
    ("properties.revenue = 150.0", True),
    ('properties.revenue = "150"', False),  # same type and strictly equal
    ("!(userId = null)", False),  # a missing field is null
    ("userId = null", True),
    ("length(userId) > 0", False),  # null-safe functions
    ("contains(userId, 'x')", False),
    ("match(userId, '*')", False),
    ("typeof(userId) = 'null'", True),
    ("typeof(properties.features) = 'list'", True),
    ("lowercase(event) = 'button clicked'", True),
    ("uppercase(type) = 'TRACK'", True),
    ("length('ア') = 3", True),  # bytes, not characters
    ("snakecase(event) = 'Button_Clicked'", True),
    ("event != 'Order Completed'", True),
    ("type in ['track', 'page'] and !(event in ['Signed Up'])", True),
    ("number('42') = 42", True),
    ("string(properties.revenue) = '150'", True),
    ("bool('') = false", True),
    ("Event = 'Button Clicked'", False),  # case-sensitive
    ('event = "Button Clicked"', True),  # double quotes too
    ("type = 'track' or type = 'page' and event = 'Nope'", True),  # and binds tighter than or
    ("properties.revenue in ['150']", False),  # a literal list of strings holds no number
    ("properties.enabled = true", True),
    ("properties.revenue = true", False),
    ("null = userId", True),  # a literal on the left
    ("'track' = type", True),
    ("properties.features = ['discounts', 'dark-mode']", True),
    ("150 in [properties.revenue, 1]", True),
])
def test_operators_functions_and_paths(fql: str, expected: bool) -> None:
    assert compile_fql(fql).test(EVENT) is expected


@pytest.mark.parametrize(("fql", "hint"), [
    ('userId = oops"', "Unexpected '\"'"),  # Segment's own example of invalid FQL
    ("event = ", "ends too early"),
    ("(type = 'track'", "ends too early"),
    ("event == 'x'", "Unexpected '='"),
    ("foo(event)", "Unknown function foo()"),
    ("contains(event)", "contains() takes 2 arguments"),
    ("match(event, 'a[b')", "opens '['"),
    ("match(event, '*a*a*a*a*a*a*a*a*a*b')", "more than 8 '*'"),
    ("", "Write a condition"),
])
def test_what_does_not_parse_says_what_to_fix(fql: str, hint: str) -> None:
    with pytest.raises(FQLSyntaxError, match=None) as raised:
        compile_fql(fql)
    assert hint in str(raised.value)


def test_a_condition_that_cannot_be_evaluated_raises_for_that_event() -> None:
    condition = compile_fql("number(properties.code) > 3")
    assert condition.test({"properties": {"code": "7"}}) is True
    with pytest.raises(FQLRuntimeError):
        condition.test({"properties": {"code": "seven"}})


def test_contains_on_a_number_cannot_be_evaluated() -> None:
    with pytest.raises(FQLRuntimeError):
        compile_fql("contains(properties.revenue, '1')").test(EVENT)


def test_keywords_inside_field_names_are_fields() -> None:
    assert compile_fql("android = 1 and order = 2 and nullable = true and index = 3").test(
        {"android": 1, "order": 2, "nullable": True, "index": 3})


def test_a_hostile_pattern_over_a_long_value_takes_microseconds() -> None:
    condition = compile_fql("match(properties.text, '*a*a*a*a*a*a*a*b')")
    started = time.perf_counter()
    assert condition.test({"properties": {"text": "a" * 32_000}}) is False
    assert time.perf_counter() - started < 0.05


# Conditions touching every kind of node, for the generated function against the closures.
EVERY_NODE = [fql for fql, _ in DOCUMENTED] + [
    "userId in ['test-user', 'qa-bot'] or contains(properties.email, '@test.example')",
    "match(context.library.name, 'bench*')",
    "match(context.library.name, '*')",
    "match(context.library.name, 'analytics.?s')",
    "match(event, properties.pattern)",
    "properties.revenue > 100 and type = 'track'",
    "properties.revenue <= 150.0 or properties.revenue < -1",
    "properties.revenue > properties.limit",
    "number(properties.code) > 3",
    "length(properties.features) >= 2",
    "1 < properties.revenue",
    "properties.revenue = 150",
    "properties.revenue != 150",
    "properties.enabled != true",
    "userId = null",
    "userId != null",
    "properties.features = ['discounts', 'dark-mode']",
    "properties.features != [properties.first, 'dark-mode']",
    "properties.revenue in [150, 'x']",
    "event in [type, 'Button Clicked']",
    "!event",
    "!!properties.enabled",
    "properties.enabled and true",
    "properties.enabled or false",
    "properties.enabled",
    "null",
    "150",
    "typeof(properties.features.0) = 'string'",
    "properties.features.1 = 'dark-mode'",
    "context.library.name.first = 'a'",
    "properties.product\\ 1.price = '19.99'",
    "a.b.c.d = 1",
    "contains(event, 'Button')",
    "contains(properties.revenue, '1')",
    "contains(event, properties.sub)",
    "lowercase(properties.revenue) = 'x'",
    "string(properties.features) = '[discounts,dark-mode]'",
    "bool(properties.code)",
]
EVENTS: list[dict[str, Any]] = [
    EVENT,
    {},
    {"type": "track", "event": "Button Clicked", "userId": "test-user", "properties": {"email": "a@test.example"}},
    {"event": 5, "userId": 7, "context": {"library": {"name": "bench-1"}}, "properties": {"revenue": "150"}},
    {"event": None, "context": {"library": ["bench"]}, "properties": {"revenue": 150.0, "limit": 10, "code": "7"}},
    {"event": ["Button Clicked"], "context": "text", "properties": {"revenue": True, "code": "seven", "sub": 3}},
    {"context": {"library": {"name": 5}}, "properties": {"features": "dark-mode", "first": "discounts",
                                                         "pattern": "But*", "enabled": 1}},
    {"context": {"library": None}, "properties": [1, 2], "a": {"b": {"c": {"d": 1}}}},
    {"type": "identify", "properties": {"product 1": {"price": "19.99"}, "revenue": 2**70, "pattern": 5,
                                        "sub": "Clicked", "features": [["x"], {"y": 1}]}},
]


def _outcome(condition: Any, event: dict[str, Any]) -> tuple[str, Any]:
    try:
        return "value", condition.evaluate(event)
    except FQLRuntimeError as error:
        return "error", str(error)


@pytest.mark.parametrize("fql", EVERY_NODE)
def test_the_generated_function_gives_what_the_closures_give(fql: str) -> None:
    """Every node of the tree is written out as an expression: same values (not merely the
    same truth), same errors, on events where each path holds every JSON type or nothing."""
    generated, closures = compile_fql(fql), compile_fql(fql, generated=False)
    for event in EVENTS:
        got, expected = _outcome(generated, event), _outcome(closures, event)
        assert got == expected and type(got[1]) is type(expected[1]), (fql, event)


def test_a_condition_is_one_generated_function_unless_its_top_is_a_call_of_its_own() -> None:
    assert compile_fql("userId in ['a'] or contains(properties.email, '@x') and !(x > 1)").evaluate.__name__ \
        == "condition"
    assert compile_fql("'x' in properties.features").evaluate.__name__ != "condition"  # a closure alone


def test_a_condition_too_deep_to_write_out_is_evaluated_by_its_closures() -> None:
    """Python refuses to compile an expression nested 200 parentheses deep; such a condition
    (a long chain of `or`) keeps its tree of closures, with the same results."""
    fql = " or ".join(["a = 1"] * 400) + " or event = 'Button Clicked'"
    condition = compile_fql(fql)
    assert condition.evaluate.__name__ != "condition"  # not the generated function
    assert condition.test(EVENT) is True
    assert condition.test({"a": 2}) is False


@pytest.mark.parametrize("fql", EVERY_NODE)
def test_a_condition_marked_safe_never_fails(fql: str) -> None:
    """`safe` lets a 100% sample skip its condition: it must never raise, whatever the event."""
    for generated in (True, False):
        condition = compile_fql(fql, generated=generated)
        if condition.safe:
            for event in EVENTS:
                condition.evaluate(event)


@pytest.mark.parametrize(("fql", "safe"), [
    ("match(context.library.name, 'bench*')", True),
    ("userId in ['a', 'b'] or !(event = 'x') and properties.revenue > 3", True),
    ("properties.features = ['a'] or 'a' in properties.features", True),
    ("contains(properties.email, '@x')", False),  # a number there cannot be searched
    ("number(properties.code) > 1", False),
    ("length(userId) > 0", False),
    ("match(event, properties.pattern)", False),
    ("typeof(event) = 'string'", False),  # functions are not looked into
    ("properties.\\² = 1", True),  # a digit that is not a decimal one is a key, never an index
    ("properties.\\٣ = 1", True),
])
def test_which_conditions_are_safe(fql: str, safe: bool) -> None:
    assert compile_fql(fql).safe is safe


@pytest.mark.parametrize("generated", [True, False])
def test_a_path_step_over_a_list_is_an_index_only_when_it_is_decimal_digits(generated: bool) -> None:
    event = {"properties": {"items": ["a", "b", "c", "d"]}}
    assert compile_fql("properties.items.\\٣ = 'd'", generated=generated).evaluate(event) is True
    assert compile_fql("properties.items.\\² = null", generated=generated).evaluate(event) is True
    assert compile_fql("properties.items.1 = 'b'", generated=generated).evaluate(event) is True
