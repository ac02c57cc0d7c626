#!/usr/bin/env bash
# Headless Chromium for the viewer's browser test: Debian's chromium + Python playwright.
# Never `playwright install` (it downloads a browser build); the test points Playwright at
# /usr/bin/chromium. Idempotent; where apt is unavailable the test skips and says why.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo apt-get update -q && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  else
    echo "install_browser: cannot install chromium here (no apt-get as root); the browser test will skip" >&2
  fi
fi

if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
python -c "import playwright" 2>/dev/null || python -m pip --disable-pip-version-check -q install playwright
