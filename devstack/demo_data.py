"""The demo world of `make run`: the contract's own example ids, so the printed curl mirrors the spec."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from server.adapters import schema
from server.adapters.admin_repository import AdminRepository
from server.domain import errors
from server.domain.superlike import StreamState

DEMO_STREAM_ID = "64d15f9e2e6c8f4d5a123000"
DEMO_VIEWER_ID = "64d15f9e2e6c8f4d5a123456"
DEMO_HOST_ID = "64d15f9e2e6c8f4d5a1230ff"
DEMO_VIEWER_COINS = 1000


async def migrate_and_seed(engine: AsyncEngine) -> None:
    """Idempotent: a second `make run` keeps the data and tops the viewer up if they spent it all."""
    await schema.upgrade(engine)
    async with engine.begin() as connection:
        admin = AdminRepository(connection)
        try:
            viewer = await admin.get_user(DEMO_VIEWER_ID)
        except errors.UserNotFound:
            await admin.create_user(
                user_id=DEMO_HOST_ID, username="demohost", name="Demo", surname="Host", profile_photo="host.jpg",
                coins=0,
            )
            await admin.create_user(
                user_id=DEMO_VIEWER_ID, username="johndoe", name="sample", surname="sample",
                profile_photo="sample.jpg", coins=DEMO_VIEWER_COINS,
            )
            await admin.create_stream(host_id=DEMO_HOST_ID, price=10, state=StreamState.LIVE, stream_id=DEMO_STREAM_ID)
            return
        if viewer["balance"] < 100:
            await admin.credit_coins(DEMO_VIEWER_ID, DEMO_VIEWER_COINS)
