#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#   bash scripts/setup.sh          # runtime only
#   bash scripts/setup.sh dev      # + test dependencies
#   bash scripts/setup.sh dev,bench  # + benchmark peers (SFFT, ...)
# PyTorch, when the project needs it, must be the CPU build (torch==2.13.0) and
# installed before everything else; see pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
if [ -n "$extras" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
else
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e .
fi
