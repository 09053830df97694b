#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what is missing, then pytest.
# The tests start their own PostgreSQL and Redis (see tests/conftest.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BOOTSTRAP_BROWSER=1 source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m pytest "$@"
