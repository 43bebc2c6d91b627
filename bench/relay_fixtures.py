"""The bench's tenants, made through the same services a person's clicks go through.

Import only after `django.setup()`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

import orjson
from django.utils import timezone
from relay_load import BatchMaker

from accounts import services as accounts
from accounts.audit import Actor
from accounts.models import User
from integrations.ingest.keys import ingest_key_create
from integrations.ingest.messages import normalise
from integrations.models import Connection, EventStream, Health
from integrations.relay.log import events_append
from integrations.services import connection_create, connection_set_enabled
from segment_emulator.client import EmulatorClient


@dataclass(frozen=True)
class BenchWorkspace:
    workspace_id: int
    ingest_key: str  # plaintext, shown once by ingest_key_create
    write_keys: list[str]  # one per connection, registered in the emulator
    connection_ids: list[int]


def bench_owner() -> User:
    password = secrets.token_urlsafe(24)  # nobody logs in; it only has to be valid
    return accounts.user_sign_up(actor=Actor.system(), email="bench@tributary.localhost", password=password,
                                 full_name="Bench", workspace_name="Bench")


def write_key(label: str, number: int) -> str:
    """A plausible Segment write key (16+ letters and digits), unique to this run."""
    return f"bench{label}{number}{secrets.token_hex(8)}"


def workspace_with(owner: User, name: str, write_keys: list[str]) -> BenchWorkspace:
    """A workspace with an ingest key and one US connection per write key."""
    actor = Actor(user=owner)
    workspace = accounts.workspace_create(actor=actor, name=name)
    _, ingest_key = ingest_key_create(actor=actor, workspace=workspace, name="Bench")
    connections = [connection_create(actor=actor, workspace=workspace, name=f"Source {i}", region="us",
                                     write_key=key) for i, key in enumerate(write_keys, start=1)]
    return BenchWorkspace(workspace.pk, ingest_key, write_keys, [c.pk for c in connections])


def wait_until_checked(connection_ids: list[int], timeout: float = 90.0) -> None:
    """Connection checks run on the worker: all healthy proves the worker consumes tasks and
    reaches the emulator, before any measurement starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = dict(Connection.objects.filter(pk__in=connection_ids).values_list("pk", "health"))
        if all(h == Health.HEALTHY for h in health.values()) and len(health) == len(connection_ids):
            return
        if any(h in (Health.FAILING, Health.UNREADABLE, Health.DEGRADED) for h in health.values()):
            raise RuntimeError(f"a connection check failed: {health}")
        time.sleep(0.2)
    raise RuntimeError(f"connection checks did not finish within {timeout:.0f} s (is the worker running?)")


def log_end(workspace_id: int) -> int:
    return EventStream.objects.filter(workspace_id=workspace_id).values_list("last_seq", flat=True).first() or 0


def set_enabled(owner: User, connection_id: int, enabled: bool) -> None:
    """Through the service, so enabling wakes the connection as it does for a person."""
    connection_set_enabled(actor=Actor(user=owner), connection=Connection.objects.get(pk=connection_id),
                           enabled=enabled)


def fill_backlog(workspace_id: int, total: int, prefix: str, chunk: int = 1_000) -> None:
    """Append `total` events straight to the log (no HTTP): a backlog built quickly, for
    measuring delivery on its own."""
    maker = BatchMaker(prefix, chunk, total)
    while (batch := maker.next()) is not None:
        body = orjson.loads(batch[1])
        now = timezone.now()
        messages = [normalise(item, received_at=now, sent_at=body["sentAt"]) for item in body["batch"]]
        events_append(workspace_id=workspace_id, messages=messages)


def make_workspaces(emulator: EmulatorClient) -> tuple[User, dict[str, BenchWorkspace]]:
    """The bench's owner and workspaces, every write key registered in the emulator."""
    owner = bench_owner()
    layout = {"ingest": 0, "one": 1, "three": 3, "census": 1, **{f"spread{i}": 0 for i in range(1, 5)}}
    workspaces = {}
    for name, connections in layout.items():
        keys = [write_key(name.capitalize(), i) for i in range(connections)]
        for key in keys:
            emulator.register_key(key, "us")
        workspaces[name] = workspace_with(owner, f"Bench {name}", keys)
    # The census drives this connection by hand: keep workers and the sweeper away from it.
    set_enabled(owner, workspaces["census"].connection_ids[0], False)
    return owner, workspaces
