"""Tests of gateway/payments/: one file per module, against real servers and the fake providers."""
