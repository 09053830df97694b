"""bench/open_holds.py: the old and new background reads of open holds on a 0019 ledger migrated to 0020."""

from __future__ import annotations

from bench import open_holds


async def test_the_bench_times_both_reads_and_the_migration_fills_the_table_with_the_open_holds(servers):
    result = await open_holds.measure(servers.admin_database_url, 5_000)
    assert result["holds"] == 5_000
    assert result["open"] == result["unresolved"] < 100  # ~0.1% left open, each in the table
    for reads in (result["before_0020"], result["after_0020"]):
        assert set(reads) == {"count_ms", "sweep_ms"} and all(ms >= 0 for ms in reads.values())
    assert result["migration_0020_s"] >= 0
