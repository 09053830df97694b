"""Tests of devkit/: the dev run and the mock upstreams."""
