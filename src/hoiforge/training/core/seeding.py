"""Per-step seeds: every random draw of step s depends on (seed, s, micro-batch, process) only.

Reseeding python, numpy and torch at the start of each micro-step makes the noise, timesteps and
condition dropout of a step independent of what ran before it, so a run resumed from a checkpoint
draws exactly what the uninterrupted run drew (accelerate restores weights, optimizer and
scheduler; this restores the randomness).
"""

from __future__ import annotations

import random

import numpy as np


def step_seed(seed: int, step: int, micro: int = 0, process: int = 0) -> int:
    """A 63-bit seed, well mixed (numpy SeedSequence), for one micro-step of one process."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, step, micro, process]).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)  # also every CUDA device
