#!/usr/bin/env bash
# The project's test command (the README's second command; .ci/run calls exactly this).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 "$@"
