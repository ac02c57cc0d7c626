"""``python -m hoiforge.cli ...`` (and ``accelerate launch -m hoiforge.cli train ...``)."""

import sys

from hoiforge.cli import app

sys.exit(app())
