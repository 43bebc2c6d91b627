"""Segment's Filter Query Language (FQL), the condition language of destination filters.

The subset Segment documents: `and`, `or`, `!`, parentheses; `= != > >= < <=` and `in`;
strings in single or double quotes, numbers, `true`, `false`, `null`, lists `[..]`; dotted
field paths with `\\` escapes (`properties.product\\ 1.price`); and the functions
`contains length lowercase uppercase snakecase kebabcase titlecase typeof match bool string
number`. Matching is case-sensitive and null-safe as Segment's table says
(`contains(null, "x")` is false, `length(null)` is 0).

`compile_fql(text)` parses once (lark, LALR) and returns a `Condition`: a tree of closures,
written out as one Python expression and compiled to one function (no text of the condition
is written into the code: literals and paths are bound as names), so evaluating an event
costs a few dictionary look-ups and comparisons, never a re-parse nor a call per node.
`Condition.test(event)` is True only when the expression is exactly `true`; it raises
`FQLRuntimeError` when the expression cannot be evaluated (`number("abc")`, `lowercase(5)`),
and destination filters drop such an event, as Segment does.
"""
from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, VisitError

from integrations.segment.glob import GlobError, compile_glob, literal_prefix

MAX_FQL_LENGTH = 4_000
_BUILDS = count()

GRAMMAR = r"""
?start: or_expr
?or_expr: and_expr
        | or_expr "or" and_expr              -> or_
?and_expr: unary
         | and_expr "and" unary              -> and_
?unary: "!" unary                            -> not_
      | comparison
?comparison: operand
           | operand COMPARATOR operand      -> compare
           | operand "in" operand            -> in_
?operand: STRING                             -> string
        | NUMBER                             -> number
        | "true"                             -> true
        | "false"                            -> false
        | "null"                             -> null
        | "[" [operand ("," operand)*] "]"   -> list_
        | NAME "(" [or_expr ("," or_expr)*] ")" -> call
        | path
        | "(" or_expr ")"
path: NAME ("." SEGMENT)*

COMPARATOR: "=" | "!=" | ">=" | "<=" | ">" | "<"
STRING: /'(?:[^'\\]|\\.)*'/ | /"(?:[^"\\]|\\.)*"/
NUMBER: /-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/
NAME: /(?:[A-Za-z_$]|\\.)(?:[A-Za-z0-9_\-$]|\\.)*/
SEGMENT: /(?:[A-Za-z0-9_\-$]|\\.)+/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)

Value = Any
Evaluate = Callable[[dict[str, Any]], Value]


class FQLSyntaxError(ValueError):
    """The text is not FQL we understand; the message says where and what to fix."""


class FQLRuntimeError(ValueError):
    """The expression could not be evaluated on one event (Segment drops such an event)."""


@dataclass(frozen=True)
class Condition:
    text: str
    evaluate: Evaluate
    paths: frozenset[str]
    # The expression `evaluate` returns (over the event `e`), and the names it uses, unique to
    # this condition but for the module's helpers: code evaluating several conditions can
    # write them in (see destination_filters.Staged). None when `evaluate` is not generated.
    source: str | None = None
    names: dict[str, Any] = field(default_factory=dict, compare=False)
    # True when evaluating it can never raise FQLRuntimeError (paths, literals, comparisons,
    # `in` and fixed-pattern `match`, no converting function): a filter whose outcome does
    # not depend on its value need not evaluate it at all.
    safe: bool = False

    def test(self, event: dict[str, Any]) -> bool:
        return self.evaluate(event) is True


def compile_fql(text: str, *, generated: bool = True) -> Condition:
    """Parse and compile; FQLSyntaxError with a message fit for a form when it does not parse.
    The condition is evaluated by one generated function (a call per node of the tree costs
    more than the node's work); `generated=False` keeps the tree of closures it is written
    from, which tests hold it to."""
    text = text.strip()
    if not text:
        raise FQLSyntaxError("Write a condition, for example: type = \"track\" and event = \"Order Completed\".")
    if len(text) > MAX_FQL_LENGTH:
        raise FQLSyntaxError(f"The condition is longer than {MAX_FQL_LENGTH:,} characters: shorten it.")
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as error:
        raise FQLSyntaxError(_syntax_message(text, error)) from None
    except LarkError as error:  # pragma: no cover - any other parser failure
        raise FQLSyntaxError(f"The condition does not parse: {error}") from None
    builder = _Builder()
    try:
        evaluate = builder.transform(tree)
    except VisitError as error:
        if isinstance(error.orig_exc, FQLSyntaxError):
            raise error.orig_exc from None
        raise
    safe = id(evaluate) in builder.safe
    if not generated:
        return Condition(text, evaluate, frozenset(builder.paths), safe=safe)
    function, source = builder.generated(evaluate)
    return Condition(text, function, frozenset(builder.paths), source, builder.names if source else {}, safe)


def _syntax_message(text: str, error: UnexpectedInput) -> str:
    column = getattr(error, "column", None)
    where = f" at character {column}" if isinstance(column, int) and column > 0 else ""
    if isinstance(error, UnexpectedEOF):
        return "The condition ends too early: is a quote, a bracket or a value missing at the end?"
    if isinstance(error, UnexpectedCharacters):
        position = error.pos_in_stream or 0
        char = text[position] if 0 <= position < len(text) else ""
        return f"Unexpected {char!r}{where}: quote text values (\"Order Completed\") and use = != > >= < <= in."
    token = getattr(error, "token", None)
    shown = f"{token!s}" if token is not None and str(token) else "the end"
    if shown == "the end":
        return "The condition ends too early: is a quote, a bracket or a value missing at the end?"
    return f"Unexpected {shown!r}{where}: check the operators (and, or, !) and the parentheses."


# --- evaluation helpers -------------------------------------------------------------------


def _kind(value: Value) -> str:
    """FQL's type names."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def _equal(left: Value, right: Value) -> bool:
    """Same FQL type and strictly equal (1 is not true, "1" is not 1)."""
    kind = _kind(left)
    if kind != _kind(right):
        return False
    if kind == "list":
        return len(left) == len(right) and all(_equal(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


def _number(value: Value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}
# The same comparisons as written in generated code (see _Builder.generated).
_OPERATORS = {">": ">", ">=": ">=", "<": "<", "<=": "<="}


def _unescape_path_segment(segment: str) -> str:
    return re.sub(r"\\(.)", r"\1", segment)


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


def lookup(event: dict[str, Any], keys: tuple[str, ...]) -> Value:
    """The value at a path; None (FQL's null) when any step is missing."""
    value: Any = event
    for key in keys:
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdecimal() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
        if value is None:
            return None
    return value


def path_keys(path: str) -> tuple[str, ...]:
    """`properties.product\\ 1.price` as its keys; the empty path is the event itself."""
    if not path:
        return ()
    return tuple(_unescape_path_segment(part) for part in re.split(r"(?<!\\)\.", path))


# --- functions ----------------------------------------------------------------------------


def _string_arg(name: str, value: Value) -> str:
    if not isinstance(value, str):
        raise FQLRuntimeError(f"{name}() needs a string, got {_kind(value)}")
    return value


def _fn_contains(s: Value, sub: Value) -> bool:
    if s is None:
        return False
    return _string_arg("contains", sub) in _string_arg("contains", s)


def _fn_length(value: Value) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, list):
        return len(value)
    raise FQLRuntimeError(f"length() needs a list or a string, got {_kind(value)}")


def _string_fn(name: str, change: Callable[[str], str]) -> Callable[[Value], Value]:
    def run(value: Value) -> Value:
        return None if value is None else change(_string_arg(name, value))
    return run


def _fn_bool(value: Value) -> bool:
    if isinstance(value, str):
        return value.lower() not in ("", "false", "0")
    return bool(value)


def _fn_string(value: Value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ",".join(_fn_string(item) for item in value) + "]"
    raise FQLRuntimeError("string() cannot convert an object")


def _fn_number(value: Value) -> float | int:
    if _number(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        try:
            parsed = float(value)
        except ValueError:
            raise FQLRuntimeError(f"number() cannot read {value[:40]!r}") from None
        return int(parsed) if parsed.is_integer() and "." not in value and "e" not in value.lower() else parsed
    raise FQLRuntimeError(f"number() needs a number or a string, got {_kind(value)}")


@functools.lru_cache(maxsize=256)
def _dynamic_glob(pattern: str) -> Callable[[str], bool]:
    try:
        return compile_glob(pattern)
    except GlobError as error:
        raise FQLRuntimeError(str(error)) from None


FUNCTIONS: dict[str, tuple[int, Callable[..., Value]]] = {
    "contains": (2, _fn_contains),
    "length": (1, _fn_length),
    "lowercase": (1, _string_fn("lowercase", str.lower)),
    "uppercase": (1, _string_fn("uppercase", str.upper)),
    "snakecase": (1, _string_fn("snakecase", lambda s: s.replace(" ", "_"))),
    "kebabcase": (1, _string_fn("kebabcase", lambda s: s.replace(" ", "-"))),
    "titlecase": (1, _string_fn("titlecase", str.title)),
    "typeof": (1, _kind),
    "bool": (1, _fn_bool),
    "string": (1, _fn_string),
    "number": (1, _fn_number),
    "match": (2, lambda s, pattern: False),  # compiled specially in _Builder.call
}


# --- the tree to closures -----------------------------------------------------------------


class _Constant:
    """A literal: the same value whatever the event (so `match` can compile its pattern once)."""

    __slots__ = ("value",)

    def __init__(self, value: Value) -> None:
        self.value = value

    def __call__(self, event: dict[str, Any]) -> Value:
        return self.value


def _equal_to_constant(side: Evaluate, other: Evaluate) -> Evaluate | None:
    """`side = "literal"` without the general comparison: the constant's own type test and
    ==. None when `other` is not a literal of a simple type."""
    if not isinstance(other, _Constant):
        return None
    constant = other.value
    if constant is None or isinstance(constant, bool):
        return lambda event: side(event) is constant
    if isinstance(constant, str):
        return lambda event: (value := side(event)).__class__ is str and value == constant
    if isinstance(constant, (int, float)):
        return lambda event: (value := side(event)).__class__ in (int, float) and value == constant
    return None


def _strings_listed(haystack: Evaluate) -> frozenset[str] | None:
    """The strings of a literal list of strings only (`["track", "page"]`), else None."""
    if isinstance(haystack, _ListConstant) and all(isinstance(item, str) for item in haystack.values):
        return frozenset(haystack.values)
    return None


class _ListConstant:
    """A list literal whose items are all literals."""

    __slots__ = ("values",)

    def __init__(self, values: list[Value]) -> None:
        self.values = values

    def __call__(self, event: dict[str, Any]) -> Value:
        return list(self.values)


class _Builder(Transformer[Token, Evaluate]):
    """Turns the parse tree into closures, bottom up; `paths` collects the fields read.

    Each closure that has a plain Python expression doing exactly what it does records it
    (`_inline`), its children written into it; `generated` makes the whole condition one
    function from those (see `compile_fql`)."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: set[str] = set()
        self.sources: dict[int, str] = {}  # id(closure) -> its expression over the event `e`
        self.kept: list[Evaluate] = []  # every closure with a source, so no id is reused
        self.booleans: set[int] = set()  # ids of the closures that always give True or False
        self.safe: set[int] = set()  # ids of the closures that never raise FQLRuntimeError
        self.names: dict[str, Any] = {"lookup": lookup, "_equal": _equal, "_number": _number,
                                      "_fn_contains": _fn_contains}
        self.temps = 0
        self.prefix = f"q{next(_BUILDS)}_"  # no two conditions' names are the same

    # --- the generated function ---------------------------------------------------------

    def _inline(self, closure: Evaluate, source: str, *, boolean: bool = True,
                safe: tuple[Evaluate, ...] | None = None) -> Evaluate:
        """Record `closure`'s expression; `boolean`: it only ever gives True or False; `safe`:
        it never raises FQLRuntimeError if none of these nodes does (None: it may raise)."""
        self.sources[id(closure)] = source
        self.kept.append(closure)
        if boolean:
            self.booleans.add(id(closure))
        if safe is not None and all(id(part) in self.safe for part in safe):
            self.safe.add(id(closure))
        return closure

    def _is_true(self, closure: Evaluate) -> str:
        """`closure(event) is True`, written without the test when it can only be a bool."""
        source = self._source(closure)
        return source if id(closure) in self.booleans else f"{source} is True"

    def _source(self, closure: Evaluate) -> str:
        """The expression for a node: its own, or a call of its closure."""
        known = self.sources.get(id(closure))
        return known if known is not None else f"{self._name(closure)}(e)"

    def _name(self, value: Any) -> str:
        """A name in the generated code's namespace bound to `value` (no text of the
        condition is ever written into the code: literals are bound, like functions)."""
        name = f"{self.prefix}k{len(self.names)}"
        self.names[name] = value
        return name

    def _temp(self) -> str:
        self.temps += 1
        return f"{self.prefix}t{self.temps}"

    def generated(self, root: Evaluate) -> tuple[Evaluate, str | None]:
        """`root` as one function of the event, and the expression it returns: the same
        values and the same errors, with no call per node. The closure itself (and None)
        when nothing could be written out or the expression nests deeper than Python compiles."""
        source = self.sources.get(id(root))
        if source is None:
            return root, None
        try:
            code = compile(f"def condition(e):\n    return {source}\n", "<fql>", "exec")
        except (SyntaxError, RecursionError, MemoryError):
            return root, None
        namespace = dict(self.names)
        exec(code, namespace)  # noqa: S102 - only names this builder made (see _name)
        function: Evaluate = namespace["condition"]
        return function, source

    # --- nodes --------------------------------------------------------------------------

    def string(self, items: list[Token]) -> Evaluate:
        return self._constant(_unquote(str(items[0])))

    def number(self, items: list[Token]) -> Evaluate:
        text = str(items[0])
        return self._constant(float(text) if any(c in text for c in ".eE") else int(text))

    def true(self, items: list[Token]) -> Evaluate:
        return self._constant(True)

    def false(self, items: list[Token]) -> Evaluate:
        return self._constant(False)

    def null(self, items: list[Token]) -> Evaluate:
        return self._constant(None)

    def _constant(self, value: Value) -> Evaluate:
        constant = _Constant(value)
        return self._inline(constant, self._name(value), boolean=isinstance(value, bool), safe=())

    def list_(self, items: list[Evaluate]) -> Evaluate:
        parts = [item for item in items if item is not None]
        if all(isinstance(part, _Constant) for part in parts):
            listed = _ListConstant([part.value for part in parts])  # type: ignore[attr-defined]
            self.kept.append(listed)
            self.safe.add(id(listed))
            return listed
        return lambda event: [part(event) for part in parts]

    def path(self, items: list[Token]) -> Evaluate:
        raw = ".".join(str(item) for item in items)
        self.paths.add(raw)
        keys = tuple(_unescape_path_segment(str(item)) for item in items)
        names = [self._name(key) for key in keys]
        every = self._name(keys)
        safe = ()  # `lookup` never raises: a list index is a key of decimal digits, which int() reads
        if len(keys) == 1:
            key = keys[0]
            return self._inline(lambda event: event.get(key), f"e.get({names[0]})", boolean=False, safe=safe)
        if len(keys) == 2:
            first, second = keys

            def two(event: dict[str, Any]) -> Value:
                inner = event.get(first)
                return inner.get(second) if isinstance(inner, dict) else lookup(event, keys)
            # An object that is not exactly a dict goes to `lookup`, which reads it as `two` does.
            a = self._temp()
            return self._inline(two, f"({a}.get({names[1]}) if ({a} := e.get({names[0]})).__class__ is dict "
                                     f"else lookup(e, {every}))", boolean=False, safe=safe)
        if len(keys) == 3:
            first, second, third = keys

            def three(event: dict[str, Any]) -> Value:
                outer = event.get(first)
                inner = outer.get(second) if outer.__class__ is dict else None
                return inner.get(third) if inner.__class__ is dict else lookup(event, keys)
            a, b = self._temp(), self._temp()
            inner = f"({a}.get({names[1]}) if ({a} := e.get({names[0]})).__class__ is dict else None)"
            return self._inline(three, f"({b}.get({names[2]}) if ({b} := {inner}).__class__ is dict "
                                       f"else lookup(e, {every}))", boolean=False, safe=safe)
        return self._inline(lambda event: lookup(event, keys), f"lookup(e, {every})", boolean=False, safe=safe)

    @v_args(inline=True)
    def compare(self, left: Evaluate, operator: Token, right: Evaluate) -> Evaluate:
        op = str(operator)
        if op in ("=", "!="):
            same = self._equal_to_constant(left, right) or self._equal_to_constant(right, left)
            if same is not None:
                if op == "=":
                    return same
                return self._inline(lambda event: not same(event), f"(not {self._source(same)})", safe=(same,))
            test = f"_equal({self._source(left)}, {self._source(right)})"
            if op == "=":
                return self._inline(lambda event: _equal(left(event), right(event)), test, safe=(left, right))
            return self._inline(lambda event: not _equal(left(event), right(event)), f"(not {test})",
                                safe=(left, right))
        order = _ORDER[op]

        def ordered(event: dict[str, Any]) -> bool:
            a, b = left(event), right(event)
            return _number(a) and _number(b) and order(a, b)
        a, b = self._temp(), self._temp()
        if isinstance(right, _Constant) and _number(right.value):  # `properties.revenue > 100`: a literal
            # cannot raise, so the left side alone is evaluated first; a JSON number is an
            # exact int or float, and anything else is asked `_number`.
            number = f"(({a} := {self._source(left)}).__class__ is int or {a}.__class__ is float or _number({a}))"
            return self._inline(ordered, f"({number} and {a} {_OPERATORS[op]} {self._name(right.value)})",
                                safe=(left,))
        # Both sides are evaluated before either is looked at (either may raise).
        return self._inline(ordered, f"((({a} := {self._source(left)}), ({b} := {self._source(right)})) "
                                     f"and _number({a}) and _number({b}) and {a} {_OPERATORS[op]} {b})",
                            safe=(left, right))

    def _equal_to_constant(self, side: Evaluate, other: Evaluate) -> Evaluate | None:
        """`side = "literal"` without the general comparison: the constant's own type test and
        ==. None when `other` is not a literal of a simple type."""
        same = _equal_to_constant(side, other)
        if same is None:
            return None
        constant, value = self._name(other.value), self._source(side)  # type: ignore[attr-defined]
        if isinstance(other.value, str):  # type: ignore[attr-defined]
            t = self._temp()
            return self._inline(same, f"(({t} := {value}).__class__ is str and {t} == {constant})", safe=(side,))
        if isinstance(other.value, (int, float)) and not isinstance(other.value, bool):  # type: ignore[attr-defined]
            t = self._temp()
            return self._inline(same, f"(({t} := {value}).__class__ in (int, float) and {t} == {constant})",
                                safe=(side,))
        return self._inline(same, f"({value} is {constant})", safe=(side,))

    @v_args(inline=True)
    def in_(self, needle: Evaluate, haystack: Evaluate) -> Evaluate:
        listed = _strings_listed(haystack)
        if listed is not None:  # `field in ["a", "b"]`: one set look-up
            t = self._temp()
            return self._inline(lambda event: (value := needle(event)).__class__ is str and value in listed,
                                f"(({t} := {self._source(needle)}).__class__ is str and {t} in {self._name(listed)})",
                                safe=(needle,))

        def contained(event: dict[str, Any]) -> bool:
            values = haystack(event)
            if not isinstance(values, list):
                return False
            value = needle(event)
            return any(_equal(value, item) for item in values)
        if id(needle) in self.safe and id(haystack) in self.safe:
            self.kept.append(contained)
            self.safe.add(id(contained))
        return contained

    def not_(self, items: list[Evaluate]) -> Evaluate:
        inner = items[0]
        test = self._source(inner)
        return self._inline(lambda event: inner(event) is not True,
                            f"(not {test})" if id(inner) in self.booleans else f"({test} is not True)", safe=(inner,))

    @v_args(inline=True)
    def and_(self, left: Evaluate, right: Evaluate) -> Evaluate:
        return self._inline(lambda event: left(event) is True and right(event) is True,
                            f"({self._is_true(left)} and {self._is_true(right)})", safe=(left, right))

    @v_args(inline=True)
    def or_(self, left: Evaluate, right: Evaluate) -> Evaluate:
        return self._inline(lambda event: left(event) is True or right(event) is True,
                            f"({self._is_true(left)} or {self._is_true(right)})", safe=(left, right))

    def call(self, items: list[Any]) -> Evaluate:
        name = str(items[0])
        args: list[Evaluate] = [item for item in items[1:] if item is not None]
        if name not in FUNCTIONS:
            known = ", ".join(sorted(FUNCTIONS))
            raise FQLSyntaxError(f"Unknown function {name}(): FQL has {known}.")
        arity, function = FUNCTIONS[name]
        if len(args) != arity:
            raise FQLSyntaxError(f"{name}() takes {arity} argument{'s' if arity != 1 else ''}, not {len(args)}.")
        if name == "match":
            return self._match(items, args)
        called = self._name(function)
        if arity == 1:
            (only,) = args
            return self._inline(lambda event: function(only(event)), f"{called}({self._source(only)})", boolean=False)
        first, second = args
        if name == "contains" and isinstance(second, _Constant) and isinstance(second.value, str):
            sub = second.value

            def contains_constant(event: dict[str, Any]) -> bool:
                value = first(event)
                if value.__class__ is str:
                    return sub in value
                return value is not None and _fn_contains(value, sub)
            t, text = self._temp(), self._name(sub)
            return self._inline(contains_constant, f"({text} in {t} if ({t} := {self._source(first)}).__class__ is str "
                                                   f"else ({t} is not None and _fn_contains({t}, {text})))")
        return self._inline(lambda event: function(first(event), second(event)),
                            f"{called}({self._source(first)}, {self._source(second)})", boolean=False)

    def _match(self, items: list[Any], args: list[Evaluate]) -> Evaluate:
        subject, pattern_of = args
        if isinstance(pattern_of, _Constant) and isinstance(pattern_of.value, str):
            literal = pattern_of.value
            try:
                matcher = compile_glob(literal)
            except GlobError as error:
                raise FQLSyntaxError(str(error)) from None

            def fixed(event: dict[str, Any]) -> bool:
                value = subject(event)
                return isinstance(value, str) and matcher(value)
            t, prefix = self._temp(), literal_prefix(literal)
            test = f"{t}.startswith({self._name(prefix)})" if prefix is not None else f"{self._name(matcher)}({t})"
            return self._inline(fixed, f"(isinstance({t} := {self._source(subject)}, str) and {test})",
                                safe=(subject,))

        def dynamic(event: dict[str, Any]) -> bool:
            value, pattern = subject(event), pattern_of(event)
            if value is None:
                return False
            return _dynamic_glob(_string_arg("match", pattern))(_string_arg("match", value))
        return dynamic
