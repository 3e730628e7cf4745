#!/usr/bin/env bash
# The project's demo (the README's first command): generates synthetic INbreast data, runs a
# small cross-validation of FT-MTL-Net against Mask R-CNN at CPU size, and writes
# demo_output/results.md with its plots. Extra arguments go to `inbreast.py demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python samples/inbreast/inbreast.py demo --out demo_output "$@"
