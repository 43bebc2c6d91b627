"""Segment's CDN settings document (`GET cdn.segment.com/v1/projects/<writeKey>/settings`)."""

from __future__ import annotations

from typing import Any, Final

# The real host names, not the emulator's: the app maps apiHost to a region exactly as it
# would against real Segment, so the emulator must hand out what Segment hands out.
API_HOSTS: Final = {"us": "api.segment.io/v1", "eu": "events.eu1.segmentapis.com/v1"}
UNKNOWN_KEY_BODY: Final = "Invalid path or write key provided."


def settings_document(write_key: str, region: str) -> dict[str, Any]:
    """A source's settings, shaped like the CDN's answer for a server-side source."""
    api_host = API_HOSTS[region]
    return {
        "integrations": {
            "Segment.io": {
                "apiKey": write_key,
                "unbundledIntegrations": [],
                "addBundledMetadata": True,
                "maybeBundledConfigIds": {},
                "versionSettings": {"version": "4.4.7", "componentTypes": ["server"]},
                "apiHost": api_host,
            }
        },
        "plan": {
            "track": {"__default": {"enabled": True, "integrations": {}}},
            "identify": {"__default": {"enabled": True}},
            "group": {"__default": {"enabled": True}},
        },
        "edgeFunction": {},
        "analyticsNextEnabled": True,
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "metrics": {"sampleRate": 0.1, "host": api_host},
        "legacyVideoPluginsEnabled": False,
        "remotePlugins": [],
    }
