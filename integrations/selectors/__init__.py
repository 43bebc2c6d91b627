"""Reads of tenant data, one module per subject: `connections` (the tenancy-checked getters,
re-exported here), `health`, `usage`, `overview`, `rejections` and `debugger`."""
from __future__ import annotations

from integrations.selectors.connections import (
    connection_get_for_workspace,
    connections_for_workspace,
    verifications_for_connection,
)

__all__ = ["connection_get_for_workspace", "connections_for_workspace", "verifications_for_connection"]
