#!/usr/bin/env bash
# Install (idempotent) and build the demo set from the bundled fixture photos into ./out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
. .venv/bin/activate 2>/dev/null || true
hoiforge build tests/data/astronaut.png tests/data/basketball1.png tests/data/coffee.png tests/data/scenetext01.jpg --out "${1:-out/demo}" --recipe demo
hoiforge validate "${1:-out/demo}"
