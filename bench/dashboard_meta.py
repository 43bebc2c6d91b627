"""What a dashboard bench database is: the plan it was seeded with, and what it records about
itself so `--keep` can reuse it. No Django models here: this is read before Django is set up
(the settings need the encryption key the database's write keys were encrypted with)."""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

META_TABLE = "dashbench_seed"


@dataclass(frozen=True)
class Plan:
    """What to seed. The defaults are the issue's: 100 workspaces, 300 connections, 1,000,000
    events; `days` of delivery history; the log keeps the last `log_hours` of events (delivered
    events are trimmed after 24 hours, by the hourly retention task)."""

    workspaces: int = 100
    connections_per_workspace: int = 3
    events: int = 1_000_000
    days: int = 30
    log_hours: int = 26
    skew: float = 1.0  # workspace k (1 = largest) gets events in proportion to 1 / k**skew
    seed: int = 20261201

    def shares(self) -> list[int]:
        """Events in the log per workspace, largest first, summing to `events` exactly."""
        weights = [1 / (rank**self.skew) for rank in range(1, self.workspaces + 1)]
        total = sum(weights)
        shares = [int(self.events * w / total) for w in weights]
        shares[0] += self.events - sum(shares)
        return shares


@dataclass
class Seeded:
    """A seeded database's record of itself (table `dashbench_seed`): the plan, when, the keys
    its write keys and fingerprints were made with, the bench users' password, how long it took.
    Throw-away values of a throw-away database, random per seed."""

    plan: dict[str, Any]
    seeded_at: str
    secret_key: str
    encryption_key: str
    password: str
    seconds: float = 0.0

    @classmethod
    def fresh(cls, plan: Plan, encryption_key: str) -> Seeded:
        return cls(plan=asdict(plan), seeded_at="", secret_key=secrets.token_urlsafe(50),
                   encryption_key=encryption_key, password=secrets.token_urlsafe(18))


def read_seeded(database_url: str) -> Seeded | None:
    """The database's record of a finished seed, or None (no such database, table or row)."""
    try:
        with psycopg.connect(database_url, connect_timeout=5) as connection:
            row = connection.execute(f"SELECT value FROM {META_TABLE} WHERE name = 'seed'").fetchone()
    except psycopg.Error:
        return None
    return Seeded(**row[0]) if row else None


def record_seeded(database_url: str, seeded: Seeded) -> None:
    """Written last, once everything is in: a seed cut short is never reused."""
    with psycopg.connect(database_url) as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (name text PRIMARY KEY, value jsonb NOT NULL)")
        connection.execute(f"INSERT INTO {META_TABLE} (name, value) VALUES ('seed', %s) "
                           "ON CONFLICT (name) DO UPDATE SET value = excluded.value", [Jsonb(asdict(seeded))])
