"""Mappings: how the JSON a product posts becomes Segment calls.

A mapping is a JSON document:

    {"routes": [{"when": "type == 'conversation.started'",
                 "type": "track",
                 "event": "Conversation Started",
                 "userId": {"from": "data.visitor.user_id"},
                 "anonymousId": {"from": "data.visitor.id"},
                 "properties": {"conversation_id": {"from": "data.conversation.id"}, "source": "chat"},
                 "timestamp": {"from": "created_at"}}],
     "unmatched": "refuse"}

Every route whose `when` (a JMESPath expression, true by JMESPath's rules; no `when`: always)
holds for the payload adds one call, in order. A field is a fixed value, or `{"from": "<JMESPath>"}`
read from the payload (a null result leaves the field out). `properties`, `traits` and
`context` are `{"from": ...}` for a whole object, or an object whose values are each fixed or
`{"from": ...}`. A timestamp read as a number is taken as Unix seconds (milliseconds when it
is that large). A payload no route matches is refused (422) unless `"unmatched": "ignore"`,
which answers 2xx and stores nothing.

Expressions are compiled once per mapping (`compile_mapping`), so a request only evaluates;
the common shapes (`a.b.c`, `@`, `a.b == 'text'`) are evaluated by plain dictionary lookups
with JMESPath's meaning (a missing key or a non-object is null), several times faster than
the interpreter, which takes every other expression.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult

TYPES = ("identify", "track", "page", "screen", "group", "alias")
ID_FIELDS = ("userId", "anonymousId", "groupId", "previousId")
TEXT_FIELDS = ("event", "name")
OBJECT_FIELDS = ("properties", "traits", "context")
FIELDS = ("type", *ID_FIELDS, *TEXT_FIELDS, *OBJECT_FIELDS, "timestamp")
MAX_ROUTES = 20
MAX_OBJECT_KEYS = 100
# Above this a numeric timestamp is read as milliseconds (1e11 s is the year 5138).
MILLISECONDS_FROM = 100_000_000_000


class MappingError(ValueError):
    """The mapping document cannot be used; `where` names the part at fault."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}" if where else message)
        self.where, self.message = where, message


class Unmappable(Exception):
    """This payload cannot become Segment calls with this mapping (answered 422)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


Getter = Callable[[Any], Any]


@dataclass(frozen=True)
class Expression:
    """A compiled JMESPath expression, with a fast evaluator when its shape allows one."""

    text: str
    parsed: ParsedResult
    fast: Getter | None = None

    def search(self, payload: Any) -> Any:
        return self.fast(payload) if self.fast is not None else self.parsed.search(payload)


@dataclass(frozen=True)
class Route:
    index: int
    when: Expression | None
    when_text: str
    fields: tuple[tuple[str, Getter], ...]

    def matches(self, payload: Any) -> bool:
        if self.when is None:
            return True
        return _truthy(_search(self.when, payload, f"routes[{self.index}].when"))


@dataclass(frozen=True)
class Mapping:
    routes: tuple[Route, ...]
    ignore_unmatched: bool = False

    def apply(self, payload: Any) -> list[dict[str, Any]]:
        """The Segment calls the payload becomes (each before normalisation), in route order.
        An empty list means no route matched and the mapping ignores such payloads; raises
        Unmappable otherwise, or when an expression fails on this payload."""
        calls = [_call(route, payload) for route in self.routes if route.matches(payload)]
        if not calls and not self.ignore_unmatched:
            kind = payload.get("type") if isinstance(payload, dict) else None
            hint = f" (its type is {str(kind)[:60]!r})" if isinstance(kind, str | int) else ""
            raise Unmappable("no_route", f"No route of the mapping matches this payload{hint}: add one, or set "
                             "unmatched payloads to be ignored.")
        return calls


def compile_mapping(document: Any) -> Mapping:
    """Check a mapping document and compile its expressions; MappingError says what to fix."""
    if not isinstance(document, dict):
        raise MappingError("", "A mapping is a JSON object with a list of routes.")
    unknown = set(document) - {"routes", "unmatched"}
    if unknown:
        raise MappingError("", f"Unknown key {sorted(unknown)[0]!r}: a mapping has `routes` and `unmatched`.")
    routes = document.get("routes")
    if not isinstance(routes, list) or not routes:
        raise MappingError("routes", "Give at least one route (a list of objects).")
    if len(routes) > MAX_ROUTES:
        raise MappingError("routes", f"At most {MAX_ROUTES} routes.")
    unmatched = document.get("unmatched", "refuse")
    if unmatched not in ("refuse", "ignore"):
        raise MappingError("unmatched", "Use \"refuse\" (answer 422) or \"ignore\" (answer 2xx, store nothing).")
    return Mapping(tuple(_route(i, r) for i, r in enumerate(routes)), ignore_unmatched=unmatched == "ignore")


def _route(index: int, route: Any) -> Route:
    where = f"routes[{index}]"
    if not isinstance(route, dict):
        raise MappingError(where, "A route is a JSON object.")
    unknown = set(route) - {"when", *FIELDS}
    if unknown:
        raise MappingError(f"{where}.{sorted(unknown)[0]}", f"Unknown field: use when, {', '.join(FIELDS)}.")
    when_text = route.get("when")
    when = None
    if when_text is not None:
        if not isinstance(when_text, str) or not when_text.strip():
            raise MappingError(f"{where}.when", "`when` is a JMESPath expression, e.g. type == 'contact.created'.")
        when = _compile(when_text, f"{where}.when")
    if "type" not in route:
        raise MappingError(f"{where}.type", f"Say which call it becomes: {', '.join(TYPES)}.")
    if isinstance(route["type"], str) and route["type"] not in TYPES:
        raise MappingError(f"{where}.type", f"Unknown call {route['type'][:40]!r}: use one of {', '.join(TYPES)}.")
    fields = tuple((name, _getter(route[name], f"{where}.{name}", name)) for name in FIELDS if name in route)
    return Route(index, when, when_text or "", fields)


def _getter(spec: Any, where: str, name: str) -> Getter:
    expression = _expression(spec, where)
    if expression is not None:
        return lambda payload: _search(expression, payload, where)
    if name in OBJECT_FIELDS:
        if not isinstance(spec, dict):
            raise MappingError(where, f"{name} is {{\"from\": \"<JMESPath>\"}} or an object of fixed or "
                               "{\"from\": ...} values.")
        if len(spec) > MAX_OBJECT_KEYS:
            raise MappingError(where, f"At most {MAX_OBJECT_KEYS} keys.")
        parts = [(str(key), _getter(value, f"{where}.{key}", "")) for key, value in spec.items()]
        return lambda payload: {key: value for key, get in parts if (value := get(payload)) is not None}
    return lambda payload: spec


def _expression(spec: Any, where: str) -> Expression | None:
    if not (isinstance(spec, dict) and "from" in spec):
        return None
    if set(spec) != {"from"} or not isinstance(spec["from"], str) or not spec["from"].strip():
        raise MappingError(where, "Write {\"from\": \"<JMESPath expression>\"} with nothing else in it.")
    return _compile(spec["from"], where)


def _compile(text: str, where: str) -> Expression:
    try:
        parsed = jmespath.compile(text)
    except JMESPathError as error:
        raise MappingError(where, f"`{text[:80]}` is not a JMESPath expression: {_first_line(error)}") from None
    return Expression(text, parsed, _fast(parsed.parsed))


def _fast(node: dict[str, Any]) -> Getter | None:
    """A plain-Python evaluator for `@`, `a`, `a.b.c` and `<path> == / != '<text>'`, or None."""
    kind = node["type"]
    if kind == "current":
        return lambda payload: payload
    keys = _field_path(node)
    if keys is not None:
        return lambda payload: _walk(payload, keys)
    if kind == "comparator" and node["value"] in ("eq", "ne"):
        left, right = node["children"]
        path = _field_path(left)
        if path is None or right["type"] != "literal" or not isinstance(right["value"], str):
            return None
        text, equal = right["value"], node["value"] == "eq"
        # JMESPath compares by type and value: a non-string never equals a string.
        return lambda payload: (_walk(payload, path) == text) is equal
    return None


def _field_path(node: dict[str, Any]) -> tuple[str, ...] | None:
    if node["type"] == "field":
        return (node["value"],)
    if node["type"] == "subexpression" and all(child["type"] == "field" for child in node["children"]):
        return tuple(child["value"] for child in node["children"])
    return None


def _walk(payload: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload


def _search(expression: Expression, payload: Any, where: str) -> Any:
    try:
        return expression.search(payload)
    except (JMESPathError, TypeError, ValueError) as error:
        raise Unmappable("expression_failed", f"{where}: `{expression.text[:80]}` failed on this payload: "
                         f"{_first_line(error)}") from None


def _call(route: Route, payload: Any) -> dict[str, Any]:
    call: dict[str, Any] = {}
    for name, get in route.fields:
        value = get(payload)
        if value is None:
            continue
        call[name] = _checked(name, value, f"routes[{route.index}].{name}")
    if call.get("type") not in TYPES:
        raise Unmappable("unknown_type", f"routes[{route.index}].type gave {str(call.get('type'))[:40]!r}: "
                         f"the call must be one of {', '.join(TYPES)}.")
    return call


def _checked(name: str, value: Any, where: str) -> Any:
    """The value as Segment wants the field, or Unmappable saying why it cannot be."""
    if name in ID_FIELDS or name in TEXT_FIELDS or name == "type":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise Unmappable("wrong_value", f"{where} gave {_kind(value)}, not text.")
        return value if isinstance(value, str) else _number_text(value)
    if name in OBJECT_FIELDS:
        if not isinstance(value, dict):
            raise Unmappable("wrong_value", f"{where} gave {_kind(value)}, not an object.")
        return value
    if name == "timestamp":
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = value / 1000 if abs(value) >= MILLISECONDS_FROM else value
            try:
                return datetime.fromtimestamp(seconds, tz=UTC).isoformat()
            except (OverflowError, OSError, ValueError):
                raise Unmappable("wrong_value", f"{where} gave {value!r}, which is not a time.") from None
        if not isinstance(value, str):
            raise Unmappable("wrong_value", f"{where} gave {_kind(value)}, not an ISO-8601 time.")
    return value


def _number_text(value: int | float) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _truthy(value: Any) -> bool:
    """JMESPath's truth: false, null, and empty strings, lists and objects are false."""
    return not (value is None or value is False or value in ("", [], {}))


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "true/false"
    return repr(value)[:40]


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or ["invalid"])[0][:160]
