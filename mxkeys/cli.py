"""The `mxkeys` command."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

from mxkeys import __version__
from mxkeys.config import ENV_PREFIX, FIELDS, Config, ConfigError, load_config
from mxkeys.errors import MatrixError

DESCRIPTION = """\
mxkeys: a Matrix homeserver built around end-to-end encryption.

Settings come from, in rising priority: built-in defaults, a config file (--config FILE,
YAML or TOML, keys named like the flags with underscores), MXKEYS_* environment variables
(e.g. MXKEYS_SERVER_NAME, MXKEYS_ENABLE_REGISTRATION=true), and command-line flags.
"""


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=os.environ.get(ENV_PREFIX + "CONFIG"),
        help="YAML (.yaml/.yml) or TOML (.toml) config file [env MXKEYS_CONFIG]",
    )
    group = parser.add_argument_group("settings")
    for field in dataclasses.fields(Config):
        flag = "--" + field.name.replace("_", "-")
        env = ENV_PREFIX + field.name.upper()
        help_text = f"{field.metadata['help']} (default: {field.default!r}) [env {env}]"
        if field.type == "bool":
            group.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            group.add_argument(
                flag,
                dest=field.name,
                default=None,
                metavar=field.name.upper(),
                help=help_text,
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mxkeys",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mxkeys {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve",
        help="run the homeserver (creates and migrates the database on start)",
        description="Run the homeserver. " + DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_flags(serve)

    register = commands.add_parser(
        "register-user",
        help="create an account from the shell",
        description="Create an account on the configured database.",
    )
    register.add_argument("name", help="localpart of the new user (e.g. alice)")
    register.add_argument("--password", required=True, help="the account's password")
    register.add_argument("--admin", action="store_true", help="make the user an admin")
    _add_config_flags(register)

    migrate = commands.add_parser(
        "migrate", help="create or upgrade the database schema, then exit"
    )
    _add_config_flags(migrate)
    return parser


def _config_from(args: argparse.Namespace) -> Config:
    overrides = {name: getattr(args, name, None) for name in FIELDS}
    return load_config(args.config, overrides=overrides)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Alembic announces every plugin it loads at INFO; keep its noise to real problems.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))


def _serve(config: Config) -> int:
    import uvicorn

    from mxkeys.app import CONFIG_ENV, create_app

    host, port = config.listen_host_port
    options = {
        "host": host,
        "port": port,
        "log_level": config.log_level.lower(),
        "access_log": False,  # mxkeys writes its own access log line per request
        "log_config": None,
        "loop": "uvloop",
        "http": "httptools",
        "timeout_graceful_shutdown": 5,
        # X-Forwarded-For is read at mxkeys's edge, from the proxies the settings name.
        "proxy_headers": False,
        # Clients keep connections open between long-polls; closing idle ones after the
        # default 5 s makes them race a request against the close.
        "timeout_keep_alive": 75,
    }
    if config.workers == 1:
        uvicorn.run(create_app(config), **options)
        return 0
    # Several processes on one socket: migrate once here, then each worker builds its app
    # from the same settings (handed over in the environment).
    from mxkeys.homeserver import HomeServer

    hs = HomeServer(config)
    try:
        hs.migrate()
    finally:
        hs.close()
    os.environ[CONFIG_ENV] = json.dumps(dataclasses.asdict(config))
    uvicorn.run(
        "mxkeys.app:app_from_environment", factory=True, workers=config.workers, **options
    )
    return 0


def _register_user(config: Config, name: str, password: str, admin: bool) -> int:
    from mxkeys.homeserver import HomeServer

    hs = HomeServer(config)
    try:
        hs.migrate()

        async def run() -> str:
            user_id = await hs.registration.check_available(name)
            result = await hs.registration.register(user_id, password, is_admin=admin, login=False)
            return result.user_id

        try:
            user_id = asyncio.run(run())
        except MatrixError as e:
            print(f"mxkeys: cannot register {name!r}: {e.error} ({e.errcode})", file=sys.stderr)
            return 1
        print(f"registered {user_id}" + (" (admin)" if admin else ""))
        return 0
    finally:
        hs.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _config_from(args)
    except ConfigError as e:
        print(f"mxkeys: {e}", file=sys.stderr)
        return 2
    setup_logging(config.log_level)
    if args.command == "serve":
        return _serve(config)
    if args.command == "register-user":
        return _register_user(config, args.name, args.password, args.admin)
    if args.command == "migrate":
        from mxkeys.homeserver import HomeServer

        hs = HomeServer(config)
        try:
            hs.migrate()
        finally:
            hs.close()
        return 0
    return 2
