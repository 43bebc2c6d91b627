"""What can honestly be checked about a write key, one check at a time.

Segment's tracking API answers 200 to almost any key, so a 200 proves nothing on its own.
The checks, in order:
  1. key_format: the key is plausible (Segment answers 400 only to empty or very short keys);
  2. cdn_lookup: Segment's CDN knows the key (404 means it does not);
  3. region: the source's settings name an API host of the chosen region (skipped when they
     name none: the region is then unconfirmed, not wrong);
  4. test_event: the region's endpoint accepts a `Segment Connection Tested` track call whose
     messageId the user can look up in Segment's Source Debugger.
A failure stops the run; later checks are recorded as skipped.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.views.decorators.debug import sensitive_variables

from integrations.models import Health, Outcome, Region
from integrations.segment import client
from integrations.segment.regions import region_of_api_host

TEST_EVENT = "Segment Connection Tested"
TEST_USER_ID = "tributary-connection-check"
# Real write keys are 32 letters and digits; allow generous room without whitespace or ':'
# (which would break Basic auth).
MIN_KEY_LENGTH = 16
MAX_KEY_LENGTH = 128
KEY_PATTERN = re.compile(r"^[A-Za-z0-9_\-.]+$")


class Stop(Exception):
    """A check decided the run: `health` says what that means for the connection."""

    def __init__(self, health: Health, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.health, self.message, self.retry_after = health, message, retry_after


@dataclass
class Report:
    checks: list[dict[str, str]] = field(default_factory=list)
    health: Health = Health.HEALTHY
    outcome: Outcome = Outcome.PASSED
    summary: str = ""
    test_message_id: str = ""
    retry_after: int | None = None

    @property
    def key_known(self) -> bool:
        """Segment's CDN knows the key and nothing said no to it or its region: delivery may use
        it. A later step that could not finish (rate limit, timeout) does not make it unknown."""
        cdn_passed = any(c["check"] == "cdn_lookup" and c["status"] == "passed" for c in self.checks)
        return cdn_passed and self.health not in (Health.FAILING, Health.UNREADABLE)

    def record(self, check: str, status: str, message: str) -> None:
        self.checks.append({"check": check, "status": status, "message": message})


CHECKS = ("key_format", "cdn_lookup", "region", "test_event")


def key_format_problem(write_key: str) -> str | None:
    """Why a pasted value cannot be a write key, or None: one sentence naming the one thing
    wrong, the length first (a key pasted twice or with text around it is mostly that).
    Shared with the connect and replace-key forms."""
    if not write_key:
        return "Paste the source's write key."
    if len(write_key) > MAX_KEY_LENGTH:
        return (f"A Segment write key is at most {MAX_KEY_LENGTH} characters; this one has "
                f"{len(write_key):,}. Copy it again from Segment.")
    if any(ch.isspace() for ch in write_key) or ":" in write_key:
        return "A Segment write key has no spaces, line breaks or colons: copy it again from Segment."
    if len(write_key) < MIN_KEY_LENGTH:
        return (f"A Segment write key is at least {MIN_KEY_LENGTH} characters; this one has "
                f"{len(write_key)}. Copy the whole key from Segment.")
    if not KEY_PATTERN.match(write_key):
        return ("A Segment write key has only letters, digits, dots, dashes and underscores: "
                "copy it again from Segment.")
    return None


@sensitive_variables("write_key", "context")
def run(*, write_key: str, region: str) -> Report:
    report = Report()
    steps = (_check_format, _check_cdn, _check_region, _check_test_event)
    context: dict[str, Any] = {"write_key": write_key, "region": region}
    for name, step in zip(CHECKS, steps, strict=True):
        try:
            status, message = step(context, report)
        except Stop as stop:
            report.record(name, "failed", stop.message)
            _finish_failed(report, stop, name)
            break
        report.record(name, status, message)
    else:
        report.summary = " · ".join(check["message"] for check in report.checks[1:])
    return _scrubbed(report, write_key)


def _scrubbed(report: Report, write_key: str) -> Report:
    """Belt and braces: no message may quote the key, even if Segment's answer echoed it."""
    if write_key:
        for check in report.checks:
            check["message"] = check["message"].replace(write_key, "••••")
        report.summary = report.summary.replace(write_key, "••••")
    return report


def _finish_failed(report: Report, stop: Stop, failed: str) -> None:
    for name in CHECKS[CHECKS.index(failed) + 1 :]:
        report.record(name, "skipped", "Not run: an earlier check did not pass.")
    report.health = stop.health
    report.outcome = Outcome.FAILED if stop.health == Health.FAILING else Outcome.INCOMPLETE
    report.summary = stop.message
    report.retry_after = stop.retry_after


def _check_format(context: dict[str, Any], report: Report) -> tuple[str, str]:
    problem = key_format_problem(context["write_key"])
    if problem:
        raise Stop(Health.FAILING, problem)
    return "passed", "Key format is plausible"


def _check_cdn(context: dict[str, Any], report: Report) -> tuple[str, str]:
    answer = _call(client.fetch_source_settings, context["write_key"], what="look the key up")
    if answer.status == 404:
        raise Stop(Health.FAILING, "Segment does not recognise this write key. Check that you copied the "
                   "whole key of the right source and that the source still exists, then paste it again.")
    _refuse_unexpected(answer, what="the key lookup")
    settings_doc = answer.json() or {}
    segment_io = (settings_doc.get("integrations") or {}).get("Segment.io") or {}
    context["api_host"] = str(segment_io.get("apiHost") or "")
    return "passed", "Key recognised by Segment"


def _check_region(context: dict[str, Any], report: Report) -> tuple[str, str]:
    chosen = Region(context["region"])
    actual = region_of_api_host(context.get("api_host", ""))
    if actual is None:
        return "skipped", "region not confirmed (Segment did not name the source's API host)"
    if actual != chosen:
        article = "an" if actual == Region.EU else "a"
        raise Stop(Health.FAILING, f"Wrong region: this key belongs to {article} {actual.label} source, but the "
                   f"connection is set to {chosen.label}. Change the region to {actual.label}; events sent "
                   f"to the wrong region are silently dropped by Segment.")
    return "passed", f"region {chosen.label} confirmed"


def _check_test_event(context: dict[str, Any], report: Report) -> tuple[str, str]:
    message_id = f"tributary-check-{uuid.uuid4()}"
    report.test_message_id = message_id
    payload = {
        "type": "track", "event": TEST_EVENT, "userId": TEST_USER_ID, "messageId": message_id,
        "properties": {"source": "Tributary connection check"},
        "context": {"library": client.LIBRARY},
    }
    answer = _call(client.post, context["region"], context["write_key"], "track", payload,
                   what="send the test event")
    _refuse_unexpected(answer, what="the test event")
    return "passed", f"test event accepted: look for message {message_id} in your Source Debugger"


def _call(function: Any, *args: Any, what: str) -> client.Answer:
    try:
        answer: client.Answer = function(*args)
    except client.SegmentUnreachable as unreachable:
        detail = "timed out" if unreachable.reason == "timeout" else "could not be reached"
        raise Stop(Health.DEGRADED, f"Segment {detail} when we tried to {what}. Nothing is known to be wrong "
                   "with the key; run the check again in a few minutes.") from None
    if answer.status == 429:
        wait = answer.retry_after or 60
        raise Stop(Health.DEGRADED, f"Segment is rate-limiting requests for this source. Try again in {wait} s.",
                   retry_after=wait)
    return answer


def _refuse_unexpected(answer: client.Answer, *, what: str) -> None:
    if answer.status == 200:
        return
    health = Health.FAILING if answer.status in (400, 401, 403) else Health.DEGRADED
    excerpt = " ".join(answer.body.split())[:160]
    raise Stop(health, f"Segment gave an unexpected answer to {what}: HTTP {answer.status}"
               + (f" ({excerpt})" if excerpt else "") + ". Run the check again; if it persists, contact support.")
