"""The sentence form of a filter's condition: up to a few "field operator value" rows joined
by all / any / none, written out as FQL (the one form that is stored and compiled).

    Drop events where [all ▾] of: [properties.email] [contains] [@test.com]

becomes `contains(properties.email, "@test.com")`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

OPERATORS = {
    "is": "is",
    "is_not": "is not",
    "in": "is one of",
    "contains": "contains",
    "matches": "glob matches",
    "exists": "exists",
    "not_exists": "does not exist",
    "gt": "is greater than",
    "lt": "is less than",
}
JOINS = {"all": "all", "any": "any", "none": "none"}
# Characters a field name may hold without a backslash (Segment's FQL reference).
_PLAIN = re.compile(r"[A-Za-z0-9_\-$]")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class SentenceInvalid(ValueError):
    """A row that cannot become FQL; the message says which and why."""


@dataclass(frozen=True)
class Row:
    field: str
    operator: str
    value: str = ""


def fql_path(field: str) -> str:
    """A dotted field as an FQL path: characters outside Segment's plain set get a backslash."""
    parts = [part for part in field.strip().split(".")]
    if not field.strip() or any(not part for part in parts):
        raise SentenceInvalid(f"{field!r} is not a field: write it like properties.plan or context.page.path.")
    escaped = ["".join(c if _PLAIN.fullmatch(c) else "\\" + c for c in part) for part in parts]
    if escaped[0][0].isdigit():
        escaped[0] = "\\" + escaped[0]
    return ".".join(escaped)


def literal(value: str, *, numeric: bool = False) -> str:
    """A typed value as FQL: numbers, true/false/null as themselves, anything else a string
    (quote it, "42", to compare with the text 42)."""
    text = value.strip()
    if numeric:
        if not _NUMBER.fullmatch(text):
            raise SentenceInvalid(f"{value!r} is not a number: greater and less than compare numbers.")
        return text
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return orjson.dumps(text[1:-1]).decode()
    if _NUMBER.fullmatch(text) or text in ("true", "false", "null"):
        return text
    return orjson.dumps(value).decode()


def row_fql(row: Row) -> str:
    path = fql_path(row.field)
    op = row.operator
    if op == "exists":
        return f"{path} != null"
    if op == "not_exists":
        return f"{path} = null"
    if op in ("is", "is_not"):
        return f"{path} {'=' if op == 'is' else '!='} {literal(row.value)}"
    if op == "in":
        items = [item for item in (part.strip() for part in row.value.split(",")) if item]
        if not items:
            raise SentenceInvalid(f"List the values for {row.field}, separated by commas.")
        return f"{path} in [{', '.join(literal(item) for item in items)}]"
    if op == "contains":
        return f"contains({path}, {orjson.dumps(row.value).decode()})"
    if op == "matches":
        return f"match({path}, {orjson.dumps(row.value).decode()})"
    if op in ("gt", "lt"):
        return f"{path} {'>' if op == 'gt' else '<'} {literal(row.value, numeric=True)}"
    raise SentenceInvalid(f"Unknown operator {op!r}.")


def sentence_fql(rows: list[Row], join: str = "all") -> str:
    """All rows joined: all → and, any → or, none → !(… or …)."""
    parts = [row_fql(row) for row in rows]
    if not parts:
        raise SentenceInvalid("Add a condition: a field, what it should be, and a value.")
    if join == "all":
        return " and ".join(_grouped(p, len(parts)) for p in parts)
    either = " or ".join(_grouped(p, len(parts)) for p in parts)
    if join == "any":
        return either
    if join == "none":
        return f"!({either})"
    raise SentenceInvalid(f"Unknown join {join!r}: all, any or none.")


def _grouped(part: str, count: int) -> str:
    return part if count == 1 else f"({part})"


def filter_sentence(*, action: str, percent: float | None, sample_path: str, fields: dict[str, list[str]]) -> str:
    """What a saved filter does, as the list shows it before its FQL: "Sample 10% (by userId)
    of events where", "Drop properties.email from events where"."""
    named = ", ".join(f"{path}.{name}" if path else name for path, names in fields.items() for name in names)
    if action == "sample":
        share = f"{(percent or 0) * 100:.3g}%"
        return f"Keep {share}{f' (by {sample_path})' if sample_path else ''} of events where"
    return {
        "drop": "Drop events where",
        "only_send": "Only send events where",
        "drop_properties": f"Drop {named} from events where",
        "allow_properties": f"Allow only {named} on events where",
    }.get(action, "Events where")
