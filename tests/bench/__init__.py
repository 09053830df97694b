"""Tests of the bench's own tools."""
