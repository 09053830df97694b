"""Tests of gateway/accounts/: users, tokens, keys, logins, purchases, refunds, mail."""
