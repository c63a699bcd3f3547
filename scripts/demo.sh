#!/usr/bin/env bash
# Set up the environment and run the CryoMine demo pipeline on data it makes itself.
# Output: ./cryomine-demo/ (a Scipion project, a report folder with PNG pictures and a summary).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
VENV="${CRYOMINE_VENV:-$ROOT/.venv}"
cd "$ROOT"
exec "$VENV/bin/python" -m cryomine_scipion.demo --out "${CRYOMINE_DEMO_DIR:-$ROOT/cryomine-demo}" "$@"
