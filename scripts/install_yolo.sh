#!/usr/bin/env bash
# Opt-in: the ultralytics YOLO person backend. ultralytics imports torchvision, and PyPI's
# torchvision does not load beside the CPU torch 2.13 that install.sh puts first, so this moves
# the venv to torch 2.14.1 + torchvision 0.29.1 (a CUDA build that also runs on CPU: the venv
# grows from ~2.6 GB to ~6.8 GB) and adds ultralytics with --no-deps: its declared deps pull a
# second OpenCV (opencv-python); what it needs to load a .pt and predict is already installed.
# ultralytics is AGPL-3.0 (hoiforge is Apache-2.0): that is why it is not in the default install.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
. .venv/bin/activate
python -m pip --disable-pip-version-check -q install "torch==2.14.1" "torchvision==0.29.1"
python -m pip --disable-pip-version-check -q install --no-deps "ultralytics==8.4.190"
python -c "from hoiforge.models.ultralytics_person import UltralyticsPersonDetector as D; import torchvision; print('ultralytics backend ready, torchvision', torchvision.__version__)"
