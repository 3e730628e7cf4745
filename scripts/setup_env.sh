#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv: pyproject.toml's ranges, with the
# exact versions of requirements/lock.txt. Re-installs only when either file changed since the last
# install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "Creating .venv with $($PY --version)..."
  "$PY" -m venv .venv
fi
stamp=.venv/.ftmtl-installed
want=$(cat pyproject.toml requirements/lock.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "Installing the locked dependencies into .venv (about a minute on a fresh machine)..."
  if ! .venv/bin/python -m pip install --disable-pip-version-check -e ".[cpu,dev]" \
      -c requirements/lock.txt > .venv/install.log 2>&1; then
    tail -40 .venv/install.log
    echo "pip install failed; the whole log is in .venv/install.log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
