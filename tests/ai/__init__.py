"""Tests of gateway/ai/: the metered AI routes."""
