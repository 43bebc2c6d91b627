"""FQL as Segment documents it: the examples of its reference page, evaluated on its example
event, and the errors a person sees for what does not parse."""
from __future__ import annotations

import time

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
