"""`livechat`: run the server, migrate the database, administer users and streams, mint local tokens.

Every admin command prints one JSON document on stdout; failures print a JSON error on stderr and exit
with status 1 (2 for usage errors), so scripts can rely on both.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from server.config import ConfigError, Settings, load_settings
from server.domain.errors import DomainError
from server.domain.superlike import DEFAULT_SUPERLIKE_PRICE, StreamState


def _run_event_loop(main: Any) -> None:
    """uvloop when installed: grpc.aio supports it and it cuts the event loop's share of each call."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLevelName(level)))


def _print(document: Any) -> None:
    print(json.dumps(document, indent=2))


async def _with_admin(settings: Settings, action: Callable[[Any], Awaitable[Any]]) -> Any:
    from server.adapters.admin_repository import AdminRepository
    from server.adapters.database import create_engine

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            return await action(AdminRepository(connection))
    finally:
        await engine.dispose()


async def _audit(settings: Settings) -> dict[str, Any]:
    from server.adapters.admin_repository import audit_database
    from server.adapters.database import create_engine

    # Reading every ledger entry of a large database takes a while; it is not a request path.
    engine = create_engine(settings.database_url, pool_size=1, command_timeout_s=3600)
    try:
        return (await audit_database(engine)).as_dict()
    finally:
        await engine.dispose()


async def _settle(settings: Settings) -> dict[str, Any]:
    from server.adapters.storage import open_storage

    async with open_storage(settings, pool_size=1) as storage:
        return {"applied": await storage.settle()}


async def _upgrade(settings: Settings, revision: str) -> dict[str, Any]:
    from server.adapters import schema
    from server.adapters.database import create_engine

    engine = create_engine(settings.database_url, pool_size=1)
    try:
        await schema.upgrade(engine, revision)
    finally:
        await engine.dispose()
    return {"upgraded": revision}


def _run_admin(args: argparse.Namespace, settings: Settings) -> Any:
    command = args.admin_command
    if command == "audit":
        return asyncio.run(_audit(settings))
    if command == "settle":
        return asyncio.run(_settle(settings))
    if command == "purge-idempotency-keys":
        hours = args.older_than_hours or settings.idempotency_retention_hours
        if hours < 24:
            raise DomainError("keys are kept at least 24 hours")
        cutoff = int(time.time() * 1000) - hours * 3_600_000
        return asyncio.run(
            _with_admin(settings, lambda repo: _purged(repo, cutoff, hours))
        )
    actions: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "create-user": lambda repo: repo.create_user(
            username=args.username,
            name=args.name,
            surname=args.surname,
            profile_photo=args.profile_photo,
            coins=args.coins,
            user_id=args.id,
        ),
        "credit": lambda repo: repo.credit_coins(args.user, args.coins),
        "create-stream": lambda repo: repo.create_stream(
            host_id=args.host, price=args.price, state=StreamState(args.state), stream_id=args.id
        ),
        "start-stream": lambda repo: repo.set_stream_state(args.stream, StreamState.LIVE),
        "end-stream": lambda repo: repo.set_stream_state(args.stream, StreamState.ENDED),
        "ban": lambda repo: repo.ban(args.stream, args.user),
        "unban": lambda repo: repo.unban(args.stream, args.user),
        "show-user": lambda repo: repo.get_user(args.user),
        "show-stream": lambda repo: repo.get_stream(args.stream),
    }
    return asyncio.run(_with_admin(settings, actions[command]))


async def _purged(repo: Any, cutoff_ms: int, hours: int) -> dict[str, Any]:
    return {"purged": await repo.purge_idempotency_keys(cutoff_ms), "olderThanHours": hours}


def _run_dev(args: argparse.Namespace, settings: Settings) -> Any:
    from server.auth.local_keys import generate_keys, mint_token

    if args.dev_command == "keygen":
        key_path, jwks_path = generate_keys(Path(args.dir))
        return {"privateKey": str(key_path), "jwks": str(jwks_path)}
    issuer = args.issuer or settings.jwt_issuer
    audience = args.audience or settings.jwt_audience
    if not issuer or not audience:
        raise ConfigError("pass --issuer/--audience or set LIVECHAT_JWT_ISSUER/LIVECHAT_JWT_AUDIENCE")
    token = mint_token(
        Path(args.key).read_bytes(), subject=args.sub, issuer=issuer, audience=audience, ttl_seconds=args.ttl
    )
    return {"token": token, "sub": args.sub, "expiresInSeconds": args.ttl}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="livechat", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the gRPC server (settings from the environment)")
    health = commands.add_parser("health", help="exit 0 when a server answers SERVING (container probes)")
    health.add_argument("--address", help="host:port (default: LIVECHAT_GRPC_HOST:LIVECHAT_GRPC_PORT)")
    health.add_argument("--timeout", type=float, default=2.0)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations")
    upgrade.add_argument("--revision", default="head")

    admin = commands.add_parser("admin", help="operator commands; print JSON").add_subparsers(
        dest="admin_command", required=True
    )
    user = admin.add_parser("create-user", help="create a user with a coin wallet")
    user.add_argument("--username", required=True)
    user.add_argument("--name", required=True)
    user.add_argument("--surname", required=True)
    user.add_argument("--profile-photo", default="")
    user.add_argument("--coins", type=int, default=0, help="starting coins (a ledger credit)")
    user.add_argument("--id", help="24-hex id (default: a new one)")
    credit = admin.add_parser("credit", help="credit coins to a user's wallet")
    credit.add_argument("--user", required=True)
    credit.add_argument("--coins", type=int, required=True)
    stream = admin.add_parser("create-stream", help="create a live stream for a host")
    stream.add_argument("--host", required=True)
    stream.add_argument("--price", type=int, default=DEFAULT_SUPERLIKE_PRICE)
    stream.add_argument("--state", choices=[s.value for s in StreamState], default=StreamState.SCHEDULED.value)
    stream.add_argument("--id", help="24-hex id (default: a new one)")
    for name, text in (("start-stream", "scheduled -> live"), ("end-stream", "-> ended"), ("show-stream", "show")):
        admin.add_parser(name, help=text).add_argument("stream")
    admin.add_parser("show-user", help="show a user and balance").add_argument("user")
    for name in ("ban", "unban"):
        ban = admin.add_parser(name, help=f"{name} a user from a stream's chat")
        ban.add_argument("--stream", required=True)
        ban.add_argument("--user", required=True)
    admin.add_parser("audit", help="check ledger invariants; exit 1 on any discrepancy")
    admin.add_parser("settle", help="fold pending host credits into wallets now (the server does it continuously)")
    purge = admin.add_parser("purge-idempotency-keys", help="free idempotency keys past the retention")
    purge.add_argument("--older-than-hours", type=int, help="default: LIVECHAT_IDEMPOTENCY_RETENTION_HOURS")

    dev = commands.add_parser("dev", help="local signing key and tokens").add_subparsers(
        dest="dev_command", required=True
    )
    keygen = dev.add_parser("keygen", help="create a local RSA key and its JWKS (kept if present)")
    keygen.add_argument("--dir", default=".local/keys")
    token = dev.add_parser("token", help="mint an RS256 token for a user id with the local key")
    token.add_argument("--sub", required=True, help="the user id the token identifies")
    token.add_argument("--key", default=".local/keys/signing-key.pem")
    token.add_argument("--issuer")
    token.add_argument("--audience")
    token.add_argument("--ttl", type=int, default=3600)
    return parser


def _database_error(error: SQLAlchemyError, settings: Settings) -> dict[str, str]:
    """An operator-readable account of a database failure, never a traceback."""
    from server.adapters.database import is_unavailable

    detail = str(getattr(error, "orig", None) or error).splitlines()[0]
    if "no such table" in detail or "does not exist" in detail:
        return {
            "error": "SCHEMA_MISSING",
            "message": f"the database at DATABASE_URL has no livechat schema ({detail}): run `livechat db upgrade`",
        }
    if is_unavailable(error):
        return {"error": "STORAGE_UNAVAILABLE", "message": f"cannot reach the database: {detail}"}
    return {"error": "DATABASE_ERROR", "message": detail}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        print(json.dumps({"error": "CONFIG", "message": str(error)}), file=sys.stderr)
        return 2
    _configure_logging(settings.log_level if args.command == "serve" else "WARNING")
    try:
        if args.command == "serve":
            from server.adapters.schema import SchemaNotCurrent
            from server.app import PortInUse, serve
            from server.auth.jwks import JwksUnavailable

            try:
                _run_event_loop(serve(settings))
            except (PortInUse, JwksUnavailable, SchemaNotCurrent) as error:
                print(json.dumps({"error": type(error).__name__, "message": str(error)}), file=sys.stderr)
                return 1
            return 0
        if args.command == "health":
            address = args.address or f"{settings.grpc_host}:{settings.grpc_port}"
            from server.api.health import serving_status

            status = serving_status(address, args.timeout)
            _print({"address": address, "status": status})
            return 0 if status == "SERVING" else 1
        if args.command == "db":
            _print(asyncio.run(_upgrade(settings, args.revision)))
            return 0
        if args.command == "admin":
            result = _run_admin(args, settings)
            _print(result)
            return 0 if result.get("ok", True) else 1
        _print(_run_dev(args, settings))
        return 0
    except DomainError as error:
        print(json.dumps({"error": error.reason, "message": error.message}), file=sys.stderr)
        return 1
    except (ConfigError, OSError) as error:
        print(json.dumps({"error": type(error).__name__, "message": str(error)}), file=sys.stderr)
        return 1
    except SQLAlchemyError as error:
        print(json.dumps(_database_error(error, settings)), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
