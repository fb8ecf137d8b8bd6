"""Server settings: defaults, then a config file, then `MXKEYS_*` environment, then flags.

Every setting is declared once in `Config`; the CLI flags, the environment variable names
and the config-file keys are all derived from the field names.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "MXKEYS_"


class ConfigError(Exception):
    """A setting that cannot be used; the message names it."""


def _setting(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass
class Config:
    server_name: str = _setting("localhost", "the server name in user IDs (@user:SERVER_NAME)")
    listen: str = _setting("127.0.0.1:8008", "HOST:PORT to listen on")
    database_url: str = _setting(
        "sqlite:///mxkeys-data/homeserver.db",
        "sqlite:///PATH (relative to the working directory; sqlite:////abs/path for an "
        "absolute one) or postgresql://USER@HOST:PORT/DB",
    )
    public_baseurl: str = _setting(
        "", "the URL clients reach this server at (default: http://LISTEN)"
    )
    enable_registration: bool = _setting(False, "allow POST /register (off by default)")
    log_level: str = _setting("info", "debug, info, warning or error")
    enable_metrics: bool = _setting(False, "serve Prometheus metrics at /metrics")
    trusted_proxies: str = _setting(
        "127.0.0.1,::1",
        "addresses or networks (comma-separated) of reverse proxies whose X-Forwarded-For "
        "header names the client address (for per-address rate limits and logs); empty: none",
    )
    max_request_body_bytes: int = _setting(
        8 * 1024 * 1024, "largest request body accepted (M_TOO_LARGE above it)"
    )
    uia_session_lifetime_ms: int = _setting(
        24 * 3600 * 1000, "how long a user-interactive-auth session stays usable"
    )
    password_time_cost: int = _setting(3, "argon2id time cost for password hashes")
    password_memory_cost_kib: int = _setting(65536, "argon2id memory cost (KiB)")
    password_parallelism: int = _setting(4, "argon2id parallelism")
    database_pool_size: int = _setting(8, "database connections (and storage threads)")
    workers: int = _setting(
        1, "server processes sharing the listening socket (more than 1 needs PostgreSQL)"
    )
    max_unclaimed_one_time_keys: int = _setting(
        1000,
        "most unclaimed one-time keys a device may hold per algorithm (uploads beyond: 400)",
    )
    keys_claim_per_minute: int = _setting(
        600, "sustained /keys/claim requests allowed per user and minute (then 429)"
    )
    keys_claim_burst: int = _setting(60, "/keys/claim requests a user may send at once")
    # Rate limits (per minute sustained, then a burst; a per-minute value of 0 turns the
    # limit off). Shared by every worker through the database on PostgreSQL.
    register_per_minute: int = _setting(
        10, "POST /register requests allowed per client IP address and minute (then 429)"
    )
    register_burst: int = _setting(5, "POST /register requests an IP address may send at once")
    login_per_minute: int = _setting(
        10, "POST /login requests allowed per client IP address, and per user, and minute"
    )
    login_burst: int = _setting(5, "POST /login requests an IP address or user may send at once")
    send_to_device_per_minute: int = _setting(
        600, "PUT /sendToDevice requests allowed per user and minute (then 429)"
    )
    send_to_device_burst: int = _setting(100, "/sendToDevice requests a user may send at once")
    room_keys_upload_per_minute: int = _setting(
        600, "PUT /room_keys/keys requests allowed per user and minute (then 429)"
    )
    room_keys_upload_burst: int = _setting(
        100, "PUT /room_keys/keys requests a user may send at once"
    )
    # Sizes: what one request, or one device, may hold.
    max_keys_per_upload: int = _setting(
        1000, "most one-time plus fallback keys in one /keys/upload (413 M_TOO_LARGE above)"
    )
    max_backup_keys_per_request: int = _setting(
        10000, "most keys in one PUT /room_keys/keys (413 M_TOO_LARGE above)"
    )
    max_to_device_messages_per_request: int = _setting(
        10000, "most messages in one PUT /sendToDevice (413 M_TOO_LARGE above)"
    )
    max_queued_to_device_messages: int = _setting(
        10000,
        "most undelivered to-device messages a device may hold; messages to a full inbox "
        "are dropped (and logged), the rest of the request is delivered",
    )
    max_account_data_bytes: int = _setting(
        1024 * 1024, "largest account data entry (content as JSON) (413 M_TOO_LARGE above)"
    )
    request_timeout_ms: int = _setting(
        60_000,
        "time a request may take before it is answered 504 M_UNKNOWN (a /sync long-poll "
        "gets its own timeout on top)",
    )

    @property
    def base_url(self) -> str:
        return (self.public_baseurl or f"http://{self.listen}").rstrip("/")

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ConfigError(f"listen must be HOST:PORT, got {self.listen!r}")
        return host.strip("[]") or "127.0.0.1", int(port)

    def validate(self) -> None:
        self.listen_host_port  # noqa: B018 - raises on a bad value
        if not (
            self.database_url.startswith("sqlite:")
            or self.database_url.startswith("postgresql:")
            or self.database_url.startswith("postgres:")
        ):
            raise ConfigError("database_url must start with sqlite:// or postgresql://")
        if self.log_level.lower() not in {"debug", "info", "warning", "error"}:
            raise ConfigError(f"unknown log_level {self.log_level!r}")
        if self.workers < 1:
            raise ConfigError("workers must be at least 1")
        if self.workers > 1 and self.database_url.startswith("sqlite:"):
            raise ConfigError(
                "workers > 1 needs a PostgreSQL database: an SQLite database belongs to one "
                "process (use --database-url postgresql://...)"
            )
        if self.max_request_body_bytes < 1024:
            raise ConfigError("max_request_body_bytes must be at least 1024")
        if self.request_timeout_ms < 1:
            raise ConfigError("request_timeout_ms must be positive")
        parse_networks(self.trusted_proxies)
        for name, value in dataclasses.asdict(self).items():
            if isinstance(value, int) and not isinstance(value, bool) and value < 0:
                raise ConfigError(f"{name} must not be negative")


def parse_networks(spec: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """The addresses or networks of a comma-separated `trusted_proxies` value."""
    networks = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ConfigError(
                f"trusted_proxies: {part!r} is not an IP address or network"
            ) from None
    return networks


FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _coerce(name: str, value: Any) -> Any:
    kind = FIELDS[name].type
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}: expected a boolean, got {value!r}")
    if kind == "int":
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{name}: expected a string, got {value!r}")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e}") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot parse config file {path}: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load_config(
    file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge the layers, later ones winning: defaults, file, environment, overrides."""
    values: dict[str, Any] = {}
    if file:
        for key, value in read_config_file(file).items():
            if key not in FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {file}")
            values[key] = _coerce(key, value)
    env = os.environ if env is None else env
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            name = key[len(ENV_PREFIX) :].lower()
            if name not in FIELDS:
                raise ConfigError(f"unknown setting in environment variable {key}")
            values[name] = _coerce(name, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value)
    config = Config(**values)
    config.validate()
    return config
