"""What Segment's Public API manages, as the emulator keeps it: one Segment workspace per
region, its bearer tokens with roles, labels, and sources made from the registered write keys.

Pure state, no I/O: `public_api.py` answers HTTP from it. Every registered write key is a
source of its region's workspace (named after the key unless named explicitly); deleting the
source forgets the key too, so the tracking API then treats it as unknown, as Segment would.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

from . import rules

# A token of a "Workspace Owner" does everything; "source_admin" (a member with Source Admin)
# reads write keys, labels sources and deletes them; "read_only" (Source Read-only) reads, and
# gets every source's `writeKeys` empty, as Segment leaves them for such tokens.
ROLES: Final = ("owner", "source_admin", "read_only")
DEFAULT_LABELS: Final = (("environment", "production"), ("environment", "staging"), ("team", "growth"))
SECRET_MASK: Final = "••••"


class WorkspaceError(ValueError):
    """A control-API request that cannot be honoured; the message is shown to the caller."""


@dataclass(slots=True)
class Token:
    token: str
    role: str
    region: str

    def may(self, action: str) -> bool:
        if action == "read":
            return True
        if action in ("label_source", "delete_source", "read_write_keys"):
            return self.role in ("owner", "source_admin")
        return self.role == "owner"  # create labels


@dataclass(slots=True)
class Source:
    id: str
    slug: str
    name: str
    region: str
    write_key: str
    enabled: bool = True
    labels: list[tuple[str, str]] = field(default_factory=list)

    def as_json(self, token: Token) -> dict[str, Any]:
        return {
            "id": self.id,
            "slug": self.slug,
            "name": self.name,
            "enabled": self.enabled,
            "workspaceId": workspace_id(self.region),
            "writeKeys": [self.write_key] if token.may("read_write_keys") else [],
            "metadata": {"id": "xRhTS3ZjvLT3yeZ9SeRyQS", "slug": "http-api", "name": "HTTP API"},
            "labels": [{"key": k, "value": v} for k, v in self.labels],
        }


def workspace_id(region: str) -> str:
    return f"ws{region.upper()}emulated0001"


def workspace_json(region: str) -> dict[str, Any]:
    return {"id": workspace_id(region), "name": f"Emulated Segment ({region.upper()})",
            "slug": f"emulated-{region}"}


def source_id(write_key: str) -> str:
    """Stable per key, so a source keeps its id across emulator restarts."""
    return "src" + hashlib.sha256(write_key.encode()).hexdigest()[:19]


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "source"


class SegmentWorkspaces:
    """Tokens, labels and sources of both regions' workspaces."""

    def __init__(self) -> None:
        self.tokens: dict[str, Token] = {}
        self.names: dict[str, str] = {}  # write key -> source name given explicitly
        self.sources: dict[str, Source] = {}  # by id, in creation order
        self.labels: dict[str, list[tuple[str, str]]] = {r: list(DEFAULT_LABELS) for r in rules.REGIONS}
        # Tracking requests answered 200, per write key and UTC day: Segment's API-call usage.
        self.daily_calls: Counter[tuple[str, str]] = Counter()

    # Control -----------------------------------------------------------------------------

    def add_token(self, token: str, role: str, region: str) -> Token:
        if not token or len(token) < 8:
            raise WorkspaceError("a token has at least 8 characters")
        if role not in ROLES:
            raise WorkspaceError(f"role must be one of {', '.join(ROLES)}")
        if region not in rules.REGIONS:
            raise WorkspaceError(f"region must be one of {', '.join(rules.REGIONS)}")
        self.tokens[token] = Token(token, role, region)
        return self.tokens[token]

    def revoke_token(self, token: str) -> bool:
        return self.tokens.pop(token, None) is not None

    def name_source(self, write_key: str, name: str) -> None:
        self.names[write_key] = name
        for source in self.sources.values():
            if source.write_key == write_key:
                source.name, source.slug = name, slugify(name)

    def sync(self, keys: dict[str, str]) -> None:
        """Make every registered key a source (in its region), and drop sources whose key went."""
        known = {s.write_key for s in self.sources.values()}
        for write_key, region in keys.items():
            if write_key not in known:
                name = self.names.get(write_key) or f"HTTP API {write_key[-4:]}"
                source = Source(source_id(write_key), slugify(name), name, region, write_key)
                self.sources[source.id] = source
        for source_key in [s.id for s in self.sources.values() if keys.get(s.write_key) != s.region]:
            del self.sources[source_key]

    def clear(self) -> None:
        self.__init__()  # type: ignore[misc]

    # Reads -------------------------------------------------------------------------------

    def sources_of(self, region: str) -> list[Source]:
        return [s for s in self.sources.values() if s.region == region]

    def source(self, region: str, source_id: str) -> Source | None:
        source = self.sources.get(source_id)
        return source if source is not None and source.region == region else None

    def count_call(self, write_key: str, day: str) -> None:
        self.daily_calls[(write_key, day)] += 1


def destinations_of(source: Source) -> list[dict[str, Any]]:
    """Two destinations per source, the second disabled; secret settings masked as Segment
    masks them (`••••` and the last 4 characters)."""
    seed = hashlib.sha256(source.id.encode()).hexdigest()
    return [
        {
            "id": f"dst{seed[:12]}ga4",
            "name": "Google Analytics 4",
            "enabled": source.enabled,
            "sourceId": source.id,
            "metadata": {"id": "60ad61f9ff47a16b8fb7b5d9", "slug": "actions-google-analytics-4",
                         "name": "Google Analytics 4 Cloud"},
            "settings": {"measurementId": f"G-{seed[12:20].upper()}", "apiSecret": f"{SECRET_MASK}{seed[20:24]}"},
        },
        {
            "id": f"dst{seed[:12]}amp",
            "name": "Amplitude (paused)",
            "enabled": False,
            "sourceId": source.id,
            "metadata": {"id": "5f7dd6d21ad74f3842b1fc47", "slug": "actions-amplitude", "name": "Actions Amplitude"},
            "settings": {"apiKey": f"{SECRET_MASK}{seed[24:28]}", "secretKey": f"{SECRET_MASK}{seed[28:32]}",
                         "endpoint": "north_america"},
        },
    ]


def warehouses_of(source: Source) -> list[dict[str, Any]]:
    seed = hashlib.sha256(source.id.encode()).hexdigest()
    return [{
        "id": f"wh{seed[:14]}",
        "workspaceId": workspace_id(source.region),
        "enabled": True,
        "metadata": {"id": "WXPDGmz1xJ", "slug": "postgres", "name": "Postgres"},
        "settings": {"name": "Analytics warehouse", "hostname": "warehouse.example.com", "port": 5432,
                     "database": "analytics", "username": "segment", "password": f"{SECRET_MASK}{seed[14:18]}"},
    }]


def schema_settings_of(source: Source) -> dict[str, Any]:
    return {
        "sourceId": source.id,
        "settings": {
            "track": {"allowUnplannedEvents": True, "allowUnplannedEventProperties": True,
                      "allowEventOnViolations": True, "allowPropertiesOnViolations": True,
                      "commonEventOnViolations": "ALLOW"},
            "identify": {"allowUnplannedTraits": True, "allowTraitsOnViolations": False,
                         "commonEventOnViolations": "OMIT_TRAITS"},
            "group": {"allowUnplannedTraits": True, "allowTraitsOnViolations": True,
                      "commonEventOnViolations": "ALLOW"},
            "forwardingViolationsTo": None,
            "forwardingBlockedEventsTo": None,
        },
    }
