"""A test server running in a thread, and a small Matrix client for driving it."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from mxkeys.app import create_app
from mxkeys.config import Config

CLIENT = "/_matrix/client/v3"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerHandle:
    """A real uvicorn server on a free loopback port, in a background thread."""

    def __init__(self, config: Config) -> None:
        port = free_port()
        config.listen = f"127.0.0.1:{port}"
        self.config = config
        self.base_url = f"http://127.0.0.1:{port}"
        self.app = create_app(config)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=port,
                log_level="warning",
                access_log=False,
                lifespan="on",
                loop="asyncio",
                proxy_headers=False,  # as `mxkeys serve` runs it: the edge reads the header
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def homeserver(self) -> Any:
        return self.app.state.homeserver  # type: ignore[attr-defined]

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("test server failed to start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


@dataclass
class User:
    user_id: str
    access_token: str
    device_id: str
    password: str

    @property
    def localpart(self) -> str:
        return self.user_id[1:].split(":", 1)[0]


def unique_name(prefix: str = "user") -> str:
    return f"{prefix}-{secrets.token_hex(5)}"


class Api:
    """Thin HTTP client for tests: `api.get(path, user)`, `api.register()`..."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        user: User | str | None = None,
        json: Any = None,
        content: bytes | str | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """`path` is relative to /_matrix/client/v3 unless it starts with /_matrix or /."""
        url = path if path.startswith("/") else f"{CLIENT}/{path}"
        all_headers = dict(headers or {})
        token = user.access_token if isinstance(user, User) else user
        if token is not None:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.http.request(
            method, url, json=json, content=content, params=params, headers=all_headers
        )

    def get(self, path: str, user: User | str | None = None, **kw: Any) -> httpx.Response:
        return self.request("GET", path, user, **kw)

    def post(self, path: str, user: User | str | None = None, **kw: Any) -> httpx.Response:
        return self.request("POST", path, user, **kw)

    def put(self, path: str, user: User | str | None = None, **kw: Any) -> httpx.Response:
        return self.request("PUT", path, user, **kw)

    def delete(self, path: str, user: User | str | None = None, **kw: Any) -> httpx.Response:
        return self.request("DELETE", path, user, **kw)

    def register(
        self, username: str | None = None, password: str = "correct horse", **extra: Any
    ) -> User:
        """Register through the two-step dummy-auth flow and return the logged-in user."""
        body: dict[str, Any] = {"username": username or unique_name(), "password": password}
        body.update(extra)
        first = self.post("register", json=body)
        assert first.status_code == 401, first.text
        body["auth"] = {"type": "m.login.dummy", "session": first.json()["session"]}
        second = self.post("register", json=body)
        assert second.status_code == 200, second.text
        data = second.json()
        return User(data["user_id"], data["access_token"], data["device_id"], password)

    def login(self, user: User, device_id: str | None = None) -> User:
        body: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.localpart},
            "password": user.password,
        }
        if device_id:
            body["device_id"] = device_id
        response = self.post("login", json=body)
        assert response.status_code == 200, response.text
        data = response.json()
        return User(data["user_id"], data["access_token"], data["device_id"], user.password)

    def password_auth(self, user: User, session: str | None = None) -> dict[str, Any]:
        auth: dict[str, Any] = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password,
        }
        if session:
            auth["session"] = session
        return auth


def assert_error(response: httpx.Response, status: int, errcode: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert body.get("errcode") == errcode, body
    assert isinstance(body.get("error", ""), str)
    return body
