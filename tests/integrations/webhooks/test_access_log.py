"""The token of an unsigned endpoint's URL is a secret: the web server's access log leaves it out."""
from __future__ import annotations

import secrets
from pathlib import Path

import pytest
import requests

from tests.config.test_serve import access_line, web_server

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_access_log_redacts_the_url_token_of_a_webhook(tmp_path: Path) -> None:
    token = secrets.token_urlsafe(32)
    with web_server(tmp_path) as server:
        answer = requests.post(f"{server.url}/webhooks/in/wh_unknown/{token}", json={"type": "x"}, timeout=10)
        signed = requests.post(f"{server.url}/webhooks/in/wh_unknown", json={"type": "x"}, timeout=10)
        line = access_line(server, 'path="/webhooks/in/wh_unknown/')
        signed_line = access_line(server, 'path="/webhooks/in/wh_unknown"')
        output = server.output()
    assert answer.status_code == signed.status_code == 404
    assert 'path="/webhooks/in/wh_unknown/[redacted]"' in line and "status=404" in signed_line
    assert token not in output
