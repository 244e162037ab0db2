"""bench/seeding.py: the world's rows keep the invariants the audit checks, whatever its size, and
bench/tokens.py signs each sender's token once."""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import jwt
import pytest

from bench import procstat, seeding, tokens
from server.auth.local_keys import generate_keys

NOW = 1_700_000_000_000


def rows_by_table(world: seeding.World, per_sender: int) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = defaultdict(list)
    for table, columns, rows in seeding.world_rows(world, NOW, per_sender):
        tables[table] += [dict(zip(columns, row, strict=True)) for row in rows]
    return tables


@pytest.mark.parametrize(("senders", "streams", "per_sender"), [(7, 3, 5), (10, 4, 4), (5, 8, 3), (3, 2, 0)])
def test_history_counts_match_the_superlikes_each_stream_gets(senders, streams, per_sender):
    brute = Counter((i + j) % streams for i in range(senders) for j in range(per_sender))
    assert seeding.history_counts(senders, streams, per_sender) == [brute[s] for s in range(streams)]


def test_every_wallet_is_the_sum_of_its_entries_and_every_superlike_moves_its_price(monkeypatch):
    monkeypatch.setattr(seeding, "SENDERS_PER_SLICE", 4)  # several slices, positions carried across them
    world = seeding.World.build(senders=11, streams=3)
    tables = rows_by_table(world, per_sender=5)
    sums: Counter[str] = Counter()
    for entry in tables["ledger_entries"]:
        sums[entry["user_id"]] += entry["amount"]
    assert {w["user_id"]: w["balance"] for w in tables["wallets"]} == {
        **{uid: 0 for uid in [*world.host_ids, world.hot_host_id]},
        **dict(sums),
    }
    assert len(tables["superlikes"]) == 55
    assert Counter(e["superlike_id"] for e in tables["ledger_entries"] if e["superlike_id"]) == {
        s["id"]: 2 for s in tables["superlikes"]
    }


def test_positions_run_one_to_last_position_on_every_stream_and_the_supporters_add_up():
    world = seeding.World.build(senders=9, streams=4)
    tables = rows_by_table(world, per_sender=6)
    positions = defaultdict(list)
    for superlike in tables["superlikes"]:
        positions[superlike["stream_id"]].append(superlike["stream_position"])
    for stream in tables["live_streams"]:
        assert sorted(positions[stream["id"]]) == list(range(1, stream["last_position"] + 1))
    supporters = {(s["stream_id"], s["sender_id"]): s for s in tables["stream_supporters"]}
    sent = Counter((s["stream_id"], s["sender_id"]) for s in tables["superlikes"])
    assert {key: s["superlikes"] for key, s in supporters.items()} == dict(sent)
    assert all(s["coins"] == s["superlikes"] * seeding.SUPERLIKE_PRICE for s in supporters.values())


def test_tokens_are_signed_once_and_reused_while_they_stay_valid_long_enough(tmp_path):
    key_path, jwks_path = generate_keys(tmp_path / "keys")
    senders = [seeding.object_id(f"s{i}") for i in range(3)]
    common = dict(key_path=key_path, issuer="iss", audience="aud", cache_dir=tmp_path / "cache")
    first = tokens.tokens_for(senders[:2], valid_for_s=60, **common)
    again = tokens.tokens_for(senders, valid_for_s=60, **common)
    assert (first.signed, first.reused, again.signed, again.reused) == (2, 0, 1, 2)
    assert again.tokens[:2] == first.tokens
    longer = tokens.tokens_for(senders, valid_for_s=tokens.TOKEN_LIFETIME_S + 7200, **common)
    assert (longer.signed, longer.reused) == (3, 0)
    public = jwt.PyJWKSet.from_json(jwks_path.read_text()).keys[0].key
    claims = jwt.decode(longer.tokens[2], public, algorithms=["RS256"], audience="aud", issuer="iss")
    assert claims["sub"] == senders[2]
    assert claims["exp"] >= time.time() + tokens.TOKEN_LIFETIME_S + 7200


@pytest.mark.parametrize(
    ("title", "counts"),
    [
        ("postgres: 15/main: postgres livechat_bench 127.0.0.1(35676) INSERT", True),
        ("postgres: 15/main: postgres livechat_other 127.0.0.1(35677) idle", False),
        ("postgres: postgres livechat_other [local] idle", False),
        ("postgres: 15/main: autovacuum worker livechat_other", False),
        ("postgres: 15/main: autovacuum worker livechat_bench", True),
        ("postgres: 15/main: walwriter", True),
        ("postgres: 15/main: logical replication launcher", True),
        ("postgres: checkpointer", True),
    ],
)
def test_postgres_cpu_counts_the_benchmarks_backends_and_the_shared_processes_only(title, counts):
    assert procstat.works_for(title, "livechat_bench") is counts
