"""Tests of gateway/core/: infrastructure every wing stands on."""
