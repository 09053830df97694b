#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: system packages (PostgreSQL, Redis, Chromium, promtool) and the Python venv.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run any number of times.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${TOLLGATE_VENV:-$ROOT/.venv}"

need_apt=()
pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ -z "$(pg_bin_dir)" ] || [ ! -x "$(pg_bin_dir)/initdb" ]; then need_apt+=(postgresql); fi
if ! command -v redis-server >/dev/null 2>&1; then need_apt+=(redis-server); fi
# redis-cli builds the tests' Redis Cluster (--cluster create); Debian ships it in redis-tools.
if ! command -v redis-cli >/dev/null 2>&1; then need_apt+=(redis-tools); fi
# The test command (BOOTSTRAP_BROWSER=1) also needs Debian's Chromium: the admin UI's browser
# tests drive it with Playwright (never `playwright install`: its download is not reachable).
if [ "${BOOTSTRAP_BROWSER:-0}" = 1 ] && [ ! -x /usr/bin/chromium ]; then need_apt+=(chromium); fi
# ... and promtool (Debian's `prometheus`), which checks deploy/prometheus/alerts.yml.
if [ "${BOOTSTRAP_BROWSER:-0}" = 1 ] && ! command -v promtool >/dev/null 2>&1; then need_apt+=(prometheus); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages: ${need_apt[*]} (install them, or run as root so this script can)" >&2
    exit 1
  fi
  echo "==> installing ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
stamp="$VENV/.tollgate-installed"
want="$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
# Reinstall when pyproject changed, or when the installed entry point cannot find the packages
# (an editable install made before a package existed maps it as a namespace package).
healthy() { "$VENV/bin/python" -c 'import gateway.cli, migrations; assert migrations.__file__' >/dev/null 2>&1; }
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! (cd / && healthy); then
  echo "==> installing tollgate and its dependencies into $VENV" >&2
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null
  "$VENV/bin/pip" install -q -e "$ROOT[test]"
  echo "$want" > "$stamp"
fi
