"""Names people type travel on: into e-mail subjects, audit rows, pages and logs.

A line break in a workspace name made every e-mail about that workspace fail (Django refuses
a header with CR or LF: BadHeaderError), and invisible bidirectional overrides let a name read
differently from what it is. So every form and service that sets a name checks it here, and
every subject built from a stored name goes through `one_line`, for rows saved before the check.

Refused: control characters (Unicode category Cc: CR, LF, TAB, NUL, DEL, C1 codes), the line
and paragraph separators (Zl, Zp) and the bidirectional formatting characters. Other format
characters (Cf) stay allowed: the zero-width joiners are part of emoji and of some scripts.
"""
from __future__ import annotations

import unicodedata

from django.core.exceptions import ValidationError

NAME_CHARACTERS_MESSAGE = "Names cannot contain line breaks or control characters."

_BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f"  # Arabic letter mark, left-to-right and right-to-left marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)
_REFUSED_CATEGORIES = frozenset({"Cc", "Zl", "Zp"})


def is_refused_character(char: str) -> bool:
    return unicodedata.category(char) in _REFUSED_CATEGORIES or char in _BIDI_CONTROLS


def name_problem(value: str) -> str | None:
    """The message to show next to a name field, or None when the name is fine."""
    return NAME_CHARACTERS_MESSAGE if any(is_refused_character(char) for char in value) else None


def validate_name(value: str) -> None:
    """A form and model field validator for names."""
    if name_problem(value):
        raise ValidationError(NAME_CHARACTERS_MESSAGE, code="control_characters")


def name_cleaned(value: str | None, *, missing: str, max_length: int | None = None) -> str:
    """A name as typed, stripped, for a service to store; else a ValidationError on `name`.

    Refused, in this order: an empty name (`missing` says what to type), one longer than
    `max_length`, one with a refused character (`name_problem`).
    """
    name = (value or "").strip()
    if not name:
        raise ValidationError({"name": missing})
    if max_length is not None and len(name) > max_length:
        raise ValidationError({"name": f"Keep the name to {max_length} characters or fewer (it has {len(name)})."})
    if problem := name_problem(name):
        raise ValidationError({"name": problem})
    return name


def one_line(text: str) -> str:
    """`text` safe for an e-mail header: refused characters become spaces, runs of white space
    one space. For subjects built from names stored before they were checked."""
    cleaned = "".join(" " if is_refused_character(char) else char for char in text)
    return " ".join(cleaned.split())
