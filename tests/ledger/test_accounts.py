"""Accounts (ledger.accounts): the revenue shards an AI hold credits (migration 0018, decision 0021 "Lanes")."""

from __future__ import annotations

import pytest

import ledger


@pytest.mark.parametrize("user_id, code", [(4, "revenue"), (5, "revenue-1"), (6, "revenue-2"), (7, "revenue-3"),
                                           (8, "revenue"), (10**12 + 3, "revenue-3")])
def test_a_user_has_one_revenue_shard_by_its_id(user_id, code):
    assert ledger.revenue_shard(user_id) == code


@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_the_shards_of_one_lanes_users_belong_to_that_lane_alone(lanes):
    shards_of = {lane: {ledger.revenue_shard(user_id) for user_id in range(lane, 64, lanes)} for lane in range(lanes)}
    assert all(not shards_of[a] & shards_of[b] for a in range(lanes) for b in range(lanes) if a != b)


async def test_every_shard_is_a_seeded_revenue_account_the_reports_count_as_a_system_account(database):
    ids = [await ledger.system_id(database, code) for code in ledger.REVENUE_SHARDS]
    kinds = await database.fetch("SELECT kind, user_id FROM accounts WHERE id = ANY($1::bigint[])", ids)
    assert (len(set(ids)), [tuple(row) for row in kinds]) == (4, [("revenue", None)] * 4)
    assert set(ledger.REVENUE_SHARDS) <= set(ledger.SYSTEM_ACCOUNTS)
