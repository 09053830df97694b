"""Helpers the tests share (no tests here): imported by test files, which never import each other."""
