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

# Debian packages some tests use: installed when running as root, else those tests are skipped.
# debian_tool COMMAND PACKAGE "WHAT needs it"
debian_tool() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Debian's $2 for $3"
    (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 \
      || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null)) \
      || echo "[setup] could not install $2: $3 will be skipped"
  else
    echo "[setup] $1 not found: $3 will be skipped (install it with: sudo apt-get install $2)"
  fi
}
debian_tool Xvfb xvfb "the GUI tests"
debian_tool relion_reconstruct relion "the RELION export test"
debian_tool chromium chromium "the test that renders the demo's report page"
echo "[setup] environment ready: $VENV"
