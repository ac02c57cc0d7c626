"""Trainers that stream the shards: VirtualModel now, ShoeModel (WD / LpS / SW) next.

- ``core``: the shared accelerate training loop (config, checkpoints, resume, EMA, metrics,
  validation images); its module docstring is the contract a trainer follows.
- ``virtualmodel``: the model (base UNet + identity and content branches), configs (tiny, sd15),
  the two-stage trainer and the generation pipeline.
- ``cli``: the ``hoiforge train`` / ``hoiforge generate`` typer groups; each model adds its subcommand.

The data comes from ``hoiforge.datasets.loader`` over the sample contract in ``hoiforge.datasets.contract``.
"""
