"""The Segment Public API client and the token, against the emulator over HTTP."""
from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management import call_command
from django.utils import timezone

from accounts.audit import Actor
from accounts.models import AuditAction, AuditEvent, User, Workspace
from integrations import crypto
from integrations.models import PublicApiCall, SegmentToken
from integrations.segment.public_api import Budget, PublicApi, PublicApiError, rate_limit_wait
from integrations.segment_workspace import services
from integrations.segment_workspace.selectors import api_for, api_for_workspace
from segment_emulator.testing import run_emulator
from tests.integrations.segment.conftest import PublicSegment


def save(alice: User, workspace: Workspace, token: str, region: str = "us") -> SegmentToken:
    row, _ = services.segment_token_save(actor=Actor(user=alice), workspace=workspace, token=token, region=region)
    return row


def test_an_accepted_token_is_stored_encrypted_and_named_after_its_segment_workspace(
        public_segment: PublicSegment, alice: User, workspace: Workspace) -> None:
    row, check = services.segment_token_save(actor=Actor(user=alice), workspace=workspace,
                                             token=public_segment.token, region="us")
    assert check.outcome == "accepted" and "Emulated Segment (US)" in check.message
    row.refresh_from_db()
    assert public_segment.token not in row.token_encrypted and row.token() == public_segment.token
    assert row.masked_token == f"•••• {public_segment.token[-4:]}"
    event = AuditEvent.objects.get(action=AuditAction.SEGMENT_TOKEN_SAVED)
    assert public_segment.token not in str(event.details) and event.details["segment_workspace"]


def test_a_wrong_token_is_refused_in_words_naming_both_possibilities(
        public_segment: PublicSegment, alice: User, workspace: Workspace) -> None:
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, "sgp_made_up_token_000000")
    message = " ".join(refused.value.messages)
    assert "invalid or revoked" in message and "lacks the permission" in message
    assert not SegmentToken.objects.exists()


def test_a_token_of_the_other_region_is_named_as_such(public_segment: PublicSegment, alice: User,
                                                      workspace: Workspace) -> None:
    eu_token = public_segment.new_token(region="eu")
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, eu_token, region="us")
    assert "EU region" in refused.value.message_dict["region"][0]
    assert save(alice, workspace, eu_token, region="eu").region == "eu"


def test_a_rate_limited_check_says_when_to_try_again(public_segment: PublicSegment, alice: User,
                                                     workspace: Workspace) -> None:
    public_segment.emulator.set_fault(public_segment.token, scope="public", status=429, retry_after=120, count=1)
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, public_segment.token)
    assert "try again in 120 s" in " ".join(refused.value.messages)
    assert not SegmentToken.objects.exists()


def test_an_unreachable_segment_is_said_so(public_segment: PublicSegment, alice: User, workspace: Workspace,
                                           settings: Any) -> None:
    settings.SEGMENT_PUBLIC_API_US = "http://127.0.0.1:9"
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, public_segment.token)
    assert "could not be reached" in " ".join(refused.value.messages)


def test_a_slow_segment_is_given_up_on_within_the_budget(public_segment: PublicSegment, alice: User,
                                                         workspace: Workspace, settings: Any) -> None:
    settings.SEGMENT_PUBLIC_API_TIMEOUT_SECONDS = 0.5
    public_segment.emulator.set_fault(public_segment.token, scope="public", latency_ms=3000, count=2)
    started = time.monotonic()
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, public_segment.token)
    assert time.monotonic() - started < 2.5
    assert "did not answer within" in " ".join(refused.value.messages)


def test_replacing_and_removing_the_token_are_audited_and_a_refused_replacement_keeps_the_old_one(
        public_segment: PublicSegment, alice: User, workspace: Workspace) -> None:
    save(alice, workspace, public_segment.token)
    with pytest.raises(ValidationError):
        save(alice, workspace, "sgp_made_up_token_111111")
    assert SegmentToken.objects.get().token() == public_segment.token
    second = public_segment.new_token()
    save(alice, workspace, second)
    replaced = AuditEvent.objects.get(action=AuditAction.SEGMENT_TOKEN_REPLACED)
    assert replaced.details["previous_token"] == f"•••• {public_segment.token[-4:]}"
    services.segment_token_remove(actor=Actor(user=alice), workspace=workspace)
    assert not SegmentToken.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.SEGMENT_TOKEN_REMOVED).count() == 1


def test_a_member_cannot_save_a_token(public_segment: PublicSegment, bob: User, workspace: Workspace) -> None:
    with pytest.raises(PermissionDenied):
        save(bob, workspace, public_segment.token)


def test_a_malformed_token_is_refused_before_asking_segment(public_segment: PublicSegment, alice: User,
                                                            workspace: Workspace) -> None:
    with pytest.raises(ValidationError) as refused:
        save(alice, workspace, "has spaces in it")
    assert "does not look like a Segment token" in refused.value.message_dict["token"][0]
    assert not PublicApiCall.objects.exists()


def test_a_429_is_waited_out_before_the_next_request(public_segment: PublicSegment) -> None:
    emulator = public_segment.emulator
    emulator.set_fault(public_segment.token, scope="public", status=429, retry_after=1, count=1)
    since = emulator.last_request_id()
    api = PublicApi(token=public_segment.token, region="us", budget=Budget(5))
    assert api.workspace(cached=False)["name"] == "Emulated Segment (US)"
    logged = emulator.requests(kind="public", since=since)
    assert [r["status"] for r in logged] == [429, 200]
    first, second = (datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in logged)
    assert (second - first).total_seconds() >= 1.0


def test_5xx_answers_are_retried_with_backoff(public_segment: PublicSegment) -> None:
    emulator = public_segment.emulator
    emulator.set_fault(public_segment.token, scope="public", status=500, count=2)
    since = emulator.last_request_id()
    calls: list[tuple[Any, ...]] = []
    api = PublicApi(token=public_segment.token, region="us", budget=Budget(5), on_call=lambda *a: calls.append(a))
    assert api.workspace(cached=False)["id"]
    assert [r["status"] for r in emulator.requests(kind="public", since=since)] == [500, 500, 200]
    assert [c[4] for c in calls] == ["server_error", "server_error", "ok"]


def test_reads_are_cached_per_token_and_path(public_segment: PublicSegment) -> None:
    emulator = public_segment.emulator
    since = emulator.last_request_id()
    for _ in range(3):
        PublicApi(token=public_segment.token, region="us").workspace()
    assert len(emulator.requests(kind="public", since=since)) == 1


def test_paging_reads_every_one_of_ten_thousand_sources(settings: Any) -> None:
    with run_emulator(public_token=["sgp_bulk_token_0001:owner:eu"]) as emulator:
        emulator.add_sources(10_000, region="eu")
        settings.SEGMENT_PUBLIC_API_EU = emulator.eu_url
        listing = PublicApi(token="sgp_bulk_token_0001", region="eu", budget=Budget(60)).sources()
        assert listing.complete and listing.total == 10_000
        assert len({source.id for source in listing.items}) == 10_000
        assert len(emulator.requests(kind="public")) == 50  # 200 a page


class _Garbage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/sources/huge"):
            body = b'{"data": {"source": {"id": "' + b"x" * (9 * 1024 * 1024) + b'"}}}'
        else:
            body = b"<html>not json</html>" if self.path == "/" else b'{"data": {"sources": "not a list"}}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_malformed_and_huge_answers_are_a_clear_error_not_a_crash(settings: Any) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Garbage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        settings.SEGMENT_PUBLIC_API_US = f"http://127.0.0.1:{server.server_address[1]}"
        api = PublicApi(token="sgp_any_token_0001", region="us")
        for read in (lambda: api.workspace(cached=False), api.sources):
            with pytest.raises(PublicApiError) as failed:
                read()
            assert failed.value.kind == "malformed" and "could not be read" in failed.value.message
        with pytest.raises(PublicApiError) as huge:
            api.source("huge")
        assert huge.value.kind == "too_large" and "too large" in huge.value.message
    finally:
        server.shutdown()


def test_the_rate_limit_wait_comes_from_ms_before_next_then_the_headers() -> None:
    class Answer:
        def __init__(self, content: bytes, headers: dict[str, str]) -> None:
            self.content, self.headers = content, headers

    assert rate_limit_wait(Answer(b'{"errors": [{"data": {"msBeforeNext": 2500}}]}', {})) == 2.5
    assert rate_limit_wait(Answer(b"{}", {"Retry-After": "7"})) == 7
    reset = {"X-RateLimit-Reset": "Wed, 02 Dec 2026 11:00:30 GMT"}
    assert rate_limit_wait(Answer(b"", reset), now=datetime(2026, 12, 2, 11, 0, 0, tzinfo=UTC)) == 30


def test_rotating_encryption_keys_re_encrypts_the_token_and_an_unreadable_one_fails_closed(
        public_segment: PublicSegment, alice: User, workspace: Workspace, settings: Any) -> None:
    old_key = settings.FIELD_ENCRYPTION_KEYS[0]
    save(alice, workspace, public_segment.token)
    new_key = Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys", stdout=StringIO())
    row = SegmentToken.objects.get()
    assert row.token_key_id == crypto.key_id(new_key) and row.token() == public_segment.token
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert api_for(row) is None
    with pytest.raises(PublicApiError) as unreadable:
        api_for_workspace(workspace=workspace)
    assert "paste it again" in unreadable.value.message


def test_public_api_calls_older_than_the_retention_are_trimmed(workspace: Workspace, settings: Any) -> None:
    settings.SEGMENT_PUBLIC_API_CALL_RETENTION_DAYS = 30
    _old, recent = (PublicApiCall.objects.create(workspace=workspace, method="GET", path="/", status=200,
                                                 outcome="ok", created_at=timezone.now() - timedelta(days=days))
                   for days in (31, 29))
    assert services.public_api_calls_trim(batch_size=1) == 1
    assert list(PublicApiCall.objects.all()) == [recent]
    assert services.public_api_calls_trim() == 0
