"""FQL's glob patterns (`match(field, "Experiment *")`), matched without catastrophic backtracking.

Syntax as Segment documents it: `*` any run of characters, `?` one character, `[abc]` and
`[a-z]` one character of a set (`[!a]` or `[^a]` one outside it), `\\x` the character x; the
pattern must match the whole string, case-sensitively.

How a pattern is matched, in time linear in the text for each piece (so at most
pieces times length, with both bounded):
  1. the pattern is cut at its `*`s into pieces that each match a fixed number of characters;
  2. each piece becomes a regular expression with no quantifier and no alternation (literal
     characters, `.` and character classes only), so the regex engine has nothing to
     backtrack into: trying it at one position costs at most its length;
  3. the first piece must match at the start, the last at the end, and each middle piece is
     taken at its leftmost match after the previous one. Leftmost is always safe: any match
     further right leaves less room for the pieces after it, never more.
A pattern without `*` is one fixed-length piece that must span the whole text.

Patterns longer than MAX_PATTERN or with more than MAX_STARS stars are refused when the filter
is saved: with both bounded, even an adversarial text costs microseconds, not seconds.
"""
from __future__ import annotations

import re
from collections.abc import Callable

MAX_PATTERN = 200
MAX_STARS = 8


class GlobError(ValueError):
    """A pattern refused at save time; the message says what to fix."""


def compile_glob(pattern: str) -> Callable[[str], bool]:
    if len(pattern) > MAX_PATTERN:
        raise GlobError(f"The pattern {pattern[:30]!r}… is longer than {MAX_PATTERN} characters: shorten it.")
    pieces = _pieces(pattern)
    if len(pieces) - 1 > MAX_STARS:
        raise GlobError(f"The pattern {pattern[:40]!r} has more than {MAX_STARS} '*': "
                        "patterns with many wildcards are slow to match; use fewer, or contains().")
    if not any(c in pattern for c in "?[\\"):
        return _literal(pattern.split("*"))
    compiled = [re.compile("".join(piece), re.DOTALL) if piece else None for piece in pieces]
    # Each token of a piece matches exactly one character.
    widths = [len(piece) for piece in pieces]
    if len(compiled) == 1:
        only = compiled[0]
        if only is None:
            return lambda text: text == ""
        return lambda text: only.fullmatch(text) is not None
    return lambda text: _match(text, compiled, widths)


def literal_prefix(pattern: str) -> str | None:
    """The text a pattern such as `bench*` (literal text, then its only `*`) asks a value to
    start with, which is all it asks: FQL's generated code tests it with `startswith`
    rather than a call of the compiled pattern. None for any other pattern."""
    head = pattern[:-1]
    if pattern.endswith("*") and len(pattern) <= MAX_PATTERN and not any(c in head for c in "*?[\\"):
        return head
    return None


def _literal(parts: list[str]) -> Callable[[str], bool]:
    """Stars between literal text only: the string methods, no regular expression at all."""
    parts = [parts[0], *[p for p in parts[1:-1] if p], parts[-1]] if len(parts) > 2 else parts
    if len(parts) == 1:
        whole = parts[0]
        return lambda text: text == whole
    head, middle, tail = parts[0], parts[1:-1], parts[-1]
    if not middle:
        return lambda text: len(text) >= len(head) + len(tail) and text.startswith(head) and text.endswith(tail)

    def match(text: str) -> bool:
        if len(text) < len(head) + len(tail) or not text.startswith(head) or not text.endswith(tail):
            return False
        start, end = len(head), len(text) - len(tail)
        for part in middle:
            found = text.find(part, start, end)
            if found < 0:
                return False
            start = found + len(part)
        return True
    return match


def _match(text: str, pieces: list[re.Pattern[str] | None], widths: list[int]) -> bool:
    first, last = pieces[0], pieces[-1]
    start, end = 0, len(text)
    if first is not None:
        if first.match(text) is None:
            return False
        start = widths[0]
    if last is not None:
        end = len(text) - widths[-1]
        if end < start or last.fullmatch(text, end) is None:
            return False
    for piece, width in zip(pieces[1:-1], widths[1:-1], strict=True):
        if piece is None:
            continue
        found = piece.search(text, start, end)
        if found is None:
            return False
        start = found.start() + width
    return start <= end


def _pieces(pattern: str) -> list[list[str]]:
    """Each star-separated piece as its tokens, each token the regex of one character."""
    pieces: list[list[str]] = []
    current: list[str] = []
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "*":
            pieces.append(current)
            current = []
            while index + 1 < len(pattern) and pattern[index + 1] == "*":
                index += 1  # ** is *
        elif char == "?":
            current.append(".")
        elif char == "\\":
            if index + 1 >= len(pattern):
                raise GlobError(f"The pattern {pattern[:40]!r} ends with a lone '\\': write '\\\\' for a backslash.")
            index += 1
            current.append(re.escape(pattern[index]))
        elif char == "[":
            index, klass = _character_class(pattern, index)
            current.append(klass)
        else:
            current.append(re.escape(char))
        index += 1
    pieces.append(current)
    return pieces


def _character_class(pattern: str, start: int) -> tuple[int, str]:
    """Read `[...]` starting at `start`; the index of its `]` and its regex."""
    index = start + 1
    negate = index < len(pattern) and pattern[index] in "!^"
    if negate:
        index += 1
    members: list[str] = []
    first = True
    while index < len(pattern) and (pattern[index] != "]" or first):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            index += 1
            members.append(re.escape(pattern[index]))
        elif char == "-" and members and index + 1 < len(pattern) and pattern[index + 1] != "]":
            members.append("-")
        else:
            members.append(re.escape(char) if char != "-" else r"\-")
        first = False
        index += 1
    if index >= len(pattern):
        raise GlobError(f"The pattern {pattern[:40]!r} opens '[' without closing it: add ']' or write '\\['.")
    _check_ranges(members, pattern)
    return index, "[" + ("^" if negate else "") + "".join(members) + "]"


def _check_ranges(members: list[str], pattern: str) -> None:
    for position, member in enumerate(members):
        if member == "-" and 0 < position < len(members) - 1:
            low, high = members[position - 1].lstrip("\\"), members[position + 1].lstrip("\\")
            if low > high:
                raise GlobError(f"The range [{low}-{high}] in {pattern[:40]!r} runs backwards: write [{high}-{low}].")
