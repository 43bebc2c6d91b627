"""match()'s glob patterns: Segment's documented table, and patterns that would make a
backtracking matcher take seconds."""
from __future__ import annotations

import fnmatch
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.segment.glob import GlobError, compile_glob, literal_prefix

DOCUMENTED = [  # Segment's table for match()
    ("abcd", "a*d", True),
    ("", "*", True),
    ("abc", "ab", False),
    ("abcd", "a??d", True),
    ("abcd", "*d", True),
    ("ab*d", "ab\\*d", True),
    ("abCd", "ab[cC]d", True),
    ("abcd", "ab[a-z]d", True),
    ("abcd", "ab[A-Z]d", False),
]
EDGES = [
    ("a", "a*a", False),
    ("aa", "a*a", True),
    ("abab", "*ab*ab", True),
    ("xaby", "*ab*ab", False),
    ("Experiment Viewed", "Experiment *", True),
    ("line\nbreak", "line?break", True),
    ("b", "[!a]", True),
    ("a", "[^a]", False),
    ("a]", "a\\]", True),
]


@pytest.mark.parametrize(("text", "pattern", "expected"), DOCUMENTED + EDGES)
def test_segments_documented_patterns_and_the_edges_match_as_segment_says(
        text: str, pattern: str, expected: bool) -> None:
    assert compile_glob(pattern)(text) is expected


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab*?", max_size=12), pattern=st.text(alphabet="ab*?", max_size=8))
def test_agrees_with_fnmatch_on_stars_and_question_marks(text: str, pattern: str) -> None:
    assert compile_glob(pattern)(text) is fnmatch.fnmatchcase(text, pattern)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab*?[]\\", max_size=10), pattern=st.text(alphabet="ab*?[]\\", max_size=6))
def test_a_literal_prefix_is_all_its_pattern_asks(text: str, pattern: str) -> None:
    """Generated FQL tests `bench*` with startswith: exactly the compiled pattern's answer."""
    prefix = literal_prefix(pattern)
    if prefix is not None:
        assert compile_glob(pattern)(text) is text.startswith(prefix)


@pytest.mark.parametrize(("pattern", "prefix"), [
    ("bench*", "bench"), ("*", ""), ("a**", None), ("a?*", None), ("a\\*", None), ("[a]*", None), ("abc", None),
    ("a*b*", None), ("a*b", None),
])
def test_which_patterns_are_a_literal_prefix(pattern: str, prefix: str | None) -> None:
    assert literal_prefix(pattern) == prefix


def test_an_adversarial_text_costs_microseconds() -> None:
    match = compile_glob("*a*a*a*a*a*a*a*b")
    started = time.perf_counter()
    for _ in range(10):
        assert match("a" * 32_000) is False
    assert time.perf_counter() - started < 0.1


@pytest.mark.parametrize(("pattern", "hint"), [
    ("*a" * 10, "more than 8 '*'"),
    ("x" * 201, "longer than 200"),
    ("[abc", "opens '['"),
    ("trailing\\", "lone '\\'"),
    ("[z-a]", "runs backwards"),
])
def test_dangerous_or_broken_patterns_are_refused_with_a_reason(pattern: str, hint: str) -> None:
    with pytest.raises(GlobError) as raised:
        compile_glob(pattern)
    assert hint in str(raised.value)
