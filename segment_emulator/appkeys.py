"""Typed keys for what each aiohttp application (one per listener) carries."""

from __future__ import annotations

from typing import Final

from aiohttp import web

from .state import EmulatorState

STATE: Final = web.AppKey("state", EmulatorState)
REGION: Final = web.AppKey("region", str)
# Filled in once both listeners are bound, so a port 0 shows as the port actually used.
LISTENERS: Final = web.AppKey("listeners", dict[str, str])
