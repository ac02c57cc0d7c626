#!/usr/bin/env bash
# Install (idempotent) and run the whole test suite. This is the README's test command and CI's.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/install_browser.sh  # Debian chromium + playwright for the viewer's browser test
. .venv/bin/activate 2>/dev/null || true
exec python -m pytest "$@"
