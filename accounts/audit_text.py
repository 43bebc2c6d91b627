"""The audit log in words: what a row's action and details say, who it names, where it came from.

`details` is a dict written by whichever service recorded the row (integrations add many
actions). `sentence` turns it into one line a person can read; keys it does not know still
read as "key: value", so an action added later never shows a raw dict.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.utils import timezone

from accounts.audit import NAME_KEYS
from accounts.models import AuditAction, AuditEvent

# Words for keys shown as "key: value" (any other key: underscores become spaces).
KEY_WORDS = {
    "skipped_invalid": "skipped invalid lines",
    "events_stored": "events stored",
    "already_in_workspace": "already in the workspace",
    "max_age_hours": "maximum age (hours)",
    "dead_letters_24h": "dead letters in 24 h",
    "test_message_id": "test messageId",
    "start_when_checked": "start once checked",
    "previous_key": "previous write key",
    "key": "write key",
    "primary_key_id": "primary key",
    "re_encrypted": "re-encrypted",
    "retry_in": "retry in (s)",
    "recipients": "e-mailed",
    "segment_source_id": "Segment source",
    "segment_source": "Segment source",
    "segment_workspace": "Segment workspace",
    "segment_answer": "Segment answered",
    "token": "Public API token",
    "previous_token": "previous Public API token",
    "overlap_hours": "old secret valid for (hours)",
    "message_ids": "messageIds",
}
REGIONS = {"us": "US", "eu": "EU"}
TARGET_WORDS = {"importjob": "import", "ingestkey": "ingest key", "membership": "member"}
ISO_MOMENT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")


class Details:
    """The row's details, remembering which keys a sentence used so the rest can follow."""

    def __init__(self, raw: object) -> None:
        self.raw: dict[str, Any] = raw if isinstance(raw, dict) else {"details": raw}
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> str:
        """The value in words ("" when missing)."""
        self.used.add(key)
        return value_text(key, self.raw.get(key))

    def has(self, key: str) -> bool:
        return self.raw.get(key) not in (None, "", [], {})

    def flag(self, key: str) -> bool:
        self.used.add(key)
        return bool(self.raw.get(key))

    def rest(self) -> str:
        # The target's name is said by `target_text`, next to the target.
        return "; ".join(f"{key_text(key)}: {value_text(key, value)}" for key, value in self.raw.items()
                         if key not in self.used and key != "target_name" and value not in (None, "", [], {}))


def sentence(event: AuditEvent) -> str:
    """One readable line for the row's details, or "" when it has none."""
    details = Details(event.details)
    phrase = SENTENCES.get(event.action)
    text = phrase(details) if phrase else ""
    rest = details.rest()
    if text and rest:
        text = text.rstrip(".")
    return "; ".join(part for part in (text, rest) if part)


def target_text(event: AuditEvent) -> str:
    """What the row is about: "import #3 (events.csv)", "connection #5 (Production)"."""
    if not event.target_type or event.target_type in ("user", "workspace"):
        return ""  # the actor's own account or this workspace: nothing to add
    word = TARGET_WORDS.get(event.target_type, event.target_type)
    raw = event.details if isinstance(event.details, dict) else {}
    # A membership's e-mail already leads the sentence; other targets are named here.
    label = next((str(raw[key]) for key in NAME_KEYS if raw.get(key)), "")
    if not label and event.action == AuditAction.CONNECTION_RENAMED:
        label = str(raw.get("to") or "")  # a row from before names were recorded: the name it was given
    text = f"{word} #{event.target_id}"
    return f"{text} ({label})" if label else text


def key_text(key: str) -> str:
    return KEY_WORDS.get(key, key.replace("_", " "))


def value_text(key: str, value: object) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,}"
    if isinstance(value, list):
        shown = [value_text(key, item) for item in value[:5]]
        more = f" and {len(value) - 5:,} more" if len(value) > 5 else ""
        return ", ".join(shown) + more
    if isinstance(value, dict):
        return ", ".join(f"{key_text(k)} {value_text(k, v)}" for k, v in value.items() if v not in (None, ""))
    text = str(value)
    if key in ("region", "previous_region"):
        return REGIONS.get(text, text)
    if ISO_MOMENT.match(text):
        return moment_text(text)
    return text


def moment_text(iso: str) -> str:
    """"2 Dec 2026 14:03 UTC" for an ISO time; the text itself if it is not one."""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    if timezone.is_aware(at):
        at = timezone.localtime(at)
    return f"{at.day} {at:%b %Y %H:%M} {at.tzname() or ''}".rstrip()


def size_text(size: object) -> str:
    if not isinstance(size, int):
        return ""
    for unit, scale in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


# --- one sentence per action ----------------------------------------------------------------


def _quoted(text: str) -> str:
    return f"“{text}”" if text else ""


def _connection(d: Details) -> str:
    """“Production” (US, write key •••• abcd)."""
    name = _quoted(d["name"] or d["connection"])
    facts = ", ".join(part for part in (d["region"], f"write key {d['key']}" if d.has("key") else "") if part)
    return f"{name} ({facts})" if facts else name


def _retried_now(d: Details) -> str:
    """“Production” (US, write key •••• abcd): tried again at once after 9 failed requests, instead of at …"""
    text = f"{_connection(d)}: tried again at once after {_plural(d['failures'], 'failed request')}"
    return f"{text}, instead of at {d['was_due']}" if d.has("was_due") else text


def _plural(count: str, word: str) -> str:
    return f"{count} {word}" if count == "1" else f"{count} {word}s"


def _member(verb: str) -> Callable[[Details], str]:
    return lambda d: f"{d['email']} {verb} {d['role']}".strip() if d.has("role") else d["email"]


def _removed(d: Details) -> str:
    who = f"{d['email']} ({d['role']})" if d.has("role") else d["email"]
    return f"{who} left the workspace" if d.flag("left") else f"{who} was removed"


def _renamed(d: Details) -> str:
    return f"from {_quoted(d['from'])} to {_quoted(d['to'])}"


def _role_changed(d: Details) -> str:
    return f"{d['email']} from {d['from']} to {d['to']}"


def _key_replaced(d: Details) -> str:
    text = f"{_quoted(d['name'])}: write key {d['previous_key']} → {d['key']}"
    if d.has("previous_region") and d.raw.get("previous_region") != d.raw.get("region"):
        text += f", region {d['previous_region']} → {d['region']}"
    d.used.update({"region", "previous_region"})
    return text


def _region_changed(d: Details) -> str:
    d.used.add("key")
    return f"{_quoted(d['name'])}: region {d['previous_region']} → {d['region']}"


CHECK_TRIGGERS = {  # integrations.models.Trigger, in words that follow "checked"
    "created": "after the connection was created", "key_replaced": "after the write key was replaced",
    "region_changed": "after the region changed", "manual": "from the page", "scheduled": "daily",
    "operator": "by an operator",
}


def _checked(d: Details) -> str:
    trigger = CHECK_TRIGGERS.get(d["trigger"], d["trigger"].replace("_", " "))
    text = f"{d['outcome'].capitalize()}, checked {trigger}" if trigger else d["outcome"].capitalize()
    return f"{text}: {d['summary']}" if d.has("summary") else text


def _paused(d: Details) -> str:
    text = f"{_connection(d)}: {d['reason']}" if d.has("reason") else _connection(d)
    d.used.add("told")
    if "told" not in d.raw:
        return text  # written before pauses remembered who was told
    text = text.rstrip(".")
    if not d.has("told"):
        return text + "; not e-mailed (no check had passed yet)"
    count = len(d.raw["told"])
    return text + f"; e-mailed {count} {'owner or admin' if count == 1 else 'owners and admins'}"


def _expired(d: Details) -> str:
    return (f"{_plural(d['events'], 'undelivered event')} passed the maximum age of "
            f"{d['max_age_hours']} hours and became dead letters")


def _dead_letters_notified(d: Details) -> str:
    text = (f"{_plural(d['dead_letters_24h'], 'dead letter')} in 24 hours for {_quoted(d['name'])} "
            f"(alert threshold {d['threshold']})")
    d.used.update({"key", "region"})
    return text + _emailed(d)


def _recovered_notified(d: Details) -> str:
    after = {"paused": "being paused", "retrying": "failing"}.get(d["after"], d["after"])
    text = f"{_quoted(d['name'])} delivers again after {after} from {d['since']} until {d['until']}"
    d.used.update({"key", "region", "told"})
    if d.has("failed_requests"):
        text += f", {_plural(d['failed_requests'], 'failed request')}"
    if d.has("last_status"):
        text += f" (last answer {d['last_status']} {d['last_reply']})".replace(" )", ")")
    return text + _emailed(d)


def _emailed(d: Details) -> str:
    if not d.has("recipients"):
        return ""
    count = d["recipients"]
    return f"; e-mailed {count} {'owner or admin' if count == '1' else 'owners and admins'}"


def _selection(d: Details) -> str:
    if d.has("selection"):
        return f"{_plural(str(len(d.raw['selection'])), 'chosen dead letter')} (ids {d['selection']})"
    if d.has("filter"):
        return f"those matching {d['filter']}"
    return ""


def _replayed(d: Details) -> str:
    text = f"Replay #{d['replay']}: {_plural(d['dead_letters'], 'dead letter')} of {_quoted(d['connection'])}"
    matched, cap = d.raw.get("matched"), d.raw.get("cap")
    if isinstance(matched, int) and isinstance(cap, int) and matched > cap:
        text += f" (the first {d['cap']} of {d['matched']} matched)"
    d.used.update({"matched", "cap"})
    chosen = _selection(d)
    return f"{text}, {chosen}" if chosen else text


def _discarded(d: Details) -> str:
    text = f"{_plural(d['dead_letters'], 'dead letter')} of {_quoted(d['connection'])}"
    chosen = _selection(d)
    return f"{text}, {chosen}" if chosen else text


def _uploaded(d: Details) -> str:
    facts = ", ".join(part for part in (d["format"].upper(), size_text(d.raw.get("size"))) if part)
    d.used.add("size")
    text = f"{d['file']} ({facts})" if facts else d["file"]
    return text + ", to start once checked" if d.flag("start_when_checked") else text


def _started(d: Details) -> str:
    text = f"{d['file']}: {_plural(d['lines'], 'line')} to import"
    if d.has("skipped_invalid"):
        text += f", skipped {_plural(d['skipped_invalid'], 'invalid line')}"
    d.used.add("skipped_invalid")
    if d.has("chosen"):
        text += f" (started {d['chosen']})"
    return text


def _cancelled(d: Details) -> str:
    text = f"{d['file']} while {d['while'].replace('_', ' ')}; {_plural(d['events_stored'], 'event')} stored"
    return f"{text}; reason: {d['reason']}" if d.has("reason") else text


def _finished(d: Details) -> str:
    if d["outcome"] == "failed":
        return f"{d['file']} failed: {d['failure']}; {_plural(d['events_stored'], 'event')} stored"
    text = f"{d['file']}: {_plural(d['events_stored'], 'event')} stored"
    if d.has("already_in_workspace") and d.raw["already_in_workspace"]:
        text += f", {d['already_in_workspace']} already in the workspace"
    d.used.add("already_in_workspace")
    if d.has("skipped_invalid"):
        text += f", skipped {_plural(d['skipped_invalid'], 'invalid line')}"
    d.used.add("skipped_invalid")
    return text


def _sign_up_existing(d: Details) -> str:
    told = "a link to claim the account" if d.flag("invited") else "a reminder to sign in"
    return f"{d['email']}: its owner was e-mailed {told}"


SENTENCES: dict[str, Callable[[Details], str]] = {
    AuditAction.LOGIN_FAILED: lambda d: f"Tried {d['email']}",
    AuditAction.LOCKED_OUT: lambda d: f"{d['email']}, after repeated failed sign-ins",
    AuditAction.SIGN_UP_EXISTING: _sign_up_existing,
    AuditAction.PASSWORD_RESET_REQUESTED: lambda d: f"Link asked for {d['email']}",
    AuditAction.WORKSPACE_CREATED: lambda d: f"Named {_quoted(d['name'])}",
    AuditAction.WORKSPACE_RENAMED: _renamed,
    AuditAction.MEMBER_ADDED: _member("as"),
    AuditAction.MEMBER_INVITED: _member("invited as"),
    AuditAction.MEMBER_INVITATION_ACCEPTED: _member("chose a password and joined as"),
    AuditAction.MEMBER_ROLE_CHANGED: _role_changed,
    AuditAction.MEMBER_REMOVED: _removed,
    AuditAction.ACCESS_DENIED: lambda d: f"{d['method']} {d['path']}: {d['reason']}",
    AuditAction.CONNECTION_CREATED: _connection,
    AuditAction.CONNECTION_KEY_REPLACED: _key_replaced,
    AuditAction.CONNECTION_REGION_CHANGED: _region_changed,
    AuditAction.CONNECTION_RENAMED: _renamed,
    AuditAction.CONNECTION_ENABLED: _connection,
    AuditAction.CONNECTION_DISABLED: _connection,
    AuditAction.CONNECTION_DELETED: _connection,
    AuditAction.CONNECTION_CHECKED: _checked,
    AuditAction.CONNECTION_CHECK_THROTTLED: lambda d: f"Next check possible in {d['retry_in']} s",
    AuditAction.CONNECTION_PAUSED: _paused,
    AuditAction.CONNECTION_RESUMED: _connection,
    AuditAction.CONNECTION_RETRIED_NOW: _retried_now,
    AuditAction.CONNECTION_EVENTS_EXPIRED: _expired,
    AuditAction.CONNECTION_DEAD_LETTERS_NOTIFIED: _dead_letters_notified,
    AuditAction.CONNECTION_RECOVERED_NOTIFIED: _recovered_notified,
    AuditAction.DEAD_LETTERS_REPLAYED: _replayed,
    AuditAction.DEAD_LETTERS_DISCARDED: _discarded,
    AuditAction.IMPORT_UPLOADED: _uploaded,
    AuditAction.IMPORT_STARTED: _started,
    AuditAction.IMPORT_CANCELLED: _cancelled,
    AuditAction.IMPORT_FINISHED: _finished,
    AuditAction.INGEST_KEY_CREATED: lambda d: f"{_quoted(d['name'])} (ending {d['hint']})",
    AuditAction.INGEST_KEY_REVOKED: lambda d: f"{_quoted(d['name'])} (ending {d['hint']})",
    AuditAction.KEYS_ROTATED: lambda d: (f"Primary key {d['primary_key_id']}; {d['re_encrypted']} write keys "
                                         f"re-encrypted, {d['unreadable']} unreadable"),
}


# --- where it came from -----------------------------------------------------------------------

_BROWSERS = [  # the order matters: Edge and Opera also say Chrome, Chrome also says Safari
    ("Edge {}", re.compile(r"Edg(?:e|A|iOS)?/(\d+)")),
    ("Opera {}", re.compile(r"OPR/(\d+)")),
    ("Samsung Internet {}", re.compile(r"SamsungBrowser/(\d+)")),
    ("Firefox {}", re.compile(r"(?:Firefox|FxiOS)/(\d+)")),
    ("Chrome {}", re.compile(r"(?:Chrome|CriOS)/(\d+)")),
    ("Safari {}", re.compile(r"Version/(\d+)(?:\.\d+)*.*Safari/")),
    ("curl {}", re.compile(r"^curl/(\d+(?:\.\d+)?)")),
    # The library by its name: "Python 2.34" would read as a Python version.
    ("{} {}", re.compile(r"(python-(?:requests|httpx|urllib3))/(\d+(?:\.\d+)?)", re.I)),
]
_SYSTEMS = [
    ("Android", re.compile(r"Android")),
    ("iOS", re.compile(r"iPhone|iPad|iPod")),
    ("Windows", re.compile(r"Windows")),
    ("macOS", re.compile(r"Mac OS X|Macintosh")),
    ("ChromeOS", re.compile(r"CrOS")),
    ("Linux", re.compile(r"Linux|X11")),
]


def short_user_agent(user_agent: str) -> str:
    """"Chrome 131 on Linux" for a browser's User-Agent; the first 40 characters otherwise."""
    if not user_agent:
        return ""
    browser = next((name.format(*found.groups()) for name, pattern in _BROWSERS
                    if (found := pattern.search(user_agent))), "")
    system = next((name for name, pattern in _SYSTEMS if pattern.search(user_agent)), "")
    if "Headless" in user_agent and browser:
        browser = f"Headless {browser}"
    if browser:
        return f"{browser} on {system}" if system else browser
    return user_agent if len(user_agent) <= 40 else user_agent[:39] + "…"
