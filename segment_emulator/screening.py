"""The hot loop: decide the fate of each event of a request whose key and region are right.

Two ways to the same verdict. `screen_clean_batch` checks a whole batch with C-level
iteration (map, all, set operations) and succeeds only when every event is accepted, which
is what a healthy relay sends. Anything else falls back to `screen_each`, which finds the
reason for each dropped event. Both must agree on what "accepted" means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter
from typing import Any

from . import rules
from .payloads import Event

_type, _user_id, _anonymous_id, _message_id = (
    attrgetter(name) for name in ("type", "user_id", "anonymous_id", "message_id")
)
# Alias is the one type without userId/anonymousId rules; its batches take the slow path.
_FAST_TYPES = rules.EVENT_TYPES - {"alias"}
# The field each type needs besides userId or anonymousId.
_REQUIRED = {"track": attrgetter("event"), "group": attrgetter("group_id")}


@dataclass(slots=True)
class Screening:
    accepted_ids: list[str]
    dropped: dict[str, int] = field(default_factory=dict)
    dropped_at: list[int] = field(default_factory=list)
    assigned_ids: dict[int, str] = field(default_factory=dict)


def screen(events: list[Any], implied_type: str | None, seen: set[str]) -> Screening:
    """Check required fields and messageIds; add accepted ids to the dedupe set `seen`.

    Runs only once the request is sure to be answered 200, so writing accepted ids straight
    into the dedupe store is safe, and it makes a repeat within the same batch a duplicate.
    """
    if implied_type is None and len(events) > 1:
        accepted_ids = screen_clean_batch(events, seen)
        if accepted_ids is not None:
            return Screening(accepted_ids)
    return screen_each(events, implied_type, seen)


def screen_clean_batch(events: list[Any], seen: set[str]) -> list[str] | None:
    """The messageIds when every event of the batch is accepted (and adds them to `seen`);
    None, with nothing changed, when at least one is not."""
    try:
        ids = _clean_batch_ids(events)
        if ids is None or not seen.isdisjoint(ids):
            return None
    except (AttributeError, TypeError):
        # A field read from an item that is not an object, len() of a messageId that is
        # not a string, or hashing a type or messageId that is an array: all mean "not
        # clean", and all are raised before `seen` is touched. Cheaper than checking every
        # item's type up front.
        return None
    remembered = len(seen)
    seen.update(ids)
    if len(seen) - remembered != len(ids):
        # A repeat within the batch. None of its ids were in `seen` before, so all can go.
        seen.difference_update(ids)
        return None
    return ids


def _clean_batch_ids(events: list[Any]) -> list[Any] | None:
    """The batch's messageIds if its events pass every field rule, else None."""
    types: list[Any] = list(map(_type, events))
    kinds = set(types)
    if not kinds <= _FAST_TYPES or not _identified(events):
        return None
    for kind in kinds & _REQUIRED.keys():
        of_kind = events if len(kinds) == 1 else compress(events, map(kind.__eq__, types))
        if not all(map(_REQUIRED[kind], of_kind)):
            return None
    ids: list[Any] = list(map(_message_id, events))
    if "" in ids or max(map(len, ids)) > rules.MAX_MESSAGE_ID_CHARS:
        return None
    return ids


def _identified(events: list[Any]) -> bool:
    """Whether every event has a userId or an anonymousId."""
    user_ids = list(map(_user_id, events))
    if all(user_ids):
        return True
    anonymous_ids = map(_anonymous_id, events)
    return all(user_id or anonymous_id for user_id, anonymous_id in zip(user_ids, anonymous_ids, strict=True))


def screen_each(events: list[Any], implied_type: str | None, seen: set[str]) -> Screening:
    """Event by event, with the reason each dropped one was dropped for."""
    verdict = Screening([])
    keep, add, missing_field = verdict.accepted_ids.append, seen.add, rules.missing_field
    for index, event in enumerate(events):
        if type(event) is Event:
            reason = missing_field(implied_type or event.type, event)
        else:
            reason = rules.NOT_AN_OBJECT
        if reason is None:
            message_id = event.message_id
            if message_id is None or message_id == "":
                message_id = verdict.assigned_ids[index] = rules.new_message_id()
            if type(message_id) is not str or len(message_id) > rules.MAX_MESSAGE_ID_CHARS:
                reason = rules.INVALID_MESSAGE_ID
            elif message_id in seen:
                reason = rules.DUPLICATE
            else:
                add(message_id)
                keep(message_id)
                continue
        verdict.dropped[reason] = verdict.dropped.get(reason, 0) + 1
        verdict.dropped_at.append(index)
    return verdict
