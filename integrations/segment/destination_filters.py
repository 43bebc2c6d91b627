"""Segment's destination-filter model, applied to one event at a time.

A filter is a condition (FQL) and one action:
  - sample: keep `percent` (0 to 1) of the matching events, deterministically by the value at
    `path` (for example `userId`: a user is always in or always out), or by the event's
    messageId when no path is given or the event has no value there;
  - drop: drop matching events ("only send" is a drop of the complement: its condition is
    wrapped in `!( … )`);
  - drop properties / allow properties: `fields` maps an object path (`properties`,
    `context.traits`; `""` is the event's top level) to names to remove, or to the only
    names to keep in that object.

`apply(filters, event, message_id)` follows Segment's order whatever the filters' order:
  1. every sample filter whose condition matches: sampled out → dropped ("sampled");
  2. every drop filter whose condition matches → dropped ("dropped");
  3. every drop-properties filter whose condition matches removes its fields;
  4. every allow-properties filter whose condition matches keeps only its fields.
Conditions are read from the event as it arrived, before any property was removed, so the
order of the filters on a page never changes what is sent. A condition that cannot be
evaluated drops the event ("failed"), as Segment does: failing closed keeps data that a
broken filter meant to hold back from being sent.

`apply_in_place` decides the same for an event its caller has just parsed and owns
(delivery): every condition is evaluated first, then the properties are removed from that
event itself, with no copy and no Verdict; for filters from `staged`, by one function
written for them (`Staged`).
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from integrations.segment.fql import (
    Condition,
    FQLRuntimeError,
    FQLSyntaxError,
    compile_fql,
    lookup,
    path_keys,
)

SAMPLE, DROP, ONLY_SEND, DROP_PROPERTIES, ALLOW_PROPERTIES = (
    "sample", "drop", "only_send", "drop_properties", "allow_properties")
ACTIONS = (SAMPLE, DROP, ONLY_SEND, DROP_PROPERTIES, ALLOW_PROPERTIES)
# The order Segment applies actions in: sample, drop, drop properties, allow properties.
STAGE = {SAMPLE: 0, DROP: 1, ONLY_SEND: 1, DROP_PROPERTIES: 2, ALLOW_PROPERTIES: 3}
# Fields an allow-properties filter never removes from the top level: without them the
# event is not a Segment event any more.
ESSENTIAL = frozenset({"type", "event", "name", "userId", "anonymousId", "groupId", "previousId", "timestamp",
                       "messageId", "context", "receivedAt", "sentAt", "originalTimestamp"})
MAX_FIELDS = 100


class FilterInvalid(ValueError):
    """A filter that cannot be saved; the message says what to fix."""


@dataclass(frozen=True)
class FilterSpec:
    """What a person saved: enough to compile and to show."""

    id: int
    title: str
    condition: str
    action: str
    percent: float | None = None
    path: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # slots: read per event and filter, in `_decide`
class CompiledFilter:
    spec: FilterSpec
    condition: Condition
    negate: bool
    stage: int
    sample_keys: tuple[str, ...] = ()
    fields: tuple[tuple[tuple[str, ...], frozenset[str]], ...] = ()

    def matches(self, event: dict[str, Any]) -> bool:
        return self.condition.test(event) is not self.negate


@dataclass
class Verdict:
    """What the filters made of one event. `outcome`: kept, changed, sampled, dropped, failed;
    `by` the filter that dropped it (or the last one that changed it)."""

    outcome: str
    event: dict[str, Any]
    by: FilterSpec | None = None
    reason: str = ""

    @property
    def sent(self) -> bool:
        return self.outcome in ("kept", "changed")


def compile_filter(spec: FilterSpec) -> CompiledFilter:
    """Compile, refusing with FilterInvalid what could never run as meant."""
    if spec.action not in ACTIONS:
        raise FilterInvalid(f"Unknown action {spec.action!r}: choose sample, drop, only send, "
                            "drop properties or allow properties.")
    try:
        condition = compile_fql(spec.condition)
    except FQLSyntaxError as error:
        raise FilterInvalid(str(error)) from None
    sample_keys: tuple[str, ...] = ()
    if spec.action == SAMPLE:
        if spec.percent is None or not 0 <= spec.percent <= 1:
            raise FilterInvalid("Give the share of matching events to keep, between 0% and 100%.")
        sample_keys = path_keys(spec.path.strip())
    fields: list[tuple[tuple[str, ...], frozenset[str]]] = []
    if spec.action in (DROP_PROPERTIES, ALLOW_PROPERTIES):
        fields = _fields(spec)
    return CompiledFilter(spec, condition, spec.action == ONLY_SEND, STAGE[spec.action], sample_keys, tuple(fields))


def _fields(spec: FilterSpec) -> list[tuple[tuple[str, ...], frozenset[str]]]:
    chosen = [(path.strip(), [n.strip() for n in names if n.strip()]) for path, names in spec.fields.items()]
    chosen = [(path, names) for path, names in chosen if names]
    if not chosen:
        raise FilterInvalid("Name at least one property, for example properties.email.")
    if sum(len(names) for _, names in chosen) > MAX_FIELDS:
        raise FilterInvalid(f"Name at most {MAX_FIELDS} properties in one filter.")
    for path, names in chosen:
        if path == "" and spec.action == DROP_PROPERTIES and "type" in names:
            raise FilterInvalid("An event cannot be sent without its type: drop the event instead.")
        if path == "" and spec.action == ALLOW_PROPERTIES:
            raise FilterInvalid("Allow properties inside an object such as properties or traits, not at the top level.")
    return [(path_keys(path), frozenset(names)) for path, names in chosen]


def apply(filters: Sequence[CompiledFilter], event: dict[str, Any], message_id: str) -> Verdict:
    """Run a connection's filters (already sorted by stage, see `staged`) over one event.
    `event` is not changed: a changed event is a copy of the objects that changed."""
    outcome, by, reason, rewrites = _decide(filters, event, message_id)
    if outcome != "kept":
        return Verdict(outcome, event, by, reason)
    changed: FilterSpec | None = None
    result = event
    for compiled in rewrites:
        rewritten = _rewrite(compiled, result)
        if rewritten is not None:
            result, changed = rewritten, compiled.spec
    if changed is not None:
        return Verdict("changed", result, changed)
    return Verdict("kept", event)


def apply_in_place(filters: Sequence[CompiledFilter], event: dict[str, Any],
                   message_id: str) -> tuple[str, FilterSpec | None]:
    """`apply` for an event nobody else holds (just parsed): the same outcome and filter, but
    properties are removed from `event` itself, with no copy and no Verdict. Every condition
    is still evaluated before anything is removed. Filters from `staged` run as one function
    written for them (`Staged`); any other sequence, step by step."""
    if filters.__class__ is Staged:
        run = filters.written or filters.write()
        return run(event, message_id)
    outcome, by, _reason, rewrites = _decide(filters, event, message_id)
    if outcome != "kept":
        return outcome, by
    for compiled in rewrites:
        if _remove_in_place(compiled, event):
            by = compiled.spec
    return ("changed", by) if by is not None else ("kept", None)


def _decide(filters: Sequence[CompiledFilter], event: dict[str, Any],
            message_id: str) -> tuple[str, FilterSpec | None, str, list[CompiledFilter]]:
    """Segment's order over the event as it arrived: the first sample that leaves it out,
    drop that matches or condition that fails ends it; else "kept", with the matching
    property filters to apply, in order."""
    rewrites: list[CompiledFilter] = []
    for compiled in filters:
        try:
            hit = compiled.condition.evaluate(event) is True
        except FQLRuntimeError as error:
            return "failed", compiled.spec, str(error), rewrites
        if hit is compiled.negate:
            continue
        if compiled.stage == 0:
            if not _sampled_in(compiled, event, message_id):
                return "sampled", compiled.spec, "", rewrites
        elif compiled.stage == 1:
            return "dropped", compiled.spec, "", rewrites
        else:
            rewrites.append(compiled)
    return "kept", None, "", rewrites


def staged(filters: Sequence[CompiledFilter]) -> list[CompiledFilter]:
    """In Segment's order of actions; within an action, in the order given."""
    return Staged(sorted(filters, key=lambda compiled: compiled.stage))


Outcome = tuple[str, FilterSpec | None]


class Staged(list[CompiledFilter]):
    """A connection's filters in Segment's order, with `apply_in_place` written out for exactly
    them the first time it runs (`write`): delivery runs the same few filters over every
    event, and a loop asking each filter its stage and calling a helper per step cost more
    than the conditions themselves.

    The function written, `run(e, message_id)`, follows `_decide` then the removals:
      1. each filter in order: its condition, a failure ending it ("failed"); a matching
         sample filter that leaves the event out or drop filter ends it, a 100% sample never
         does (its condition is still evaluated, as its failure drops the event, unless it
         cannot fail: `Condition.safe`);
      2. then, with every condition evaluated, each matching property filter's removal in
         order, a single name under a single key deleted inline.
    A generated condition is written in as its expression (`Condition.source`), any other
    called. Every outcome is a tuple made once. No text of a filter is written into the code:
    the conditions' literals, the filters and the names are bound as names."""

    __slots__ = ("written",)

    def __init__(self, filters: Sequence[CompiledFilter] = ()) -> None:
        super().__init__(filters)
        self.written: Callable[[dict[str, Any], str], Outcome] | None = None

    def write(self) -> Callable[[dict[str, Any], str], Outcome]:
        try:
            run = self._compiled(inline=True)
        except (SyntaxError, RecursionError, MemoryError):  # conditions nested deeper than Python compiles
            run = self._compiled(inline=False)
        self.written = run
        return run

    def _compiled(self, *, inline: bool) -> Callable[[dict[str, Any], str], Outcome]:
        """The function (see the class); `inline`: generated conditions written in, not called."""
        names: dict[str, Any] = {"FQLRuntimeError": FQLRuntimeError, "_sampled_in": _sampled_in,
                                 "_remove_in_place": _remove_in_place, "KEPT": ("kept", None)}
        lines = ["def run(e, message_id):"]
        removals: list[str] = []
        for n, compiled in enumerate(self):
            condition = compiled.condition
            if compiled.stage == 0 and (compiled.spec.percent or 0.0) >= 1 and condition.safe:
                continue  # keeps every event, and evaluating its condition cannot fail: nothing to do
            names[f"c{n}"], names[f"f{n}"] = condition.evaluate, compiled
            names[f"failed{n}"] = ("failed", compiled.spec)
            value = f"c{n}(e)"
            if inline and condition.source is not None:
                value = f"({condition.source})"
                names.update(condition.names)
            matched = f"{value} is not True" if compiled.negate else f"{value} is True"  # see _decide
            lines += ["    try:", f"        m{n} = {matched}", "    except FQLRuntimeError:", f"        return failed{n}"]
            if compiled.stage == 0 and (compiled.spec.percent or 0.0) < 1:
                names[f"out{n}"] = ("sampled", compiled.spec)
                lines.append(f"    if m{n} and not _sampled_in(f{n}, e, message_id): return out{n}")
            elif compiled.stage == 1:
                names[f"out{n}"] = ("dropped", compiled.spec)
                lines.append(f"    if m{n}: return out{n}")
            elif compiled.stage >= 2:
                names[f"out{n}"] = ("changed", compiled.spec)
                removals += self._removal(n, compiled, names)
        lines += ["    out = KEPT", *removals, "    return out"]
        namespace = dict(names)
        exec(compile("\n".join(lines), "<filters>", "exec"), namespace)  # noqa: S102 - only names made here
        run: Callable[[dict[str, Any], str], Outcome] = namespace["run"]
        return run

    @staticmethod
    def _removal(n: int, compiled: CompiledFilter, names: dict[str, Any]) -> list[str]:
        """Statements applying filter `n` if it matched; `_remove_in_place` but for one name
        dropped from one object (`properties.currency`), which is deleted where it is."""
        if compiled.stage == 2 and len(compiled.fields) == 1:
            keys, dropped = compiled.fields[0]
            if len(keys) == 1 and len(dropped) == 1:
                names[f"key{n}"], names[f"name{n}"] = keys[0], next(iter(dropped))
                return [f"    if m{n} and isinstance(t := e.get(key{n}), dict) and name{n} in t:",
                        f"        del t[name{n}]", f"        out = out{n}"]
        return [f"    if m{n} and _remove_in_place(f{n}, e): out = out{n}"]


def sample_fraction(value: Any) -> float:
    """Where a value falls in [0, 1): the same for the same value in every process."""
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _sampled_in(compiled: CompiledFilter, event: dict[str, Any], message_id: str) -> bool:
    percent = compiled.spec.percent or 0.0
    if percent >= 1:
        return True
    value = lookup(event, compiled.sample_keys) if compiled.sample_keys else None
    return sample_fraction(message_id if value is None else value) < percent


def _rewrite(compiled: CompiledFilter, event: dict[str, Any]) -> dict[str, Any] | None:
    """The event with the filter's fields removed (or all but them kept); None if nothing changed."""
    result: dict[str, Any] | None = None
    for keys, names in compiled.fields:
        target = lookup(event if result is None else result, keys) if keys else (result or event)
        if not isinstance(target, dict):
            continue
        if compiled.stage == 2:
            kept = {k: v for k, v in target.items() if k not in names}
        else:
            kept = {k: v for k, v in target.items() if k in names or (not keys and k in ESSENTIAL)}
        if len(kept) == len(target):
            continue
        result = _replace(event if result is None else result, keys, kept)
    return result


def _replace(event: Any, keys: tuple[str, ...], value: dict[str, Any]) -> Any:
    """A copy of `event` with the object at `keys` replaced, copying only the objects on the way
    (a list on the way is indexed by a number, as `lookup` reads it)."""
    if not keys:
        return value
    head, rest = keys[0], keys[1:]
    if isinstance(event, list):
        items = list(event)
        items[int(head)] = _replace(event[int(head)], rest, value)
        return items
    copy = dict(event)
    copy[head] = _replace(event[head], rest, value)
    return copy


def _remove_in_place(compiled: CompiledFilter, event: dict[str, Any]) -> bool:
    """`_rewrite` on `event` itself; whether anything was removed. Dropping a few names from a
    larger object (the usual drop-properties filter) deletes them one by one, with no list."""
    removed = False
    for keys, names in compiled.fields:
        target = event.get(keys[0]) if len(keys) == 1 else lookup(event, keys) if keys else event
        if not isinstance(target, dict):
            continue
        if compiled.stage == 2 and len(names) < len(target):
            for name in names:
                if name in target:
                    del target[name]
                    removed = True
            continue
        if compiled.stage == 2:
            gone = [k for k in target if k in names]
        else:
            gone = [k for k in target if k not in names and (keys or k not in ESSENTIAL)]
        for key in gone:
            del target[key]
        removed = removed or bool(gone)
    return removed
