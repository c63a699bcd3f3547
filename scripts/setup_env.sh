#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment: .venv beside this repository.
# Installs CryoMine with its Scipion and test dependencies under constraints.txt (Scipion's pins),
# and, when running as root on Debian/Ubuntu, Xvfb for the GUI tests and RELION (Debian's relion
# package) for the test that has RELION read CryoMine's export, and Chromium for the test that renders
# the demo's report page. Re-running is cheap: the
# install is skipped while setup.py and constraints.txt are unchanged.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CRYOMINE_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
STAMP="$VENV/.cryomine-install-stamp"
WANT="$(cat "$ROOT/setup.py" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing CryoMine and its dependencies (pinned by constraints.txt)"
  "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[test]"
  echo "$WANT" > "$STAMP"
fi

if ! command -v Xvfb >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing xvfb for the GUI tests"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xvfb >/dev/null) \
      || echo "[setup] could not install xvfb: GUI tests will be skipped"
  else
    echo "[setup] Xvfb not found: GUI tests will be skipped (install it with: sudo apt-get install xvfb)"
  fi
fi
if ! command -v relion_reconstruct >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's relion for the RELION export test"
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq relion >/dev/null 2>&1 \
      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq relion >/dev/null)) \
      || echo "[setup] could not install relion: the RELION export test will be skipped"
  else
    echo "[setup] relion_reconstruct not found: the RELION export test will be skipped (sudo apt-get install relion)"
  fi
fi
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's chromium for the test that renders the demo's report page"
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 \
      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)) \
      || echo "[setup] could not install chromium: the report rendering test will be skipped"
  else
    echo "[setup] chromium not found: the report rendering test will be skipped (sudo apt-get install chromium)"
  fi
fi
echo "[setup] environment ready: $VENV"
