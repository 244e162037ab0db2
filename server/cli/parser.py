"""The `livechat` command line: commands, options and their documented defaults."""

from __future__ import annotations

import argparse
import json
import sys
from typing import NoReturn

from server.domain.streams import MAX_SUPERLIKE_PRICE, MIN_SUPERLIKE_PRICE
from server.domain.superlike import DEFAULT_SUPERLIKE_PRICE, StreamState

DESCRIPTION = "run the server, migrate the database, administer users and streams, mint local tokens"
USAGE_ERROR_STATUS = 2


class JsonErrorParser(argparse.ArgumentParser):
    """Usage errors are JSON on stderr too, like every other failure, so scripts parse one format."""

    def error(self, message: str) -> NoReturn:
        print(json.dumps({"error": "USAGE", "message": f"{self.prog}: {message}"}), file=sys.stderr)
        sys.exit(USAGE_ERROR_STATUS)


def build_parser() -> argparse.ArgumentParser:
    parser = JsonErrorParser(prog="livechat", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=JsonErrorParser)
    serve = commands.add_parser("serve", help="run the gRPC server (settings from the environment)")
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes to run (default LIVECHAT_WORKERS, 1); more than one needs PostgreSQL",
    )
    # Set by the supervisor for the workers it starts (server/workers/supervisor.py), never by hand.
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)
    health = commands.add_parser("health", help="exit 0 when a server answers SERVING (container probes)")
    health.add_argument("--address", help="host:port (default: LIVECHAT_GRPC_HOST:LIVECHAT_GRPC_PORT)")
    health.add_argument("--timeout", type=float, default=2.0)

    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    upgrade = db.add_parser("upgrade", help="apply migrations (creates a missing SQLite file)")
    upgrade.add_argument("--revision", default="head")

    _add_admin(commands.add_parser("admin", help="operator commands; print JSON"))
    _add_dev(commands.add_parser("dev", help="local signing key and tokens"))
    return parser


def _add_admin(admin_parser: argparse.ArgumentParser) -> None:
    admin = admin_parser.add_subparsers(dest="admin_command", required=True)
    user = admin.add_parser("create-user", help="create a user with a coin wallet")
    user.add_argument("--username", required=True)
    user.add_argument("--name", required=True)
    user.add_argument("--surname", required=True)
    user.add_argument("--profile-photo", default="")
    user.add_argument("--coins", type=int, default=0, help="starting coins (a ledger credit), 0 to 1,000,000,000")
    user.add_argument("--id", help="24-hex id (default: a new one)")
    credit = admin.add_parser("credit", help="credit coins to a user's wallet")
    credit.add_argument("--user", required=True)
    credit.add_argument("--coins", type=int, required=True, help="1 to 1,000,000,000")
    stream = admin.add_parser("create-stream", help="create a live stream for a host")
    stream.add_argument("--host", required=True)
    stream.add_argument(
        "--price",
        type=int,
        default=DEFAULT_SUPERLIKE_PRICE,
        help=f"coins per superlike, {MIN_SUPERLIKE_PRICE} to {MAX_SUPERLIKE_PRICE:,}",
    )
    stream.add_argument("--state", choices=[s.value for s in StreamState], default=StreamState.SCHEDULED.value)
    stream.add_argument("--id", help="24-hex id (default: a new one)")
    for name, text in (
        ("start-stream", "scheduled -> live (a live stream stays live)"),
        ("end-stream", "scheduled|live -> ended (an ended stream stays ended)"),
        ("show-stream", "show a stream"),
    ):
        admin.add_parser(name, help=text).add_argument("stream")
    admin.add_parser("show-user", help="show a user and balance").add_argument("user")
    for name in ("ban", "unban"):
        ban = admin.add_parser(name, help=f"{name} a user from a stream's chat")
        ban.add_argument("--stream", required=True)
        ban.add_argument("--user", required=True)
    admin.add_parser("audit", help="check ledger invariants; exit 1 on any discrepancy")
    admin.add_parser("settle", help="fold pending host credits into wallets now (the server does it continuously)")
    purge = admin.add_parser("purge-idempotency-keys", help="free idempotency keys past the retention")
    purge.add_argument(
        "--older-than-hours", type=int, help="at least LIVECHAT_IDEMPOTENCY_RETENTION_HOURS (its default)"
    )


def _add_dev(dev_parser: argparse.ArgumentParser) -> None:
    dev = dev_parser.add_subparsers(dest="dev_command", required=True)
    keygen = dev.add_parser("keygen", help="create a local RSA key and its JWKS (kept if present)")
    keygen.add_argument("--dir", default=".local/keys")
    token = dev.add_parser("token", help="print an RS256 token for a user id, signed with the local key")
    token.add_argument("--sub", required=True, help="the user id the token identifies")
    token.add_argument("--key", default=".local/keys/signing-key.pem")
    token.add_argument("--issuer")
    token.add_argument("--audience")
    token.add_argument("--ttl", type=int, default=3600)
