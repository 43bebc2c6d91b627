"""Segment's regions: where each sends, and how to recognise one from a source's settings."""
from __future__ import annotations

from django.conf import settings

from integrations.models import Region

# The API hosts Segment's CDN settings name for a source (`integrations["Segment.io"].apiHost`).
API_HOSTS = {
    "api.segment.io": Region.US,
    "events.eu1.segmentapis.com": Region.EU,
}


def api_base(region: str) -> str:
    """The tracking API for a region: always from settings, never from user input."""
    base = settings.SEGMENT_API_EU if region == Region.EU else settings.SEGMENT_API_US
    return str(base).rstrip("/")


def region_of_api_host(api_host: str) -> Region | None:
    """`api.segment.io/v1` → US; unknown or empty → None (the region stays unconfirmed)."""
    host = api_host.strip().lower()
    host = host.split("://", 1)[-1].split("/", 1)[0]
    return API_HOSTS.get(host)
