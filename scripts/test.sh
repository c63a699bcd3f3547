#!/usr/bin/env bash
# Set up the environment and run every test: lint (ruff), the core's tests, and the headless
# Scipion workflow and GUI tests. Extra arguments go to pytest (e.g. -k extract).
# --fast (first argument): lint and the core's unit tests only (no Scipion workflows, GUI or tests
# marked slow), about two minutes on a 2-core machine.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
VENV="${CRYOMINE_VENV:-$ROOT/.venv}"
cd "$ROOT"
MARK=()
if [ "${1:-}" = "--fast" ]; then
  shift
  MARK=(-m "not slow and not scipion and not gui")
fi
echo "[test] ruff"
"$VENV/bin/ruff" check .
echo "[test] pytest"
# conftest.py sets the headless Scipion environment (SCIPION_DOMAIN, SCIPION_HOME/hosts.conf,
# SCIPION_PYTHON, a temporary SCIPION_USER_DATA, SCIPION_TEST_NOSYNC) before anything imports Scipion.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider --durations=15 "${MARK[@]}" "$@"
