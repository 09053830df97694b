"""The ledger: accounts, append-only double-entry transfers, holds and reconciliation.

The gateway and the admin UI use only what this module exports.
"""

from ledger.batches import Batcher
from ledger.debts import TakeBack, repay, take_back
from ledger import daily, history
from ledger.accounts import REVENUE_SHARDS
from ledger.accounts import SYSTEM as SYSTEM_ACCOUNTS
from ledger.accounts import (Balance, Totals, balance, lock_available, revenue_shard, set_overdraft, system_id, totals,
                             user_account)
from ledger.reconcile import Report, reconcile
from ledger.money import (ACCOUNT_SUM_MAX_MICRO, AMOUNT_MAX_MICRO, MICRO_PER_CREDIT, USER_BALANCE_MAX_MICRO,
                          MoneyError, format_micro, parse_credits)
from ledger.transfers import (KINDS, AmountOutOfRange, HoldExpired, HoldNotFound, HoldResolved,
                              IdempotencyConflict, InsufficientBalance, InvalidAmount, ItemFailed, LedgerError,
                              LimitExceeded, Transfer, expire_due_holds, expire_holds, move,
                              resolve)

__all__ = [
    "ACCOUNT_SUM_MAX_MICRO", "AMOUNT_MAX_MICRO", "REVENUE_SHARDS", "AmountOutOfRange", "Balance", "Batcher",
    "HoldExpired",
    "HoldNotFound", "HoldResolved", "IdempotencyConflict", "InsufficientBalance", "InvalidAmount", "ItemFailed",
    "KINDS",
    "LedgerError",
    "LimitExceeded",
    "MICRO_PER_CREDIT", "MoneyError", "Transfer", "USER_BALANCE_MAX_MICRO", "balance", "expire_due_holds",
    "expire_holds",
    "daily", "format_micro", "history", "lock_available", "move", "Report", "parse_credits", "reconcile", "resolve",
    "revenue_shard",
    "set_overdraft", "system_id", "SYSTEM_ACCOUNTS", "TakeBack", "take_back", "repay", "Totals", "totals",
    "user_account",
]
