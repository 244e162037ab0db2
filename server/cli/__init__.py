"""`livechat`: run the server, migrate the database, administer users and streams, mint local tokens.

Every admin command prints one JSON document on stdout; failures print `{"error": REASON, "message":
...}` on stderr and exit with status 1 (2 for usage and configuration errors), so scripts can rely on
both. `livechat dev token` prints the bare token, ready for an `Authorization: Bearer` header.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from server.cli.parser import USAGE_ERROR_STATUS, build_parser
from server.cli.storage import CommandFailed, command_storage, require_database
from server.config import ConfigError, Settings, load_settings, with_workers
from server.domain.errors import DomainError
from server.observability.logs import configure_logging


def _run_event_loop(main: Any) -> None:
    """uvloop when installed: grpc.aio supports it and it cuts the event loop's share of each call."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def _fail(reason: str, message: str, status: int = 1) -> int:
    print(json.dumps({"error": reason, "message": message}), file=sys.stderr)
    return status


async def _upgrade(settings: Settings, revision: str) -> dict[str, Any]:
    async with command_storage(settings, create=True) as storage:
        await storage.upgrade(revision)
    return {"upgraded": revision}


def _dev(args: argparse.Namespace, settings: Settings) -> str:
    from server.auth.local_keys import generate_keys, mint_token

    if args.dev_command == "keygen":
        key_path, jwks_path = generate_keys(Path(args.dir))
        return json.dumps({"privateKey": str(key_path), "jwks": str(jwks_path)}, indent=2)
    issuer = args.issuer or settings.jwt_issuer
    audience = args.audience or settings.jwt_audience
    if not issuer or not audience:
        raise ConfigError("pass --issuer/--audience or set LIVECHAT_JWT_ISSUER/LIVECHAT_JWT_AUDIENCE")
    # The bare token: `-H "Authorization: Bearer $(livechat dev token ...)"` must work as pasted.
    return mint_token(
        Path(args.key).read_bytes(), subject=args.sub, issuer=issuer, audience=audience, ttl_seconds=args.ttl
    )


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from server.adapters.schema import SchemaNotCurrent
    from server.auth.jwks import JwksUnavailable
    from server.workers.listeners import PortInUse
    from server.workers.sockets import SocketUnusable

    try:
        if args.workers is not None:
            settings = with_workers(settings, args.workers)
    except ConfigError as error:
        return _fail("CONFIG", str(error), USAGE_ERROR_STATUS)
    require_database(settings)
    try:
        if settings.workers > 1 and args.worker_index is None:
            return _supervise(settings)
        from server.app import serve
        from server.workers.role import WorkerRole

        role = WorkerRole(args.worker_index or 0, settings.workers, args.ready_fd)
        _run_event_loop(serve(role.settings_for(settings), role))
    except (PortInUse, SocketUnusable, JwksUnavailable, SchemaNotCurrent) as error:
        return _fail(type(error).__name__, str(error))
    return 0


def _supervise(settings: Settings) -> int:
    """The parent of `settings.workers` workers. It imports no grpc: it only spawns and waits."""
    from server.workers.listeners import check_port_free
    from server.workers.sockets import prepare_socket_dir
    from server.workers.supervisor import Supervisor, worker_command

    check_port_free(settings.grpc_host, settings.grpc_port)
    if settings.edge_socket_dir is not None:
        prepare_socket_dir(settings.edge_socket_dir)
    supervisor = Supervisor(
        worker_command(settings.workers), settings.workers, stop_grace_seconds=settings.shutdown_grace_seconds
    )
    return supervisor.run()


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(args, settings)
    if args.command == "health":
        from server.api.health import serving_status

        address = args.address or f"{settings.grpc_host}:{settings.grpc_port}"
        status = serving_status(address, args.timeout)
        print(json.dumps({"address": address, "status": status}, indent=2))
        return 0 if status == "SERVING" else 1
    if args.command == "db":
        print(json.dumps(asyncio.run(_upgrade(settings, args.revision)), indent=2))
        return 0
    if args.command == "admin":
        from server.cli.admin import run_admin

        text, status = asyncio.run(run_admin(args, settings))
        print(text)
        return status
    print(_dev(args, settings))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as error:
        return _fail("CONFIG", str(error), USAGE_ERROR_STATUS)
    configure_logging(
        settings.log_level if args.command == "serve" else "WARNING",
        settings.log_format,
        worker=getattr(args, "worker_index", None),
    )
    try:
        return _run(args, settings)
    except DomainError as error:
        return _fail(error.reason, error.message)
    except CommandFailed as error:
        return _fail(error.reason, error.message)
    except (ConfigError, OSError) as error:
        return _fail(type(error).__name__, str(error))
    except SQLAlchemyError as error:  # from `serve`; the other commands report them as CommandFailed
        return _fail("DATABASE_ERROR", str(getattr(error, "orig", None) or error).splitlines()[0])
    except KeyboardInterrupt:
        return 130
