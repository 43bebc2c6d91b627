"""Fixtures for the Segment Public API: the session's emulator, with a fresh token per test."""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import pytest

from segment_emulator.client import EmulatorClient


@dataclass
class PublicSegment:
    emulator: EmulatorClient
    token: str

    def new_token(self, role: str = "owner", region: str = "us") -> str:
        token = f"sgp_{role}_{secrets.token_hex(12)}"
        self.emulator.add_public_token(token, role=role, region=region)
        return token

    def new_source(self, name: str, region: str = "us") -> tuple[str, str]:
        write_key = secrets.token_hex(16)
        return self.emulator.add_source(write_key, name, region), write_key


@pytest.fixture
def public_segment(segment: EmulatorClient, settings: Any) -> PublicSegment:
    """The app's Public API settings point at the emulator; an owner token of its US workspace."""
    settings.SEGMENT_PUBLIC_API_US = segment.us_url
    settings.SEGMENT_PUBLIC_API_EU = segment.eu_url
    settings.SEGMENT_PUBLIC_API_PAGE_BUDGET_SECONDS = 5.0
    settings.SEGMENT_PUBLIC_API_TIMEOUT_SECONDS = 3.0
    helper = PublicSegment(segment, "")
    helper.token = helper.new_token()
    return helper
