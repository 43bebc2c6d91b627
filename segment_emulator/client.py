"""A small blocking client for the emulator: its control API, and sending like a Segment SDK."""

from __future__ import annotations

import base64
import gzip as gzip_module
from typing import Any, cast
from urllib.parse import quote

import orjson
from requests import Response, Session


class EmulatorClient:
    """Talks to a running emulator over HTTP.

    `base_url` is any of its listeners (control routes answer on both). `us_url`, `eu_url`
    and `cdn_url` are hosts without `/v1`, like a Segment SDK's `host` setting; when not
    given they are asked from the emulator once.
    """

    def __init__(
        self, base_url: str, *, us_url: str | None = None, eu_url: str | None = None, timeout: float = 10.0
    ):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._listeners = {"us": us_url, "eu": eu_url}
        self.session = Session()

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> EmulatorClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Where to send --------------------------------------------------------------------------

    @property
    def us_url(self) -> str:
        return self.url("us")

    @property
    def eu_url(self) -> str:
        return self.url("eu")

    @property
    def cdn_url(self) -> str:
        """Stands in for https://cdn.segment.com: settings are at /v1/projects/<key>/settings."""
        return self.url("us")

    def url(self, region: str) -> str:
        if self._listeners.get(region) is None:
            self._listeners.update(self.health()["listeners"])
        return str(self._listeners[region])

    # Control API ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return self._call("GET", "health")

    def register_key(self, write_key: str, region: str = "us") -> None:
        self._call("POST", "keys", json={"writeKey": write_key, "region": region})

    def unregister_key(self, write_key: str) -> bool:
        """Forget a key, as if revoked in Segment; False when it was not registered."""
        response = self.session.delete(
            self._control(f"keys/{quote(write_key, safe='')}"), timeout=self.timeout
        )
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def keys(self) -> dict[str, str]:
        return {item["writeKey"]: item["region"] for item in self._call("GET", "keys")["keys"]}

    def requests(
        self,
        *,
        write_key: str | None = None,
        since: int | None = None,
        limit: int | None = None,
        kind: str | None = None,
        message_id: str | None = None,
    ) -> list[dict[str, Any]]:
        params = {
            "writeKey": write_key,
            "since": since,
            "limit": limit,
            "kind": kind,
            "messageId": message_id,
        }
        return cast(list[dict[str, Any]], self._call("GET", "requests", params=params)["requests"])

    def last_request_id(self) -> int:
        """A cursor: pass it as `since` to see only what arrives from now on."""
        return int(self._call("GET", "requests", params={"limit": 0})["lastId"])

    def events(
        self, *, write_key: str | None = None, message_id: str | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        params = {"writeKey": write_key, "messageId": message_id, "limit": limit}
        return cast(list[dict[str, Any]], self._call("GET", "events", params=params)["events"])

    def stats(self, write_key: str | None = None) -> dict[str, Any]:
        return self._call("GET", "stats", params={"writeKey": write_key})

    def set_fault(
        self,
        write_key: str,
        *,
        scope: str = "tracking",
        status: int | None = None,
        retry_after: int | None = None,
        seconds: float | None = None,
        count: int | None = None,
        latency_ms: int | None = None,
        reset: bool = False,
    ) -> dict[str, Any]:
        body = {
            "writeKey": write_key,
            "scope": scope,
            "status": status,
            "retryAfter": retry_after,
            "seconds": seconds,
            "count": count,
            "latencyMs": latency_ms,
            "reset": reset,
        }
        return cast(dict[str, Any], self._call("POST", "faults", json={k: v for k, v in body.items() if v is not None})["fault"])

    def faults(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._call("GET", "faults")["faults"])

    def clear_faults(self, write_key: str | None = None) -> int:
        path = "faults" if write_key is None else f"faults/{quote(write_key, safe='')}"
        return int(self._call("DELETE", path)["cleared"])

    def add_public_token(self, token: str, *, role: str = "owner", region: str = "us") -> None:
        """A Segment Public API bearer token of the region's workspace (roles: owner,
        source_admin, read_only)."""
        self._call("POST", "tokens", json={"token": token, "role": role, "region": region})

    def revoke_public_token(self, token: str) -> bool:
        response = self.session.delete(self._control(f"tokens/{quote(token, safe='')}"), timeout=self.timeout)
        if response.status_code == 404:
            return False
        response.raise_for_status()
        return True

    def add_source(self, write_key: str, name: str, region: str = "us") -> str:
        """Register a write key as a named Public API source; answers the source id."""
        body = {"writeKey": write_key, "name": name, "region": region}
        return str(self._call("POST", "sources", json=body)["id"])

    def add_sources(self, count: int, *, region: str = "us", prefix: str = "bulkSource") -> None:
        self._call("POST", "sources", json={"count": count, "region": region, "prefix": prefix})

    def reset(self, *, keys: bool = False) -> None:
        self._call("POST", "reset", json={"keys": keys})

    # Sending like an SDK -------------------------------------------------------------------

    def send(
        self,
        call: str,
        payload: dict[str, Any],
        *,
        write_key: str,
        region: str = "us",
        auth: str = "basic",
        gzip: bool = False,
        timeout: float | None = None,
    ) -> Response:
        """POST one tracking call (`track`, `batch`, ...) as a server-side library would.

        `auth="basic"` sends the key as `Basic base64("KEY:")`; `auth="body"` puts it in the
        JSON body as `writeKey`.
        """
        headers = {"Content-Type": "application/json"}
        if auth == "basic":
            headers["Authorization"] = "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()
        else:
            payload = {**payload, "writeKey": write_key}
        body = orjson.dumps(payload)
        if gzip:
            body = gzip_module.compress(body)
            headers["Content-Encoding"] = "gzip"
        url = f"{self.url(region)}/v1/{call}"
        return self.session.post(url, data=body, headers=headers, timeout=timeout or self.timeout)

    def _control(self, path: str) -> str:
        return f"{self.base_url}/_emulator/{path}"

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.session.request(method, self._control(path), timeout=self.timeout, **kwargs)
        if response.status_code >= 400:
            raise EmulatorError(f"{method} /_emulator/{path}: {response.status_code} {response.text}")
        answer: dict[str, Any] = response.json()
        return answer


class EmulatorError(RuntimeError):
    """The control API refused a call; the message carries its explanation."""
