#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#   bash scripts/setup.sh            # runtime only
#   bash scripts/setup.sh dev        # + test dependencies
#   bash scripts/setup.sh dev,bench  # + benchmark peers (SFFT, numina, stcal, ...)
# PyTorch comes first and pinned: torch==2.13.0 is the CPU build on this
# project's package index; any other spec pulls gigabytes of CUDA packages.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
py="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch==2.13.0
if [ -n "$extras" ]; then
  "${pip[@]}" -e ".[${extras}]"
else
  "${pip[@]}" -e .
fi
