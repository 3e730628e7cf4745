#!/usr/bin/env bash
# Regenerate requirements/lock.txt: install pyproject.toml's ranges (extras cpu and dev) into a
# throw-away venv and record every version pip chose. Run after changing a dependency, then run
# the tests (scripts/test.sh installs the new lock) and commit both files.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --disable-pip-version-check -q ".[cpu,dev]"
{
  echo "# Exact versions that CI and scripts/setup_env.sh install (a pip constraints file:"
  echo "# pip install -e \".[cpu,dev]\" -c requirements/lock.txt). Linux x86-64, $("$PY" --version)."
  echo "# Written by scripts/lock.sh from pyproject.toml's ranges; tests/test_lock.py checks the two agree."
  "$tmp/venv/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^ftmtl' | sort -f
} > requirements/lock.txt
echo "requirements/lock.txt: $(grep -vc '^#' requirements/lock.txt) packages"
