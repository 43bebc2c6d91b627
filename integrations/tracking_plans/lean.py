"""A rule's JSON Schema as a plain Python yes/no check, for the keywords tracking plans use.

Enforcement asks one question of almost every event: does it pass? `lean_compile(schema)`
answers it about three times faster than fastjsonschema's code by writing one Python function
per schema (and one per `$ref` target or combinator branch) that tests exactly what the
schema says and nothing else: no key sets built, no error text prepared. It returns None for
a schema using anything outside the subset below, and the caller uses fastjsonschema instead.
A call costs about as much as a test, so the common shapes are written in place, not called:
a small `$ref` target with no `$ref` of its own (`#/definitions/money`), a combinator branch
listing required names (`anyOf: [{required: [userId]}, {required: [anonymousId]}]`), a few
required names as `in` tests, an `enum` after a `type` as one set look-up; and
`lean_compile_all` writes several schemas (an event's rule and the common rule) as one function.

The rules it keeps:
1. It may only say "passes" when jsonschema (draft-07, the authority that names violations)
   would: every keyword jsonschema validates with is either handled below with jsonschema's
   semantics (bool is no number, 1 equals 1.0 in `enum`, `$ref` hides its siblings, `pattern`
   is Python's `re.search`, a keyword ignores values of other types) or makes the whole schema
   unsupported. Words jsonschema does not validate with (`title`, `description`, `$comment`,
   `default`, …) are ignored as jsonschema ignores them. Saying "fails" wrongly would only cost
   time: the caller asks jsonschema what is wrong, and an event it finds nothing wrong with passes.
2. No text from the schema is ever written into the generated code: property names, patterns
   and enum values are bound as constants `c0, c1, …` of the function's namespace, and every
   name in the code is one this module made.
3. Subset: type, properties, required, additionalProperties (without patternProperties),
   enum and const of strings, numbers, booleans and null, pattern, minLength, maxLength,
   minimum, maximum, exclusiveMinimum, exclusiveMaximum, items (one schema), minItems,
   maxItems, minProperties, maxProperties, format date-time, allOf, anyOf, oneOf, not,
   if/then/else, and `$ref` to a JSON pointer inside the schema (`#`, `#/definitions/money`).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import unquote

from jsonschema import Draft7Validator

# The keywords jsonschema's draft-07 validator checks anything with; any other key is a note.
VALIDATING = frozenset(Draft7Validator.VALIDATORS)
SUPPORTED = frozenset({
    "$ref", "type", "properties", "required", "additionalProperties", "enum", "const", "pattern", "minLength",
    "maxLength", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "items", "minItems", "maxItems",
    "minProperties", "maxProperties", "format", "allOf", "anyOf", "oneOf", "not", "if",
})
# Deeper than this, a property's schema gets a function of its own rather than nested code.
MAX_INLINE_DEPTH = 12
MAX_FUNCTIONS = 2000
# Up to this many required names are tested with `in` one by one, more as a set.
MAX_IN_TESTS = 4

# How each JSON type is recognised (exact classes: what a JSON parser makes; anything else
# fails the fast check and is judged by jsonschema, never passed by mistake).
_IS = {
    "object": "{v}.__class__ is dict",
    "array": "{v}.__class__ is list",
    "string": "{v}.__class__ is str",
    "boolean": "{v}.__class__ is bool",
    "null": "{v} is None",
    "number": "({v}.__class__ is int or {v}.__class__ is float)",
    "integer": "({v}.__class__ is int or ({v}.__class__ is float and {v}.is_integer()))",
}
# When a keyword of that type applies (broad: a subclass still meets the keyword).
_APPLIES = {
    "object": "isinstance({v}, dict)",
    "array": "isinstance({v}, list)",
    "string": "isinstance({v}, str)",
    "number": "(isinstance({v}, (int, float)) and not isinstance({v}, bool))",
}
_KEYWORD_TYPE = {
    "properties": "object", "required": "object", "additionalProperties": "object", "minProperties": "object",
    "maxProperties": "object", "pattern": "string", "minLength": "string", "maxLength": "string",
    "format": "string", "minimum": "number", "maximum": "number", "exclusiveMinimum": "number",
    "exclusiveMaximum": "number", "items": "array", "minItems": "array", "maxItems": "array",
}


class Unsupported(Exception):
    """The schema uses something this module does not check; use fastjsonschema."""


def lean_compile(schema: Any, *, date_time: Callable[[object], bool]) -> Callable[[Any], bool] | None:
    """A function telling whether an instance passes `schema`, or None when it is outside
    the subset (see the module). `date_time` is the test of `format: date-time`."""
    return lean_compile_all([schema], date_time=date_time)


def lean_compile_all(schemas: Sequence[Any], *, date_time: Callable[[object], bool]) -> Callable[[Any], bool] | None:
    """One function telling whether an instance passes every one of `schemas`, each the root
    its own `$ref`s point into (an event's rule and the plan's common rule: one call, not one
    per rule); None when any is outside the subset."""
    try:
        return _Writer(date_time).build(schemas)
    except (Unsupported, RecursionError):
        return None


class _Writer:
    def __init__(self, date_time: Callable[[object], bool]) -> None:
        self.root: Any = None  # the schema `$ref`s are resolved in while a schema is written
        self.constants: dict[str, Any] = {"date_time": date_time, "MISSING": _MISSING}
        self.functions: list[str] = []
        self.by_target: dict[tuple[int, int], str] = {}  # (id(root), id(schema node)) -> its function's name
        self.pending: list[tuple[str, Any, Any]] = []  # (function name, schema, its root)
        self.counter = 0

    def build(self, roots: Sequence[Any]) -> Callable[[Any], bool]:
        for root in roots:
            if _has_key(root, "$id"):  # it would change what a `$ref` points at
                raise Unsupported("$id")
        if len(roots) == 1:
            self.root = roots[0]
            entry = self.function_for(self.root)
        else:  # every root written one after the other in one function
            entry, lines = "every", ["def every(x0):"]
            for root in roots:
                self.root = root
                self.block(root, "x0", lines, depth=1)
            lines.append("    return True")
            self.functions.append("\n".join(lines))
        while self.pending:
            name, schema, self.root = self.pending.pop()
            self.functions.append(self.write_function(name, schema))
            if len(self.functions) > MAX_FUNCTIONS:
                raise Unsupported("too many functions")
        namespace = dict(self.constants)
        exec("\n\n".join(self.functions), namespace)  # noqa: S102 - only this module's names (rule 2)
        check: Callable[[Any], bool] = namespace[entry]
        return check

    # Names ---------------------------------------------------------------------------------

    def constant(self, value: Any) -> str:
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def variable(self) -> str:
        self.counter += 1
        return f"x{self.counter}"

    def function_for(self, schema: Any) -> str:
        """The name of the function checking `schema` (one per schema node, so a recursive
        `$ref` calls the function being written)."""
        known = self.by_target.get((id(self.root), id(schema)))
        if known is not None:
            return known
        name = f"f{len(self.by_target)}"
        self.by_target[(id(self.root), id(schema))] = name
        self.pending.append((name, schema, self.root))
        return name

    # Code ----------------------------------------------------------------------------------

    def write_function(self, name: str, schema: Any) -> str:
        lines = [f"def {name}(x0):"]
        self.block(schema, "x0", lines, depth=1)
        lines.append("    return True")
        return "\n".join(lines)

    def block(self, schema: Any, v: str, lines: list[str], *, depth: int) -> None:
        """Statements that `return False` when `v` fails `schema`."""
        pad = "    " * depth
        if schema is True:
            return
        if schema is False:
            lines.append(f"{pad}return False")
            return
        if not isinstance(schema, dict):
            raise Unsupported("a schema that is not an object")
        if "$ref" in schema:  # draft-07: the reference alone counts
            target = self.resolve(schema["$ref"])
            if depth < MAX_INLINE_DEPTH and isinstance(target, dict) and _small_leaf(target):
                self.block(target, v, lines, depth=depth)  # written in place: no call (see _small_leaf)
            else:
                lines.append(f"{pad}if not {self.function_for(target)}({v}): return False")
            return
        for keyword in schema:
            if keyword in VALIDATING and keyword not in SUPPORTED:
                raise Unsupported(keyword)
        known = self.type_check(schema.get("type"), v, lines, pad)
        for keyword, kind in _KEYWORD_TYPE.items():
            if keyword not in schema:
                continue
            if known == kind:
                self.keyword(keyword, schema, v, lines, depth=depth)
            elif known is None or (known == "integer" and kind == "number"):
                inner: list[str] = []
                self.keyword(keyword, schema, v, inner, depth=depth + 1)
                if inner:  # (a keyword may have nothing to test: `properties` all `true`)
                    lines += [f"{pad}if {_APPLIES[kind].format(v=v)}:", *inner]
            # else: the instance is of another type, the keyword never applies.
        for keyword in ("enum", "const"):
            if keyword in schema:
                values = schema[keyword] if keyword == "enum" else [schema[keyword]]
                lines.append(f"{pad}if not ({self.one_of_values(values, v, known)}): return False")
        for keyword in ("allOf", "anyOf", "oneOf"):
            if keyword in schema:
                branches = schema[keyword]
                if not isinstance(branches, list) or not branches:
                    raise Unsupported(keyword)
                calls = [self.test_for(branch, v, known) for branch in branches]
                if keyword == "allOf":
                    test = " and ".join(calls)
                elif keyword == "anyOf":
                    test = " or ".join(calls)
                else:
                    test = f"[{', '.join(calls)}].count(True) == 1"
                lines.append(f"{pad}if not ({test}): return False")
        if "not" in schema:
            lines.append(f"{pad}if {self.test_for(schema['not'], v, known)}: return False")
        if "if" in schema and ("then" in schema or "else" in schema):
            condition = self.test_for(schema["if"], v, known)
            for branch, test in (("then", condition), ("else", f"not {condition}")):
                if branch in schema:
                    lines.append(f"{pad}if {test} and not {self.test_for(schema[branch], v, known)}: return False")

    def type_check(self, types: Any, v: str, lines: list[str], pad: str) -> str | None:
        """Test `type`; the one type the instance then has, if one."""
        if types is None:
            return None
        listed = [types] if isinstance(types, str) else types
        if not isinstance(listed, list) or not listed or not all(t in _IS for t in listed):
            raise Unsupported("type")
        test = " or ".join(_IS[t].format(v=v) for t in listed)
        lines.append(f"{pad}if not ({test}): return False")
        return listed[0] if len(listed) == 1 else None

    def keyword(self, keyword: str, schema: dict[str, Any], v: str, lines: list[str], *, depth: int) -> None:
        pad = "    " * depth
        value = schema[keyword]
        if keyword == "properties":
            self.properties(value, v, lines, depth=depth)
        elif keyword == "required":
            if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
                raise Unsupported("required")
            if value:
                lines.append(f"{pad}if not {self.all_present(value, v)}: return False")
        elif keyword == "additionalProperties":
            if "patternProperties" in schema:
                raise Unsupported("additionalProperties with patternProperties")
            listed = schema.get("properties", {})
            if not isinstance(listed, dict):
                raise Unsupported("properties")
            known = self.constant(frozenset(listed))
            if value is False:
                lines.append(f"{pad}if not {v}.keys() <= {known}: return False")
            elif value is not True:
                check = self.function_for(value)
                lines.append(f"{pad}for k in {v}:")
                lines.append(f"{pad}    if k not in {known} and not {check}({v}[k]): return False")
        elif keyword in ("minProperties", "maxProperties", "minLength", "maxLength", "minItems", "maxItems"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise Unsupported(keyword)
            operator = "<" if keyword.startswith("min") else ">"
            lines.append(f"{pad}if len({v}) {operator} {int(value)}: return False")
        elif keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Unsupported(keyword)
            operator = {"minimum": "<", "maximum": ">", "exclusiveMinimum": "<=", "exclusiveMaximum": ">="}[keyword]
            lines.append(f"{pad}if {v} {operator} {self.constant(value)}: return False")
        elif keyword == "pattern":
            if not isinstance(value, str):
                raise Unsupported("pattern")
            try:
                search = re.compile(value).search
            except re.error:
                raise Unsupported("pattern") from None
            lines.append(f"{pad}if not {self.constant(search)}({v}): return False")
        elif keyword == "format":
            if value != "date-time":
                raise Unsupported(f"format {value!r}")
            lines.append(f"{pad}if not date_time({v}): return False")
        elif keyword == "items":
            if not isinstance(value, (dict, bool)):
                raise Unsupported("items as a list")
            if value is not True:
                check = self.function_for(value)
                lines.append(f"{pad}for y in {v}:")
                lines.append(f"{pad}    if not {check}(y): return False")

    def properties(self, listed: Any, v: str, lines: list[str], *, depth: int) -> None:
        if not isinstance(listed, dict):
            raise Unsupported("properties")
        pad = "    " * depth
        for name, subschema in listed.items():
            if subschema is True or subschema == {}:
                continue
            child = self.variable()
            lines.append(f"{pad}{child} = {v}.get({self.constant(name)}, MISSING)")
            lines.append(f"{pad}if {child} is not MISSING:")
            if depth >= MAX_INLINE_DEPTH or not isinstance(subschema, dict):
                lines.append(f"{pad}    if not {self.function_for(subschema)}({child}): return False")
                continue
            inner: list[str] = []
            self.block(subschema, child, inner, depth=depth + 1)
            if inner:
                lines += inner
            else:  # nothing to test (notes only): not even the look-up
                del lines[-2:]

    def one_of_values(self, values: Any, v: str, known: str | None = None) -> str:
        """A test that `v` equals one of `values` as jsonschema compares them. When `type` has
        already made `v` a str (or an int or float), only the values of its kind can match,
        and the test is one set look-up."""
        if not isinstance(values, list):
            raise Unsupported("enum")
        strings = frozenset(x for x in values if isinstance(x, str))
        numbers = frozenset(x for x in values if isinstance(x, (int, float)) and not isinstance(x, bool))
        if not all(x is None or isinstance(x, (str, bool, int, float)) for x in values):
            raise Unsupported("enum of lists or objects")
        if known == "string":
            return f"{v} in {self.constant(strings)}" if strings else "False"
        if known in ("number", "integer"):
            return f"{v} in {self.constant(numbers)}" if numbers else "False"
        tests: list[str] = []
        if strings:
            tests.append(f"({v}.__class__ is str and {v} in {self.constant(strings)})")
        if numbers:
            tests.append(f"(({v}.__class__ is int or {v}.__class__ is float) and {v} in {self.constant(numbers)})")
        for special in (None, True, False):
            if any(x is special for x in values):
                tests.append(f"{v} is {special}")
        return " or ".join(tests) or "False"

    def all_present(self, names: list[str], v: str) -> str:
        """A test that the object `v` has every one of `names`: a few `in`s (no keys view
        made), or a subset test for more."""
        if len(set(names)) <= MAX_IN_TESTS:
            return "(" + " and ".join(f"{self.constant(name)} in {v}" for name in dict.fromkeys(names)) + ")"
        return f"({self.constant(frozenset(names))} <= {v}.keys())"

    def test_for(self, schema: Any, v: str, known: str | None) -> str:
        """An expression true when `v` passes `schema`: written out for a schema that only
        lists required names (`anyOf: [{required: [userId]}, {required: [anonymousId]}]`),
        else a call of the schema's function. `known`: the type `v` already has, if one."""
        if schema is True or schema is False:
            return str(schema)
        if isinstance(schema, dict) and all(key == "required" or key not in VALIDATING for key in schema):
            names = schema.get("required", [])
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise Unsupported("required")
            if not names:
                return "True"
            test = self.all_present(names, v)
            return test if known == "object" else f"(not isinstance({v}, dict) or {test})"
        return f"{self.function_for(schema)}({v})"

    def resolve(self, ref: Any) -> Any:
        """The node a `#…` JSON pointer names inside the root schema."""
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise Unsupported("$ref")
        pointer = unquote(ref[1:])
        node = self.root
        if pointer == "":
            return node
        if not pointer.startswith("/"):
            raise Unsupported("$ref to an anchor")
        for part in pointer[1:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                raise Unsupported("$ref to nothing")
        return node


def _small_leaf(schema: Any, budget: int = 32) -> bool:
    """Whether a `$ref`'s target may be written where it is referred to, rather than called:
    at most `budget` keys and items in all, none of them a `$ref`. So inlining never nests,
    and costs at most `budget` per reference (a schema referring to one large definition a
    thousand times still compiles to small code)."""
    stack, seen = [schema], 0
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "$ref" in node:
                return False
            seen += len(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            seen += len(node)
            stack.extend(node)
        if seen > budget:
            return False
    return True


def _has_key(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return name in node or any(_has_key(value, name) for value in node.values())
    if isinstance(node, list):
        return any(_has_key(value, name) for value in node)
    return False


class _Missing:
    __slots__ = ()


_MISSING = _Missing()
