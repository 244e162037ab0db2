"""`livechat admin ...`: runs one use case in one write transaction and renders its JSON.

The transaction is Storage.write_transaction's, so on SQLite the command's writes queue on the same
thread (and lock) as a server's. The document is rendered before the transaction commits, so a
command either prints its result and keeps its change, or fails and changes nothing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection

from server.adapters.admin_repository import AdminRepository
from server.adapters.audit import audit_database
from server.cli.presenters import audit_json, ban_json, state_change_json, stream_json, user_json
from server.cli.storage import command_storage
from server.config import Settings
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.admin import AdminService

# Reading every ledger entry of a large database takes a while; the audit is not a request path.
AUDIT_COMMAND_TIMEOUT_S = 3600.0

UseCase = Callable[[AdminService, argparse.Namespace, Settings], dict[str, Any]]


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


def _create_user(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    profile = Profile(username=args.username, name=args.name, surname=args.surname, profile_photo=args.profile_photo)
    return user_json(admin.create_user(profile, coins=args.coins, user_id=args.id))


def _credit(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return user_json(admin.credit_coins(args.user, args.coins))


def _show_user(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return user_json(admin.get_user(args.user))


def _create_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    stream = admin.create_stream(args.host, price=args.price, state=StreamState(args.state), stream_id=args.id)
    return stream_json(stream)


def _show_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return stream_json(admin.get_stream(args.stream))


def _start_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return state_change_json(admin.set_stream_state(args.stream, StreamState.LIVE))


def _end_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return state_change_json(admin.set_stream_state(args.stream, StreamState.ENDED))


def _ban(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return ban_json(admin.ban(args.stream, args.user))


def _unban(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return ban_json(admin.unban(args.stream, args.user))


def _purge(admin: AdminService, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    retention = settings.idempotency_retention_hours
    hours = retention if args.older_than_hours is None else args.older_than_hours
    purged = admin.purge_idempotency_keys(hours, retention_hours=retention)
    return {"purged": purged, "olderThanHours": hours}


USE_CASES: dict[str, UseCase] = {
    "create-user": _create_user,
    "credit": _credit,
    "show-user": _show_user,
    "create-stream": _create_stream,
    "show-stream": _show_stream,
    "start-stream": _start_stream,
    "end-stream": _end_stream,
    "ban": _ban,
    "unban": _unban,
    "purge-idempotency-keys": _purge,
}
# These only read: a snapshot serves them without waiting for (or holding up) a writer.
READS = frozenset({"show-user", "show-stream"})


async def run_admin(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    """(the JSON to print, the exit status) for one admin command."""
    command = args.admin_command
    timeout_s = AUDIT_COMMAND_TIMEOUT_S if command == "audit" else 30.0
    async with command_storage(settings, command_timeout_s=timeout_s) as storage:
        if command == "audit":
            report = await audit_database(storage)
            return render(audit_json(report)), 0 if report.ok else 1
        if command == "settle":
            return render({"applied": await storage.settle()}), 0
        use_case = USE_CASES[command]

        def in_transaction(connection: Connection) -> str:
            return render(use_case(AdminService(AdminRepository(connection)), args, settings))

        if command in READS:
            return await storage.read_snapshot(in_transaction), 0
        return await storage.write_transaction(in_transaction), 0
