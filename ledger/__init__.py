"""The ledger: accounts, append-only double-entry transfers, holds and reconciliation (see issue 3)."""
