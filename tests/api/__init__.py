"""Tests of gateway/api/: the JSON API's handlers."""
