"""User accounts as operators see them, and the bounds on the coins an operator may grant."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain import errors

# One grant (a purchase, a promotion) brings at most a billion coins into the system: a typo of a
# few extra digits is refused instead of minting coins nobody paid for.
MAX_COIN_CREDIT = 1_000_000_000

# Column sizes of the users table: longer values are refused here with a clear message instead of
# being truncated (SQLite) or failing with a driver error (PostgreSQL).
PROFILE_FIELD_LIMITS = {"username": 64, "name": 100, "surname": 100, "profile photo": 512}


@dataclass(frozen=True, slots=True)
class Profile:
    username: str
    name: str
    surname: str
    profile_photo: str


@dataclass(frozen=True, slots=True)
class UserAccount:
    """A user and their coins. `settled_balance` is spendable now; `pending_credits` are superlike
    earnings the settlement task has not folded into the wallet yet (it does within a second)."""

    user_id: str
    profile: Profile
    settled_balance: int
    pending_credits: int

    @property
    def balance(self) -> int:
        """Everything the user owns, including earnings not yet settled."""
        return self.settled_balance + self.pending_credits


def check_profile(profile: Profile) -> Profile:
    if not profile.username:
        raise errors.InvalidAdminInput("username must not be empty")
    values = {
        "username": profile.username,
        "name": profile.name,
        "surname": profile.surname,
        "profile photo": profile.profile_photo,
    }
    for field, limit in PROFILE_FIELD_LIMITS.items():
        if len(values[field]) > limit:
            raise errors.InvalidAdminInput(f"{field} must be at most {limit} characters")
    return profile


def check_coin_credit(coins: int, *, allow_zero: bool = False) -> int:
    """A grant of coins: 1 to MAX_COIN_CREDIT (0 too for a new user's starting coins)."""
    low = 0 if allow_zero else 1
    if not low <= coins <= MAX_COIN_CREDIT:
        raise errors.InvalidAdminInput(f"coins must be a whole number from {low} to {MAX_COIN_CREDIT:,}, got {coins}")
    return coins
