"""The demo world of `make run`: the contract's own example ids, so the printed curl mirrors the spec."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from server.adapters.admin_repository import AdminRepository
from server.adapters.storage import Storage
from server.domain import errors
from server.domain.accounts import Profile
from server.domain.superlike import StreamState
from server.services.admin import AdminService
from server.services.superlikes import SuperlikeService

DEMO_STREAM_ID = "64d15f9e2e6c8f4d5a123000"
DEMO_VIEWER_ID = "64d15f9e2e6c8f4d5a123456"
DEMO_HOST_ID = "64d15f9e2e6c8f4d5a1230ff"
DEMO_VIEWER_COINS = 1000
# Two more viewers who have already supported the demo stream, so its history and top supporters
# show data on the first curl: (id, username, name, photo), and who sent what, in order.
DEMO_SUPPORTERS = (
    ("64d15f9e2e6c8f4d5a123457", "alice", "Alice", "alice.jpg"),
    ("64d15f9e2e6c8f4d5a123458", "bob", "Bob", "bob.jpg"),
)
DEMO_HISTORY = ("64d15f9e2e6c8f4d5a123457", "64d15f9e2e6c8f4d5a123458", "64d15f9e2e6c8f4d5a123457")
# A rerun tops the viewer up by DEMO_VIEWER_COINS when fewer than this are left, so the printed curl
# keeps working; the banner says when it happened.
TOP_UP_BELOW = 100


@dataclass(frozen=True)
class DemoSeed:
    """What seeding did: created the world, topped the viewer up, or left the data as it was."""

    created: bool
    topped_up_by: int
    viewer_balance: int


async def migrate_and_seed(storage: Storage) -> DemoSeed:
    """Idempotent: a second `make run` keeps the data and tops the viewer up if they spent it all."""
    await storage.upgrade()
    seed = await storage.write_transaction(_seed)
    if seed.created:
        # Through the service's own write path, so the history is what real superlikes leave behind.
        superlikes = SuperlikeService(storage.superlikes)
        for sender_id in DEMO_HISTORY:
            await superlikes.send(DEMO_STREAM_ID, sender_id, None)
    return seed


def _seed(connection: Connection) -> DemoSeed:
    admin = AdminService(AdminRepository(connection))
    try:
        viewer = admin.get_user(DEMO_VIEWER_ID)
    except errors.UserNotFound:
        admin.create_user(
            Profile(username="demohost", name="Demo", surname="Host", profile_photo="host.jpg"),
            user_id=DEMO_HOST_ID,
        )
        viewer = admin.create_user(
            Profile(username="johndoe", name="sample", surname="sample", profile_photo="sample.jpg"),
            coins=DEMO_VIEWER_COINS,
            user_id=DEMO_VIEWER_ID,
        )
        for user_id, username, name, photo in DEMO_SUPPORTERS:
            admin.create_user(
                Profile(username=username, name=name, surname="Demo", profile_photo=photo),
                coins=DEMO_VIEWER_COINS,
                user_id=user_id,
            )
        admin.create_stream(DEMO_HOST_ID, price=10, state=StreamState.LIVE, stream_id=DEMO_STREAM_ID)
        return DemoSeed(created=True, topped_up_by=0, viewer_balance=viewer.balance)
    if viewer.balance < TOP_UP_BELOW:
        viewer = admin.credit_coins(DEMO_VIEWER_ID, DEMO_VIEWER_COINS)
        return DemoSeed(created=False, topped_up_by=DEMO_VIEWER_COINS, viewer_balance=viewer.balance)
    return DemoSeed(created=False, topped_up_by=0, viewer_balance=viewer.balance)
