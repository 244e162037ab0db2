"""The ledger audit behind `livechat admin audit`: the money invariants, checked on one snapshot."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, and_, case, func, select

from server.adapters.storage_base import Storage
from server.adapters.tables import LedgerEntry, LiveStream, StreamSupporter, SuperlikeRecord, Wallet, pending_credits


@dataclass(frozen=True)
class AuditReport:
    wallets: int
    superlikes: int
    total_balance: int
    pending_credits: int
    coins_issued: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


async def audit_database(storage: Storage) -> AuditReport:
    """The audit on one consistent snapshot, while servers keep writing and settling.

    The checks span several statements; under READ COMMITTED a settlement committing between two of
    them would look like coins vanishing. Storage.read_snapshot gives them one snapshot that blocks
    no writer.
    """
    return await storage.read_snapshot(audit_ledger)


def audit_ledger(connection: Connection, *, max_listed: int = 20) -> AuditReport:
    """Checks the money invariants inside the caller's transaction (see audit_database for a live one).

    1. every wallet balance plus its pending credits (not settled yet) equals the sum of its ledger
       entries, and no balance is negative;
    2. the sum of all balances plus pending credits equals the coins ever issued (coin_credit
       entries): superlikes only move coins, never create or destroy them;
    3. every superlike has exactly one debit of -price from its sender and one credit of +price to its
       stream's host, and no superlike ledger entry lacks its superlike;
    4. every sender's running total on a stream (top supporters) equals that sender's superlikes on
       it: coins, count and the position of the latest, with no total lacking superlikes;
    5. each stream's superlikes hold positions 1..last_position, none missing.
    """
    problems: list[str] = []
    entry_sums = (
        select(LedgerEntry.user_id, func.sum(LedgerEntry.amount).label("total"))
        .group_by(LedgerEntry.user_id)
        .subquery()
    )
    pending_sums = (
        select(pending_credits.c.user_id, func.sum(pending_credits.c.amount).label("total"))
        .group_by(pending_credits.c.user_id)
        .subquery()
    )
    entries_total = func.coalesce(entry_sums.c.total, 0)
    pending_total = func.coalesce(pending_sums.c.total, 0)
    mismatched = connection.execute(
        select(Wallet.user_id, Wallet.balance, pending_total, entries_total)
        .outerjoin(entry_sums, entry_sums.c.user_id == Wallet.user_id)
        .outerjoin(pending_sums, pending_sums.c.user_id == Wallet.user_id)
        .where((Wallet.balance + pending_total != entries_total) | (Wallet.balance < 0))
        .limit(max_listed)
    )
    for user_id, balance, pending_credit, total in mismatched:
        problems.append(
            f"wallet {user_id}: balance {balance} with {pending_credit} pending, but its ledger entries sum to {total}"
        )

    wallets, total_balance = connection.execute(select(func.count(), func.coalesce(func.sum(Wallet.balance), 0))).one()
    coins_issued = connection.execute(
        select(func.coalesce(func.sum(LedgerEntry.amount), 0)).where(LedgerEntry.kind == "coin_credit")
    ).scalar_one()
    pending = connection.execute(select(func.coalesce(func.sum(pending_credits.c.amount), 0))).scalar_one()
    if total_balance + pending != coins_issued:
        problems.append(f"balances sum to {total_balance} with {pending} pending, but {coins_issued} coins were issued")

    superlikes = connection.execute(select(func.count()).select_from(SuperlikeRecord)).scalar_one()
    # One pass: each superlike joined to its entries through the index on ledger_entries.superlike_id,
    # the only join condition, so no planner can pick another path. (Correlated counts filtered by
    # user id let SQLite walk a sender's or a hot host's whole history per superlike; a join of two
    # aggregates became a quadratic nested loop on PostgreSQL without statistics.)
    entry = LedgerEntry.__table__.alias("entry")
    is_debit = and_(
        entry.c.kind == "superlike_debit",
        entry.c.user_id == SuperlikeRecord.sender_id,
        entry.c.amount == -SuperlikeRecord.price,
    )
    is_credit = and_(
        entry.c.kind == "superlike_credit",
        entry.c.user_id == LiveStream.host_id,
        entry.c.amount == SuperlikeRecord.price,
    )
    broken = connection.execute(
        select(SuperlikeRecord.id)
        .join(LiveStream, LiveStream.id == SuperlikeRecord.stream_id)
        .outerjoin(entry, entry.c.superlike_id == SuperlikeRecord.id)
        .group_by(SuperlikeRecord.id, LiveStream.host_id)
        .having(
            (func.count(entry.c.id) != 2)
            | (func.sum(case((is_debit, 1), else_=0)) != 1)
            | (func.sum(case((is_credit, 1), else_=0)) != 1)
        )
        .limit(max_listed)
    )
    for (superlike_id,) in broken:
        problems.append(f"superlike {superlike_id}: ledger entries do not match its price, sender and host")
    orphans = connection.execute(
        select(func.count())
        .select_from(LedgerEntry)
        .outerjoin(SuperlikeRecord, SuperlikeRecord.id == LedgerEntry.superlike_id)
        .where(LedgerEntry.kind != "coin_credit", SuperlikeRecord.id.is_(None))
    ).scalar_one()
    if orphans:
        problems.append(f"{orphans} superlike ledger entries have no superlike")
    problems += _standings_problems(connection, max_listed)
    return AuditReport(
        wallets=int(wallets),
        superlikes=int(superlikes),
        total_balance=int(total_balance),
        pending_credits=int(pending),
        coins_issued=int(coins_issued),
        problems=problems,
    )


def _standings_problems(connection: Connection, max_listed: int) -> list[str]:
    """Checks 4 and 5: what the read side trusts the write path to keep."""
    problems: list[str] = []
    sent = (
        select(
            SuperlikeRecord.stream_id,
            SuperlikeRecord.sender_id,
            func.sum(SuperlikeRecord.price).label("coins"),
            func.count().label("superlikes"),
            func.max(SuperlikeRecord.stream_position).label("reached"),
        )
        .group_by(SuperlikeRecord.stream_id, SuperlikeRecord.sender_id)
        .subquery()
    )
    total = StreamSupporter
    wrong = connection.execute(
        select(sent.c.stream_id, sent.c.sender_id)
        .outerjoin(total, and_(total.stream_id == sent.c.stream_id, total.sender_id == sent.c.sender_id))
        .where(
            total.stream_id.is_(None)
            | (total.coins != sent.c.coins)
            | (total.superlikes != sent.c.superlikes)
            | (total.reached_at_position != sent.c.reached)
        )
        .limit(max_listed)
    )
    for stream_id, sender_id in wrong:
        problems.append(f"supporter {sender_id} on stream {stream_id}: running total does not match the superlikes")
    unbacked = connection.execute(
        select(func.count())
        .select_from(total)
        .outerjoin(sent, and_(sent.c.stream_id == total.stream_id, sent.c.sender_id == total.sender_id))
        .where(sent.c.stream_id.is_(None))
    ).scalar_one()
    if unbacked:
        problems.append(f"{unbacked} supporter totals have no superlikes")
    positions = (
        select(
            SuperlikeRecord.stream_id,
            func.count().label("superlikes"),
            func.max(SuperlikeRecord.stream_position).label("highest"),
        )
        .group_by(SuperlikeRecord.stream_id)
        .subquery()
    )
    gaps = connection.execute(
        select(LiveStream.id)
        .outerjoin(positions, positions.c.stream_id == LiveStream.id)
        .where(
            (LiveStream.last_position != func.coalesce(positions.c.superlikes, 0))
            | (LiveStream.last_position != func.coalesce(positions.c.highest, 0))
        )
        .limit(max_listed)
    )
    for (stream_id,) in gaps:
        problems.append(f"stream {stream_id}: superlike positions are not exactly 1..last_position")
    return problems
