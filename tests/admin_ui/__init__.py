"""Tests of the admin UI (admin_ui/), one file per module, plus the browser run."""
