"""Checking a tracking plan's rules before they are saved, and compiling them for enforcement.

A rule is Segment's: `{"type": TRACK|IDENTIFY|GROUP|PAGE|SCREEN|COMMON, "key": "Order Completed",
"jsonSchema": {...}, "version": 1}`. Its JSON Schema (draft-07) validates the whole event, so a
track event's properties are under `properties.properties`, identify and group traits under
`properties.traits`. A customer's schema is untrusted input, so `plan_check`:

1. refuses a plan larger than MAX_PLAN_BYTES (as JSON) or with more than MAX_RULES rules;
2. checks every rule's shape, its key (the event name: no control, line-break or
   bidirectional characters, at most 200 characters, no spaces at either end) and that no
   two rules share a type, key and version;
3. checks each schema against the draft-07 metaschema;
4. allows `$ref` only inside the rule's own schema (`#…`) and resolves each one now, with a
   `referencing` registry that refuses to retrieve anything: a schema never causes a network
   or file access, not at save time and not while events are validated;
5. refuses any regular expression (`pattern`, `patternProperties`) that could backtrack
   catastrophically (see `pattern_problem`).

Any problem raises PlanInvalid naming the rule and what to fix; nothing is saved. `plan_compile`
builds the validators once per plan version (the enforcement module caches the result).
"""
from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from re import _parser as sre_parse  # the parser `re` itself uses (Python 3.11's name for it)
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft7Validator, FormatChecker
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource, Unresolvable

from integrations.tracking_plans.lean import lean_compile, lean_compile_all

MAX_PLAN_BYTES = 256 * 1024
MAX_RULES = 2000
MAX_KEY = 200
MAX_PATTERN = 1000
RULE_TYPES = ("TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON")
# Rules whose key is an event's name; the others have an empty key.
NAMED_TYPES = ("TRACK", "PAGE", "SCREEN")
SECTIONS = {"TRACK": "properties", "PAGE": "properties", "SCREEN": "properties", "IDENTIFY": "traits",
            "GROUP": "traits"}
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class PlanInvalid(Exception):
    """What is wrong with a plan, in words that say what to fix."""


def _refuse_retrieval(uri: str) -> Resource[Any]:
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


# Every validator resolves references through this registry: anything not inside the schema
# being validated is "no such resource", never a download or a file read.
NO_RETRIEVAL: Registry[Any] = Registry(retrieve=_refuse_retrieval)  # type: ignore[call-arg]

FORMATS = FormatChecker()


def is_date_time(value: object) -> bool:
    """ISO 8601 with a time (Segment's `format: date-time`); the jsonschema default needs an
    optional package to check it at all. Both validators use this one test."""
    if not isinstance(value, str):
        return True
    # Text with a "T" holds one upper-cased too: the upper-cased copy is made only without one.
    if "T" not in value and " " not in value and "T" not in value.upper():
        return False
    try:
        datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return False
    return True


FORMATS.checks("date-time")(is_date_time)


def _refuse_fetch(uri: str) -> Any:
    raise PlanInvalid(f"$ref {uri[:80]!r} would be fetched; only references inside the rule are allowed.")


# fastjsonschema fetches remote references with urlopen unless a scheme has a handler: every
# scheme urllib knows gets one that refuses (save time already refuses any $ref not "#…").
NO_FETCH = {scheme: _refuse_fetch for scheme in ("http", "https", "file", "ftp", "data")}


def plan_check(rules: Any) -> list[dict[str, Any]]:
    """The rules, checked and in Segment's shape; PlanInvalid otherwise."""
    if not isinstance(rules, list):
        raise PlanInvalid("The plan's rules must be a JSON list of {type, key, jsonSchema, version} objects.")
    size = len(orjson.dumps(rules))
    if size > MAX_PLAN_BYTES:
        raise PlanInvalid(f"The plan is {size // 1024:,} KB; a plan may be at most {MAX_PLAN_BYTES // 1024} KB. "
                          "Split large shared definitions or remove unused rules.")
    if len(rules) > MAX_RULES:
        raise PlanInvalid(f"The plan has {len(rules):,} rules; at most {MAX_RULES:,} are allowed.")
    checked: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    for number, rule in enumerate(rules, start=1):
        one = rule_check(rule, number=number)
        identity = (one["type"], one["key"], one["version"])
        if identity in seen:
            raise PlanInvalid(f"{_where(number, one)}: another rule has the same type, key and version.")
        seen.add(identity)
        checked.append(one)
    return checked


def rule_check(rule: Any, *, number: int = 1) -> dict[str, Any]:
    if not isinstance(rule, dict):
        raise PlanInvalid(f"Rule {number} must be an object with type, key, jsonSchema and version.")
    kind = str(rule.get("type", "")).upper()
    if kind not in RULE_TYPES:
        raise PlanInvalid(f"Rule {number}: type must be one of {', '.join(RULE_TYPES)} "
                          f"(it is {str(rule.get('type'))[:40]!r}).")
    key = rule.get("key") or ""
    if not isinstance(key, str):
        raise PlanInvalid(f"Rule {number}: key must be text (the event name).")
    if kind == "TRACK" and not key:
        raise PlanInvalid(f"Rule {number}: a TRACK rule needs the event name as its key.")
    if kind not in NAMED_TYPES and key:
        raise PlanInvalid(f"Rule {number}: a {kind} rule has no key (leave it empty).")
    if problem := key_problem(key):
        raise PlanInvalid(f"Rule {number} ({kind} {key[:60]!r}): {problem}")
    version = rule.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= 10_000:
        raise PlanInvalid(f"Rule {number} ({kind} {key[:60]!r}): version must be a whole number from 1.")
    schema = rule.get("jsonSchema", {})
    checked = {"type": kind, "key": key, "version": version, "jsonSchema": schema}
    schema_check(schema, where=_where(number, checked))
    return checked


def key_problem(key: str) -> str | None:
    """What is wrong with an event name as a rule key, or None."""
    if len(key) > MAX_KEY:
        return f"the event name has {len(key)} characters; at most {MAX_KEY} are stored."
    for char in key:
        if unicodedata.category(char) in ("Cc", "Zl", "Zp", "Cs") or char in _BIDI:
            return (f"the event name holds an invisible or control character (U+{ord(char):04X}); "
                    "type the name again without it.")
    if key != key.strip():
        return "the event name starts or ends with a space; events arrive without it."
    return None


def schema_check(schema: Any, *, where: str) -> None:
    if isinstance(schema, bool):
        return
    if not isinstance(schema, dict):
        raise PlanInvalid(f"{where}: jsonSchema must be a JSON object.")
    try:
        Draft7Validator.check_schema(schema)
    except SchemaError as error:
        path = "/".join(str(part) for part in error.path) or "the top level"
        raise PlanInvalid(f"{where}: not a valid JSON Schema at {path}: {error.message[:300]}") from None
    validator = _validator(schema)
    for base in _values_of(schema, "$id"):
        if not isinstance(base, str) or not base.startswith("#"):
            raise PlanInvalid(f"{where}: $id {str(base)[:80]!r} is not allowed: a rule's schema has no address of "
                              "its own (remove $id).")
    for ref in _values_of(schema, "$ref"):
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise PlanInvalid(f"{where}: $ref {str(ref)[:80]!r} points outside the rule; only references inside "
                              "its schema (starting with #, like #/definitions/product) are allowed.")
        try:
            validator._resolver.lookup(ref)
        except Unresolvable:
            raise PlanInvalid(f"{where}: $ref {ref[:80]!r} points at nothing in the rule's schema.") from None
    for pattern in _patterns(schema):
        if problem := pattern_problem(pattern):
            raise PlanInvalid(f"{where}: the pattern {pattern[:80]!r} {problem}")


def pattern_problem(pattern: Any) -> str | None:
    """Why a regular expression may not be used, or None.

    Python's `re` backtracks, and a pattern such as `(a+)+$` takes exponential time on a
    string like "aaaa…!". Refused: patterns that do not compile, longer than MAX_PATTERN,
    back-references, a repeat inside a repeat (`(a+)+`, `(\\w*)*`, `(a|b+)*`), and a repeated
    alternation whose branches can begin with the same character (`(a|ab)*`, `(\\w|\\d)+`).
    That is conservative: a few safe patterns are refused too, with a message saying why.
    """
    if not isinstance(pattern, str):
        return "is not text."
    if len(pattern) > MAX_PATTERN:
        return f"is longer than {MAX_PATTERN} characters."
    try:
        parsed = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        return f"is not a valid regular expression ({error})."
    try:
        _check_items(list(parsed), inside_repeat=False)
    except _Unsafe as unsafe:
        return f"could take exponential time on some values ({unsafe}); rewrite it without that."
    return None


class _Unsafe(Exception):
    pass


_REPEATS = (sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, getattr(sre_parse, "POSSESSIVE_REPEAT", None))


def _check_items(items: list[tuple[Any, Any]], *, inside_repeat: bool) -> None:
    for op, arg in items:
        if op in _REPEATS and op is not None:
            _low, high, body = arg
            repeats = high is sre_parse.MAXREPEAT or high > 1
            if repeats and inside_repeat:
                raise _Unsafe("a repeat inside a repeat")
            if repeats:
                _check_alternation(list(body))
            _check_items(list(body), inside_repeat=inside_repeat or repeats)
        elif op == sre_parse.SUBPATTERN:
            _check_items(list(arg[-1]), inside_repeat=inside_repeat)
        elif op == sre_parse.BRANCH:
            for branch in arg[1]:
                _check_items(list(branch), inside_repeat=inside_repeat)
        elif op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
            raise _Unsafe("a back-reference")
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            _check_items(list(arg[1]), inside_repeat=inside_repeat)


def _check_alternation(items: list[tuple[Any, Any]]) -> None:
    """A repeated group `(x|y)*` whose branches may start alike backtracks exponentially. The
    parser factors common prefixes out (`(a|ab)*` becomes `(a(?:|b))*`), so every alternation
    in the repeated sequence is looked at, an empty branch counting as overlapping."""
    for op, arg in items:
        if op == sre_parse.SUBPATTERN:
            _check_alternation(list(arg[-1]))
        elif op == sre_parse.BRANCH:
            firsts = [_first_literals(list(branch)) for branch in arg[1]]
            for i, one in enumerate(firsts):
                for other in firsts[i + 1:]:
                    if one is None or other is None or one & other:
                        raise _Unsafe("alternatives inside a repeat that can start with the same character")


def _first_literals(items: list[tuple[Any, Any]]) -> set[int] | None:
    """The characters a branch can start with when it starts with plain literals; None for
    anything wider (a class, a dot, a repeat), treated as overlapping everything."""
    if not items:
        return None
    op, arg = items[0]
    if op == sre_parse.LITERAL:
        return {arg}
    if op == sre_parse.IN and all(kind == sre_parse.LITERAL for kind, _ in arg):
        return {value for _, value in arg}
    if op == sre_parse.SUBPATTERN:
        return _first_literals(list(arg[-1]))
    return None


def _values_of(node: Any, name: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == name:
                yield value
            yield from _values_of(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _values_of(value, name)


def _patterns(node: Any) -> Iterator[Any]:
    """Every `pattern` value and `patternProperties` key where a schema keyword can be (also
    under `properties`, whose keys are property names, which a walk cannot tell apart: a
    property called "pattern" holding a schema is skipped as not text)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            elif key == "patternProperties" and isinstance(value, dict):
                yield from value.keys()
            yield from _patterns(value)
    elif isinstance(node, list):
        for value in node:
            yield from _patterns(value)


def _where(number: int, rule: dict[str, Any]) -> str:
    key = f" {rule['key'][:60]!r}" if rule.get("key") else ""
    return f"Rule {number} ({rule['type']}{key}, version {rule['version']})"


def _validator(schema: Any) -> Draft7Validator:
    return Draft7Validator(schema, registry=NO_RETRIEVAL, format_checker=FORMATS)


def _fast(schema: Any) -> Callable[[Any], Any]:
    """The schema compiled to Python: raises JsonSchemaException on the first failure. It never
    fills in defaults (use_default=False: the event is not changed) and fetches nothing."""
    return fastjsonschema.compile(schema, handlers=NO_FETCH, formats={"date-time": is_date_time},
                                  use_default=False, detailed_exceptions=False)


# Compiling -----------------------------------------------------------------------------------

class CompiledRule:
    """One rule ready to check events. Compiling a schema to Python takes milliseconds, so a
    rule is compiled the first time an event needs it, not when the plan is loaded: a process
    pays only for the events it sees, and a 2,000-rule plan loads at once."""

    __slots__ = ("_passes", "_validator", "key", "planned", "quick", "schema", "type", "version")

    def __init__(self, *, type: str, key: str, version: int, schema: Any) -> None:
        self.type, self.key, self.version, self.schema = type, key, version, schema
        # The property (or trait) names the rule lists, or None when it lists none (then no
        # property counts as unplanned).
        self.planned = _planned(schema, SECTIONS.get(type))
        self._passes: Callable[[Any], bool] | None = None
        self._validator: Draft7Validator | None = None
        # This rule's and its plan's common rule's quick pass as one function (CompiledPlan.quick).
        self.quick: Callable[[Any], bool] | None = None

    def passes(self, event: Any) -> bool:
        """The fast yes/no. Compiled on first use: the lean check (`lean.lean_compile`) where
        the schema keeps to its subset, else fastjsonschema, else (a schema jsonschema accepts
        but fastjsonschema cannot compile, none known) jsonschema alone, slower but never wrong.
        A "no" is always confirmed by jsonschema, which names what failed."""
        check = self._passes
        if check is None:
            check = self._passes = self._compile()
        try:
            return check(event)
        except RecursionError:  # a schema that refers to itself without end: let jsonschema say
            return False

    def check(self, event: Any) -> None:
        """`passes`, raising JsonSchemaValueException when the event fails."""
        if not self.passes(event):
            raise fastjsonschema.JsonSchemaValueException("invalid")

    def _compile(self) -> Callable[[Any], bool]:
        lean = lean_compile(self.schema, date_time=is_date_time)
        if lean is not None:
            return lean
        try:
            fast = _fast(self.schema)
        except (fastjsonschema.JsonSchemaDefinitionException, RecursionError, ValueError, TypeError):
            slow: Callable[[Any], bool] = self.validator.is_valid
            return slow

        def passes(event: Any) -> bool:
            try:
                fast(event)
            except fastjsonschema.JsonSchemaValueException:
                return False
            return True
        return passes

    @property
    def validator(self) -> Draft7Validator:
        """The validator that names what failed (jsonschema), for the events that fail."""
        if self._validator is None:
            self._validator = _validator(self.schema)
        return self._validator


@dataclass
class CompiledPlan:
    plan_id: int
    version: int
    unplanned_events: str
    unplanned_properties: str
    on_violation: str
    forward_violations_to: int | None
    # (type, key) → {version: rule}; identify and group under key "".
    rules: dict[tuple[str, str], dict[int, CompiledRule]] = field(default_factory=dict)
    common: CompiledRule | None = None
    # (event type as sent, "track", key) → the rule's highest version: the look-up for an
    # event that names no version, without upper-casing or max() per event.
    latest: dict[tuple[str, str], CompiledRule] = field(default_factory=dict)
    # The event types (as sent) some rule names.
    ruled_types: frozenset[str] = frozenset()
    # A track event's name -> `quick(rule)` of its rule's highest version, filled as events
    # arrive (only names with a rule): the quick pass of most events in one look-up.
    track_quick: dict[str, Callable[[Any], bool]] = field(default_factory=dict)

    def quick(self, rule: CompiledRule) -> Callable[[Any], bool]:
        """Whether an event passes `rule`, has no property (or trait) the rule does not list,
        and passes the common rule: one function written by `lean_compile_all` for all three
        (a property outside the listed ones fails `additionalProperties: false` on the
        rule's section, as `_planned` reads it), else the three checks one after the other.
        Written the first time an event needs it. It may raise RecursionError (a schema that
        refers to itself without end), which the caller reads as "no"."""
        if rule.quick is None:
            schemas = [rule.schema]
            if rule.planned is not None:
                section = SECTIONS.get(rule.type, "properties")
                schemas.append({"properties": {section: {"properties": dict.fromkeys(rule.planned, True),
                                                         "additionalProperties": False}}})
            common = self.common
            if common is not None:
                schemas.append(common.schema)
            rule.quick = lean_compile_all(schemas, date_time=is_date_time) or _one_by_one(rule, common)
        return rule.quick

    def rule_for(self, event_type: str, key: str, version: Any) -> CompiledRule | None:
        """The rule of that version, or the highest version when the event names none (or
        one the plan has not)."""
        versions = self.rules.get((event_type.upper(), key))
        if not versions:
            return None
        if isinstance(version, int) and version in versions:
            return versions[version]
        return versions[max(versions)]


def _one_by_one(rule: CompiledRule, common: CompiledRule | None) -> Callable[[Any], bool]:
    """`CompiledPlan.quick` for rules outside the lean subset: each check compiled its own way."""
    section = SECTIONS.get(rule.type, "properties")

    def quick(event: Any) -> bool:
        if not rule.passes(event):
            return False
        values = event.get(section) if rule.planned is not None else None
        if isinstance(values, dict) and not values.keys() <= rule.planned:  # type: ignore[operator]
            return False
        return common is None or common.passes(event)
    return quick


def plan_compile(*, plan_id: int, version: int, rules: list[dict[str, Any]], unplanned_events: str,
                 unplanned_properties: str, on_violation: str, forward_violations_to: int | None) -> CompiledPlan:
    compiled = CompiledPlan(plan_id=plan_id, version=version, unplanned_events=unplanned_events,
                            unplanned_properties=unplanned_properties, on_violation=on_violation,
                            forward_violations_to=forward_violations_to)
    for rule in rules:
        schema = rule.get("jsonSchema", {})
        one = CompiledRule(type=rule["type"], key=rule.get("key") or "", version=int(rule.get("version", 1)),
                           schema=schema)
        if one.type == "COMMON":
            compiled.common = one
        else:
            compiled.rules.setdefault((one.type, one.key), {})[one.version] = one
    compiled.latest = {(kind.lower(), key): versions[max(versions)] for (kind, key), versions in compiled.rules.items()}
    compiled.ruled_types = frozenset(kind for kind, _ in compiled.latest)
    return compiled


def _planned(schema: Any, section: str | None) -> frozenset[str] | None:
    if section is None or not isinstance(schema, dict):
        return None
    inner = schema.get("properties", {}).get(section) if isinstance(schema.get("properties"), dict) else None
    if not isinstance(inner, dict) or not isinstance(inner.get("properties"), dict):
        return None
    return frozenset(inner["properties"])
