"""Trainers that stream the shards: VirtualModel now, ShoeModel (WD / LpS / SW) next.

- ``core``: the shared accelerate training loop (config, checkpoints, resume, EMA, metrics,
  validation images); its module docstring is the contract a trainer follows.
- ``virtualmodel``: the model (base UNet + identity and content branches), configs (tiny, sd15),
  the two-stage trainer and the generation pipeline.
- ``shoemodel``: WD, LpS phase 1/2 and SW, and the system that chains them.

The ``hoiforge train`` / ``hoiforge generate`` commands are in ``hoiforge.cli``.

The data comes from ``hoiforge.datasets.loader`` over the sample contract in ``hoiforge.datasets.contract``.
"""
