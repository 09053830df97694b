"""Numbered SQL migrations, applied in order by gateway.core.migrate."""
