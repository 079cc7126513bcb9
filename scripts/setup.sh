#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment in .venv.
#   bash scripts/setup.sh            # runtime: the pipeline, PyTorch (CPU) and the dg CLI
#   bash scripts/setup.sh dev        # + test dependencies, Dask/Celery/Postgres clients, and the system services
#                                    #   the tests start on loopback (Debian's chromium, postgresql, redis-server)
#   bash scripts/setup.sh dev,bench  # + benchmark peers (SFFT, numina, stcal, properimage)
# PyTorch comes first and pinned: torch==2.13.0 is the CPU build on this project's package index; any other
# spec pulls gigabytes of CUDA packages. The project's `ml` extra (torch>=2.2) is then already satisfied.
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
"${pip[@]}" -e ".[ml${extras:+,$extras}]"
case ",$extras," in
  *,dev,*)
    bash scripts/setup_browser.sh
    bash scripts/setup_services.sh
    ;;
esac
