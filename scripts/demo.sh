#!/usr/bin/env bash
# Set up the environment and run the CryoMine demo pipeline on data it makes itself.
# Output: ./cryomine-demo/ (data/, report/ with PNG pictures and summary.json, scipion/ with the
# Scipion project). Override the folder with CRYOMINE_DEMO_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/scripts/setup_env.sh"
VENV="${CRYOMINE_VENV:-$ROOT/.venv}"
OUT="${CRYOMINE_DEMO_DIR:-$ROOT/cryomine-demo}"
cd "$ROOT"
# headless.py sets SCIPION_DOMAIN, SCIPION_HOME (hosts.conf), SCIPION_PYTHON and SCIPION_USER_DATA
# under $OUT/scipion, then runs the demo.
exec "$VENV/bin/python" "$ROOT/cryomine_scipion/headless.py" --scratch "$OUT/scipion" -- \
  "$VENV/bin/python" -m cryomine_scipion.demo --out "$OUT" "$@"
