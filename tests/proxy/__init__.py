"""Tests of gateway/proxy/: the desktop path."""
