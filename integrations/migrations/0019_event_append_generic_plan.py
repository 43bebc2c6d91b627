"""On PostgreSQL, `integrations_event_append` keeps one plan per session instead of planning
its statement at every call.

0018 made the function plan each call (`plan_cache_mode = force_custom_plan`) so that no
cached plan could scan a partition badly: a plan made while a day's partition was empty, or
recorded as empty by an ANALYZE, would go on scanning it row by row as it fills. Planning a
statement over a dozen partitions at every call costs about as much as appending one event
(0.45 ms of a 0.9 ms call, measured here), all of it under the workspace's stream row lock.

The plan is now made once per session and kept (`force_generic_plan`), and its shape no
longer depends on statistics. A messageId probe read `workspace_id = $1 AND message_id = $2`,
which the (workspace, seq) index also answers by scanning the workspace's events; given an
empty partition's statistics the planner takes either. So:
1. the messageId and dedupe-key indexes lead with the value, (message_id, workspace_id) and
   (dedupe_key, workspace_id), and the probes compare `workspace_id + 0`, which no index
   answers: the only index a probe can use is the one made for it;
2. sequential and bitmap scans are ruled out for the function.
Partitions made, attached or detached invalidate the kept plan, as any change to the table's
definition does.

Measured here on the bench's database (2 million events), 0018's function and this one
alternating, appends per second to one workspace: one event from one process about 880
before and 1,650 after, from four processes 950 and 2,200; 100 events from one process
22,400 events/s before and 26,200 after, from four 27,500 and 31,200.

Swapping the indexes builds two indexes over the whole log while ingest waits (the table's
lock): measured here at about 1.3 s per million events.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from django.db import migrations

PREVIOUS = import_module("integrations.migrations.0018_event_partitions")
TABLE = PREVIOUS.TABLE

INDEXES = (
    f"CREATE INDEX event_message_id_workspace ON {TABLE} (message_id, workspace_id)",
    f"CREATE INDEX event_dedupe_key_workspace ON {TABLE} (dedupe_key, workspace_id) WHERE dedupe_key IS NOT NULL",
)

# 0018's function, its probes on the indexes above and its plan kept (see the module's steps).
APPEND_FUNCTION = (
    PREVIOUS.APPEND_FUNCTION
    .replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    .replace("SET plan_cache_mode = force_custom_plan",
             "SET plan_cache_mode = force_generic_plan SET enable_seqscan = off SET enable_bitmapscan = off")
    .replace("e.workspace_id = (SELECT p_workspace)", "e.workspace_id + 0 = p_workspace")
)
assert APPEND_FUNCTION.count("e.workspace_id + 0 = p_workspace") == 2, "0018's probes changed"


def plan_once(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("DROP INDEX event_workspace_message_id")
        cursor.execute("DROP INDEX event_workspace_dedupe_key")
        for statement in INDEXES:
            cursor.execute(statement)
        cursor.execute(APPEND_FUNCTION)


def plan_each_call(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(PREVIOUS.APPEND_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
        cursor.execute("DROP INDEX event_message_id_workspace")
        cursor.execute("DROP INDEX event_dedupe_key_workspace")
        for statement in PREVIOUS.INDEXES[1:]:
            cursor.execute(statement)


class Migration(migrations.Migration):

    dependencies = [
        ("integrations", "0018_event_partitions"),
    ]

    operations = [
        migrations.RunPython(plan_once, plan_each_call, elidable=False),
    ]
