"""Destination filters' actions: Segment's order, property paths, deterministic sampling and
failing closed."""
from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.segment.destination_filters import (
    FilterInvalid,
    FilterSpec,
    apply,
    apply_in_place,
    compile_filter,
    sample_fraction,
    staged,
)


def event(**extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Order Completed", "userId": "u1",
            "properties": {"revenue": 10, "email": "a@test.com", "plan": "pro"},
            "context": {"traits": {"email": "a@test.com", "name": "Ana"}, "ip": "1.2.3.4"}, **extra}


def filters(*specs: FilterSpec) -> list[Any]:
    return staged([compile_filter(spec) for spec in specs])


def spec(action: str, condition: str = "type = 'track'", title: str = "", **kwargs: Any) -> FilterSpec:
    return FilterSpec(id=len(title), title=title or action, condition=condition, action=action, **kwargs)


def test_a_drop_drops_matching_events_only() -> None:
    chain = filters(spec("drop", "contains(properties.email, '@test.com')", "No test users"))
    dropped = apply(chain, event(), "m1")
    assert (dropped.outcome, dropped.by and dropped.by.title) == ("dropped", "No test users")
    assert apply(chain, event(properties={"email": "a@real.com"}), "m1").outcome == "kept"


def test_only_send_drops_the_complement() -> None:
    chain = filters(spec("only_send", "event in ['Order Completed', 'Signed Up']"))
    assert apply(chain, event(), "m").outcome == "kept"
    assert apply(chain, event(event="Page Scrolled"), "m").outcome == "dropped"


def test_drop_properties_by_object_path_leaves_the_original_untouched() -> None:
    chain = filters(spec("drop_properties", fields={"properties": ["email"], "context.traits": ["email"],
                                                    "": ["userId"]}))
    original = event()
    verdict = apply(chain, original, "m")
    assert verdict.outcome == "changed"
    assert verdict.event["properties"] == {"revenue": 10, "plan": "pro"}
    assert verdict.event["context"]["traits"] == {"name": "Ana"}
    assert "userId" not in verdict.event
    assert original == event()  # copied, not changed in place


def test_allow_properties_keeps_only_the_named_ones() -> None:
    chain = filters(spec("allow_properties", fields={"properties": ["revenue"]}))
    assert apply(chain, event(), "m").event["properties"] == {"revenue": 10}


def test_nothing_to_remove_is_kept_not_changed() -> None:
    chain = filters(spec("drop_properties", fields={"properties": ["password"]}))
    assert apply(chain, event(), "m").outcome == "kept"


def test_actions_run_in_segments_order_whatever_the_filters_order() -> None:
    # Listed allow, drop-properties, drop, sample: Segment applies sample, drop, drop
    # properties, allow properties; conditions read the event as it arrived.
    chain = filters(
        spec("allow_properties", "properties.email = 'a@test.com'", "allow", fields={"properties": ["email", "plan"]}),
        spec("drop_properties", "true", "strip email", fields={"properties": ["email"]}),
        spec("drop", "properties.plan = 'free'", "no free"),
        spec("sample", "true", "sample all", percent=1.0),
    )
    assert [c.spec.title for c in chain] == ["sample all", "no free", "strip email", "allow"]
    verdict = apply(chain, event(), "m")
    assert verdict.outcome == "changed"
    # The allow filter matched on the arriving email even though an earlier stage removed it.
    assert verdict.event["properties"] == {"plan": "pro"}
    assert apply(chain, event(properties={"plan": "free"}), "m").outcome == "dropped"


def test_sampling_is_deterministic_by_the_chosen_field() -> None:
    chain = filters(spec("sample", "true", "half", percent=0.5, path="userId"))
    users = [f"user-{n}" for n in range(2000)]
    first = [apply(chain, event(userId=u), f"m-{n}").outcome for n, u in enumerate(users)]
    again = [apply(chain, event(userId=u), f"other-{n}").outcome for n, u in enumerate(users)]
    assert first == again  # the messageId does not matter, the user does
    kept = first.count("kept") / len(users)
    assert 0.45 < kept < 0.55
    assert set(first) == {"kept", "sampled"}


def test_sampling_without_a_field_uses_the_message_id() -> None:
    chain = filters(spec("sample", "true", "tenth", percent=0.1))
    outcomes = [apply(chain, event(), f"m-{n}").outcome for n in range(3000)]
    assert outcomes == [apply(chain, event(), f"m-{n}").outcome for n in range(3000)]
    assert 0.07 < outcomes.count("kept") / 3000 < 0.13
    assert sample_fraction("m-1") == sample_fraction("m-1")


def test_a_condition_that_fails_drops_the_event_and_names_the_filter() -> None:
    chain = filters(spec("drop", "number(properties.plan) > 3", "numeric plans"))
    verdict = apply(chain, event(), "m")
    assert verdict.outcome == "failed"
    assert verdict.by is not None and verdict.by.title == "numeric plans"
    assert "number()" in verdict.reason


@pytest.mark.parametrize(("bad", "hint"), [
    (spec("sample", percent=1.5), "between 0% and 100%"),
    (spec("sample"), "between 0% and 100%"),
    (spec("drop_properties", fields={"properties": []}), "at least one property"),
    (spec("drop_properties", fields={"": ["type"]}), "without its type"),
    (spec("allow_properties", fields={"": ["userId"]}), "not at the top level"),
    (spec("drop", "type = "), "ends too early"),
    (spec("explode"), "Unknown action"),
])
def test_filters_that_could_not_run_as_meant_are_refused(bad: FilterSpec, hint: str) -> None:
    with pytest.raises(FilterInvalid) as raised:
        compile_filter(bad)
    assert hint in str(raised.value)


CHAINS = [
    [spec("drop_properties", fields={"properties": ["email"], "context.traits": ["email"], "": ["userId"]}),
     spec("allow_properties", "properties.revenue > 5", "Big", fields={"properties": ["revenue", "email"]})],
    [spec("allow_properties", fields={"properties": ["plan"], "context.traits": ["name"]}),
     spec("drop_properties", "userId = 'u1'", "U1", fields={"properties": ["plan"]}),
     spec("drop", "event = 'Signed Up'", "No sign-ups")],
    [spec("sample", "type = 'track'", "Half", percent=0.5, path="userId"),
     spec("drop_properties", "number(properties.plan) > 1", "Fails on text", fields={"properties": ["plan"]})],
    [spec("drop_properties", fields={"context": ["ip", "traits"], "properties": ["x", "y", "email"]})],
    # As delivery meets them most: one name dropped from one object, a 100% sample, only send.
    [spec("drop", "userId in ['u3'] or contains(properties.email, '@test')", "No test users"),
     spec("drop_properties", "event = 'Order Completed'", "No email", fields={"properties": ["email"]}),
     spec("sample", "match(userId, 'u*')", "All", percent=1.0, path="userId")],
    [spec("only_send", "event = 'Order Completed'", "Orders only"),
     spec("sample", "type = 'track'", "None", percent=0.0),
     spec("drop_properties", "number(properties.revenue) > 5", "Fails", fields={"": ["userId"]})],
    [spec("sample", "length(properties.email) > 3", "Fails on numbers", percent=1.0),
     spec("drop_properties", fields={"context.traits": ["ip"]}),
     spec("allow_properties", "properties.plan != 'pro'", "Not pro", fields={"context.traits": ["email"]})],
]


@pytest.mark.parametrize("chain", range(len(CHAINS)))
def test_in_place_gives_what_apply_gives(chain: int) -> None:
    """Delivery removes properties from the event it has just parsed (no copy); the outcome,
    the filter named and the event sent are those of `apply`, which copies."""
    compiled = filters(*CHAINS[chain])
    values = st.none() | st.integers(0, 20) | st.sampled_from(["a@test.com", "pro", "2", "Ana"])
    objects = st.dictionaries(st.sampled_from(["email", "plan", "revenue", "name", "x", "y", "ip"]), values,
                              max_size=5)

    @settings(max_examples=80, deadline=None)
    @given(user=st.sampled_from(["u1", "u2", "u3"]), name=st.sampled_from(["Order Completed", "Signed Up"]),
           properties=objects | values, traits=objects, ip=values)
    def same(user: str, name: str, properties: Any, traits: dict[str, Any], ip: Any) -> None:
        original = {"type": "track", "event": name, "userId": user, "properties": properties,
                    "context": {"traits": traits, "ip": ip}}
        verdict = apply(compiled, deepcopy(original), "m")
        mine, theirs = deepcopy(original), deepcopy(original)
        outcome, by = apply_in_place(compiled, mine, "m")
        assert (outcome, by) == (verdict.outcome, verdict.by)
        if outcome in ("kept", "changed"):
            assert mine == verdict.event
        # The function written for the staged filters and the step-by-step path agree.
        assert apply_in_place(list(compiled), theirs, "m") == (outcome, by)
        assert theirs == mine
    same()


def test_staged_filters_run_as_one_function_written_for_them() -> None:
    compiled = filters(*CHAINS[4])
    assert type(compiled).__name__ == "Staged" and compiled.written is None  # type: ignore[attr-defined]
    assert apply_in_place(compiled, event(), "m") == ("dropped", CHAINS[4][0])
    assert compiled.written is not None  # type: ignore[attr-defined]
    kept = event(properties={"email": "a@example.com", "plan": "pro"})
    assert apply_in_place(compiled, kept, "m") == ("changed", CHAINS[4][1])
    assert kept["properties"] == {"plan": "pro"}


@pytest.mark.parametrize("terms", [150, 197, 198, 199, 300])
def test_a_condition_nested_about_as_deep_as_python_compiles_still_runs(terms: int) -> None:
    """A condition written in adds a level of nesting; where the whole would nest deeper than
    Python compiles, the written function calls the condition instead."""
    chain = filters(spec("drop", " and ".join(["a = 1"] * terms), "Deep"),
                    spec("drop_properties", "a = 2", fields={"": ["b"]}))
    assert apply_in_place(chain, {"type": "track", "a": 1}, "m") == ("dropped", chain[0].spec)
    assert apply_in_place(chain, {"type": "track", "a": 2, "b": 1}, "m") == ("changed", chain[1].spec)
