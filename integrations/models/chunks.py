"""Deleting many rows without one long statement: what the retention tasks share."""
from __future__ import annotations

from typing import Any

from django.db.models import QuerySet


def delete_in_chunks(rows: QuerySet[Any], *, chunk: int, order_by: str = "pk") -> int:
    """Delete `rows`, `chunk` of them a statement, first by `order_by`; answer how many went
    (rows deleted with them by a cascade included).

    Each statement locks at most `chunk` rows, so pages writing the same table wait for one
    chunk, never for the whole purge; a purge stopped half-way leaves the rest for its next run.
    """
    deleted = 0
    while True:
        pks = list(rows.order_by(order_by).values_list("pk", flat=True)[:chunk])
        if not pks:
            return deleted
        deleted += rows.filter(pk__in=pks).delete()[0]
