"""Segment's own Python library, pointed at Tributary, delivers through it to Segment."""
from __future__ import annotations

import time
from typing import Any

import pytest
from segment.analytics import Client as SegmentClient

from accounts.audit import Actor
from accounts.models import User, Workspace
from integrations import services
from integrations.ingest.keys import ingest_key_create
from tests.conftest import new_write_key

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_official_library_sends_through_tributary_with_the_connections_key(
        segment: Any, celery_worker: Any, live_server: Any, alice: User, workspace: Workspace) -> None:
    write_key = new_write_key()
    segment.register_key(write_key, "eu")
    services.connection_create(actor=Actor(user=alice), workspace=workspace, name="Production", region="eu",
                               write_key=write_key)
    _, ingest_key = ingest_key_create(actor=Actor(user=alice), workspace=workspace, name="Platform")

    library = SegmentClient(write_key=ingest_key, host=live_server.url, sync_mode=True)
    library.identify("visitor-7", {"email": "v7@example.com"})
    library.track("visitor-7", "Experiment Viewed", {"experiment_id": "exp-1", "variation_id": "b"})
    library.flush()

    deadline = time.monotonic() + 20
    events: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(events) < 2:
        events = [e["payload"] for e in segment.events(write_key=write_key)
                  if e["payload"].get("event") != "Segment Connection Tested"]
        time.sleep(0.1)
    assert [(e["type"], e.get("event")) for e in events] == [("identify", None), ("track", "Experiment Viewed")]
    assert events[1]["properties"] == {"experiment_id": "exp-1", "variation_id": "b"}
    assert events[1]["context"]["tributary"]["library"]["name"] == "analytics-python"
    # Sent to Segment with the connection's write key, never with the ingest key.
    assert {r["writeKey"] for r in segment.requests(write_key=ingest_key)} == set()
