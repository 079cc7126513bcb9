#!/usr/bin/env bash
# Installs Debian's chromium for the browser test (astrid_pipeline_tests/orchestration/test_browser.py)
# when no chromium is on PATH. Idempotent and quiet: prints nothing when chromium is already there.
# The test drives this binary through Playwright's Python package (dev extra) and installs nothing itself.
set -euo pipefail

for b in chromium chromium-browser; do
    if command -v "$b" >/dev/null 2>&1; then
        exit 0
    fi
done

if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup_browser.sh: no chromium and no apt-get; install chromium and put it on PATH" >&2
    echo "(or set ASTRID_CHROMIUM to its path); the browser test skips until then" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "setup_browser.sh: chromium still missing after apt-get" >&2; exit 1; }
