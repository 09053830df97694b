"""The chaos run: steady mixed load on `tollgate serve` while workers, Redis, PostgreSQL and the
upstream fail in turn; the ledger, the credentials and the recovery checked after each fault."""
