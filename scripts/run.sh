#!/usr/bin/env bash
# Runs the gateway on the embedded default: own PostgreSQL + Redis, migrated, an admin, a mock target.
# With TOLLGATE_DATABASE_URL / TOLLGATE_REDIS_URL / TOLLGATE_TARGET_URL set, uses those instead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
# The dev kit is not part of the installed product: it runs from the checkout.
exec "$VENV/bin/python" -m devkit dev "$@"
