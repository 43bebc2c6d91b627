"""Direct psycopg cursors for the relay's hot paths on PostgreSQL.

Django's PostgreSQL backend binds parameters on the client: an array of a hundred messageIds
becomes a quoted literal built in Python, and results come back as text (bytea as hex). On
the paths every event takes (appending, reading a batch) a server-binding cursor on the same
connection, and so in the same transaction, does that work in C and takes bytea as bytes.
Statements are never server-prepared, so a transaction-pooling proxy stays an option.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from django.db import connection


@contextmanager
def cursor() -> Iterator[psycopg.Cursor]:
    """A server-binding cursor on Django's connection (`execute(…, binary=True)` for binary
    results); database errors come out as Django's (IntegrityError and the rest), as they do
    from Django's own cursors."""
    connection.ensure_connection()
    raw_connection = connection.connection
    raw_connection.prepare_threshold = None
    with connection.wrap_database_errors, psycopg.Cursor(raw_connection) as raw:
        yield raw
