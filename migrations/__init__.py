"""Numbered SQL migrations, applied in order by gateway.migrate."""
