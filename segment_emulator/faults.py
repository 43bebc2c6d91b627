"""Faults injected per write key: rate limits, 5xx, added latency, dropped connections."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

SCOPES: Final = ("tracking", "cdn", "public", "all")
ANY_KEY: Final = "*"


class FaultError(ValueError):
    """A fault description that cannot be honoured; the message is shown to the caller."""


@dataclass(slots=True)
class Fault:
    write_key: str
    scope: str = "tracking"
    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    reset: bool = False
    remaining: int | None = None  # requests still to fault; None means no count limit
    until: float | None = None  # monotonic deadline; None means until cleared

    def expired(self, now: float) -> bool:
        return (self.until is not None and now >= self.until) or self.remaining == 0

    def applies_to(self, write_key: str, scope: str) -> bool:
        return self.write_key in (write_key, ANY_KEY) and self.scope in (scope, "all")

    def seconds_left(self, now: float) -> int | None:
        return None if self.until is None else max(1, math.ceil(self.until - now))

    def rate_limit_headers(self, now: float) -> dict[str, str]:
        """Retry-After and X-RateLimit-Reset, both in seconds, for a 429."""
        reset_in = self.seconds_left(now)
        retry_after = self.retry_after if self.retry_after is not None else (reset_in or 1)
        return {"Retry-After": str(retry_after), "X-RateLimit-Reset": str(reset_in or retry_after)}

    def describe(self, now: float) -> dict[str, Any]:
        return {
            "writeKey": self.write_key,
            "scope": self.scope,
            "status": self.status,
            "retryAfter": self.retry_after,
            "latencyMs": self.latency_ms,
            "reset": self.reset,
            "count": self.remaining,
            "secondsLeft": self.seconds_left(now),
        }

    def label(self) -> str:
        """A short name for the request log: what the client was made to experience."""
        parts = [f"latency {self.latency_ms}ms"] if self.latency_ms else []
        if self.reset:
            parts.append("reset")
        elif self.status:
            parts.append(str(self.status))
        return " + ".join(parts)


def fault_from_json(document: Any, now: float) -> Fault:
    """Validate a POST /_emulator/faults body; raise FaultError saying what is wrong."""
    if not isinstance(document, dict):
        raise FaultError("expected a JSON object")
    write_key = document.get("writeKey")
    if not isinstance(write_key, str) or not write_key:
        raise FaultError('"writeKey" is required (use "*" for every key)')
    scope = document.get("scope", "tracking")
    if scope not in SCOPES:
        raise FaultError(f'"scope" must be one of {", ".join(SCOPES)}')
    fault = Fault(
        write_key=write_key,
        scope=scope,
        status=_optional_int(document, "status", 400, 599),
        retry_after=_optional_int(document, "retryAfter", 0, 86_400),
        latency_ms=_optional_int(document, "latencyMs", 0, 600_000) or 0,
        reset=document.get("reset") is True,
        remaining=_optional_int(document, "count", 1, 10**9),
    )
    seconds = _optional_number(document, "seconds")
    fault.until = None if seconds is None else now + seconds
    if not (fault.status or fault.reset or fault.latency_ms):
        raise FaultError('give at least one of "status", "reset": true or "latencyMs"')
    return fault


def _optional_int(document: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = document.get(name)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise FaultError(f'"{name}" must be an integer from {low} to {high}')
    return value


def _optional_number(document: dict[str, Any], name: str) -> float | None:
    value = document.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or value <= 0:
        raise FaultError(f'"{name}" must be a positive number')
    return float(value)


class FaultBook:
    """Active faults, looked up on every request: an empty book costs one truth test."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        self._faults.append(fault)

    def take(self, write_key: str, scope: str, now: float) -> Fault | None:
        """The first fault for this key (or for "*") that applies now; uses up one count."""
        if not self._faults:
            return None
        self._faults = [f for f in self._faults if not f.expired(now)]
        for fault in self._faults:
            if fault.applies_to(write_key, scope):
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def clear(self, write_key: str | None = None) -> int:
        before = len(self._faults)
        self._faults = [f for f in self._faults if write_key is not None and f.write_key != write_key]
        return before - len(self._faults)

    def active(self, now: float) -> list[Fault]:
        return [f for f in self._faults if not f.expired(now)]
