#!/usr/bin/env bash
# Install (idempotent) and run the whole test suite. This is the README's test command and CI's.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
./scripts/install_browser.sh  # Debian chromium + playwright for the viewer's browser test
. .venv/bin/activate 2>/dev/null || true
# One formatter and linter configuration (pyproject.toml [tool.ruff]), enforced here and in CI.
ruff format --check --quiet . || { echo "ruff format: run \`ruff format .\`"; exit 1; }
ruff check --quiet .
exec python -m pytest "$@"
