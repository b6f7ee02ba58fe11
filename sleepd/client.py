"""A small HTTP client for a running daemon; the CLI uses it whenever one answers."""

from __future__ import annotations

import json
from typing import Any

import httpx

from sleepd.auth import read_token
from sleepd.errors import SleepdError, Unavailable
from sleepd.settings import Settings

__all__ = ["Client", "DaemonStarting"]


class DaemonStarting(Unavailable):
    """The home's daemon holds its lock but its API does not answer yet (it is loading the model
    or opening the index). The CLI exits with code 3 on it: try again shortly."""

    code = "daemon_starting"


class Client:
    def __init__(self, base_url: str, token: str | None, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def discover(cls, settings: Settings) -> Client | None:
        """A client for the daemon of these settings, or None if none answers."""
        url = settings.api_url
        if url is None:
            try:
                url = json.loads((settings.home / "daemon.json").read_text())["url"]
            except (OSError, ValueError, KeyError):
                url = settings.base_url
        client = cls(url, settings.token or read_token(settings.home))
        try:
            client._http.get("/health", timeout=3.0)
        except httpx.HTTPError:
            client.close()
            return None
        return client

    def close(self) -> None:
        self._http.close()

    def health(self) -> tuple[int, dict[str, Any]]:
        response = self._http.get("/health")
        return response.status_code, response.json()

    def get(self, path: str) -> dict[str, Any]:
        return self._checked(self._request("GET", path))

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._checked(self._request("POST", path, json=body or {}))

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise Unavailable(f"daemon at {self.base_url} did not answer: {exc}") from None

    @staticmethod
    def _checked(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            exc = SleepdError(str(error.get("message", response.text)))
            exc.status, exc.code = response.status_code, str(error.get("code", "http_error"))
            raise exc
        return body if isinstance(body, dict) else {"result": body}
