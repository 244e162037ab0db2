"""`livechat admin ...`: runs one use case in one transaction and renders its JSON.

The document is rendered before the transaction commits, so a command either prints its result
and keeps its change, or fails and changes nothing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import Any

from server.adapters.admin_repository import AdminRepository
from server.adapters.audit import audit_database
from server.adapters.settlement import settle_once
from server.cli.presenters import audit_json, ban_json, state_change_json, stream_json, user_json
from server.cli.storage import open_engine
from server.config import Settings
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.admin import AdminService

# Reading every ledger entry of a large database takes a while; the audit is not a request path.
AUDIT_COMMAND_TIMEOUT_S = 3600.0

UseCase = Callable[[AdminService, argparse.Namespace, Settings], Awaitable[dict[str, Any]]]


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2)


async def _create_user(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    profile = Profile(username=args.username, name=args.name, surname=args.surname, profile_photo=args.profile_photo)
    return user_json(await admin.create_user(profile, coins=args.coins, user_id=args.id))


async def _credit(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return user_json(await admin.credit_coins(args.user, args.coins))


async def _show_user(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return user_json(await admin.get_user(args.user))


async def _create_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    stream = await admin.create_stream(args.host, price=args.price, state=StreamState(args.state), stream_id=args.id)
    return stream_json(stream)


async def _show_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return stream_json(await admin.get_stream(args.stream))


async def _start_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return state_change_json(await admin.set_stream_state(args.stream, StreamState.LIVE))


async def _end_stream(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return state_change_json(await admin.set_stream_state(args.stream, StreamState.ENDED))


async def _ban(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return ban_json(await admin.ban(args.stream, args.user))


async def _unban(admin: AdminService, args: argparse.Namespace, _: Settings) -> dict[str, Any]:
    return ban_json(await admin.unban(args.stream, args.user))


async def _purge(admin: AdminService, args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    retention = settings.idempotency_retention_hours
    hours = retention if args.older_than_hours is None else args.older_than_hours
    purged = await admin.purge_idempotency_keys(hours, retention_hours=retention)
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


async def run_admin(args: argparse.Namespace, settings: Settings) -> tuple[str, int]:
    """(the JSON to print, the exit status) for one admin command."""
    command = args.admin_command
    if command == "audit":
        engine = open_engine(settings, command_timeout_s=AUDIT_COMMAND_TIMEOUT_S)
        try:
            report = await audit_database(engine)
        finally:
            await engine.dispose()
        return render(audit_json(report)), 0 if report.ok else 1
    engine = open_engine(settings)
    try:
        if command == "settle":
            return render({"applied": await settle_once(engine)}), 0
        use_case = USE_CASES[command]
        async with engine.begin() as connection:
            document = await use_case(AdminService(AdminRepository(connection)), args, settings)
            text = render(document)
        return text, 0
    finally:
        await engine.dispose()
