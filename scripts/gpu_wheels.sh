#!/usr/bin/env bash
# The wheels bench/gpu_check.py needs on a GPU machine that has Python 3.12 with torch, transformers,
# accelerate, numpy, pillow, opencv-python-headless, pyarrow, typer and rich, but no diffusers or
# pydantic (docs/performance.md "## The prepared GPU check"). ~9 MB, all --no-deps:
#   diffusers (pure Python; its other needs come with transformers), pydantic + pydantic-core
#   (cp312 manylinux) + annotated-types + typing-inspection + typing-extensions (pydantic-core
#   needs >= 4.16), segment-anything (pure Python: SAM through the project's own build_sam), and
#   requests with its four (diffusers imports it at import time; transformers 5 no longer needs it,
#   so the machine may lack it). Installed with --target into a folder put first on PYTHONPATH, the
#   machine's own packages are left as they are.
# Downloads into build/gpu_wheels (ignored by git; name it in the device run's `carry`).
#
#   scripts/gpu_wheels.sh [FOLDER]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-build/gpu_wheels}"
python="${PYTHON:-python}"
mkdir -p "$dest"
for spec in diffusers==0.42.1 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
            typing-extensions==4.16.0 segment-anything==1.0 requests==2.34.2 urllib3==2.8.0 idna==3.21 \
            certifi==2026.10.19.post1 charset-normalizer==3.5.3; do
  "$python" -m pip download --quiet --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
    --implementation cp --no-deps "$spec" -d "$dest"
done
ls -l "$dest"
echo "on the GPU machine: python -m pip install -q --no-deps --no-index --target build/gpu_site $dest/*.whl && PYTHONPATH=build/gpu_site python bench/gpu_check.py --out OUT"
