"""Tests of ledger/: money, transfers and reconciliation against real PostgreSQL."""
