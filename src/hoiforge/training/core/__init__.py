"""The shared accelerate training core every hoiforge trainer (VirtualModel, ShoeModel) runs on.

A trainer hands the core four things and calls ``fit``::

    from hoiforge.training.core import OptimizerConfig, TrainConfig, Trainer

    trainer = Trainer(
        TrainConfig(output_dir=run, name="base", max_steps=1000, optimizer=OptimizerConfig(lr=1e-5),
                    mixed_precision="bf16", gradient_checkpointing=True, checkpoint_every=500, validate_every=250),
        trainable={"unet": unet},                     # trained and saved; parameters with requires_grad=True are optimised
        frozen={"vae": vae, "text_encoder": te},      # eval(), no grad, moved to the device in the mixed-precision dtype
        data=lambda start_step: my_batches(start_step),  # THIS process's batches (the loader splits ranks), from start_step on
        loss=lambda batch, models: ...,               # scalar tensor; call models[...] (the prepared ones: DDP syncs through them)
        validate=lambda step, models: {"sample": pil_image},  # optional: images saved as validation/<name>-<step>-<key>.png
        metadata={"config": "tiny"},                  # optional: strings stored in every safetensors file and checkpoint
    )
    result = trainer.fit(resume=True)                 # TrainResult(step, last_loss, weights={"unet": Path}, ema_weights=...)

What the core owns, so trainers don't:

- accelerate: mixed precision (fp16/bf16 autocast around ``loss``; trainable weights stay fp32),
  gradient accumulation, gradient clipping, multi-GPU through ``accelerate launch`` (nothing here
  assumes one process: logging gathers the loss from every rank, only the main process writes);
- ``gradient_checkpointing``: ``enable_gradient_checkpointing()`` is called on every module that has it;
- optimizer (Adam/AdamW) and learning-rate schedule from ``OptimizerConfig``; optional EMA (diffusers' EMAModel);
- determinism: before each micro-step python/numpy/torch are reseeded from (seed, step, micro-step,
  process), so ``loss`` may draw noise/timesteps/dropout from the global RNGs and a resumed run
  draws exactly what the uninterrupted one did. The data is the trainer's: the core calls
  ``data(start_step)`` at the start and again after every checkpoint, so a run resumed from a
  checkpoint sees the very stream the uninterrupted run saw (exact resume) as long as ``data`` is a
  function of ``start_step`` (a seeded stream is);
- one trainer per output directory: ``fit`` holds ``run_lock`` (the OUT lock's flock and message);
- checkpoints end with ``checksums.json``; ``fit(resume=True)`` skips broken ones (named in a
  warning) for the newest that verifies; a full disk while saving is one OutputError (disk_full);
- layout under ``output_dir`` (stages share one run directory, each prefixed by its ``name``):
  ``checkpoints/<name>-<step:08d>/`` (accelerate ``save_state``, model weights as safetensors, EMA
  under ``ema/``; written under a temp name and renamed, the newest ``checkpoints_keep`` kept),
  ``metrics.jsonl`` (stage, step, loss, lr, it_s, elapsed_s), ``validation/<name>-<step>-<key>.png``,
  ``weights/<name>/<model>.safetensors`` (+ ``<model>.ema.safetensors``) at the end;
- ``fit(resume=True)`` continues from the newest complete checkpoint of this stage (up to ``max_steps``);
- a tqdm progress bar with loss and lr (it/s is tqdm's own).

Nothing in this package knows about a particular model.
"""

from hoiforge.training.core.batch_plan import BatchPlan, BatchPlanError, plan_batch
from hoiforge.training.core.checkpoints import latest_checkpoint, list_checkpoints
from hoiforge.training.core.config import ConfigError, EMAConfig, OptimizerConfig, Strict, TrainConfig, TrainSettings
from hoiforge.training.core.loop import Trainer, TrainResult, to_device, weights_path
from hoiforge.training.core.metrics import read_metrics
from hoiforge.training.core.seeding import seed_everything, step_seed

__all__ = [
    "BatchPlan",
    "BatchPlanError",
    "ConfigError",
    "EMAConfig",
    "OptimizerConfig",
    "Strict",
    "TrainConfig",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "latest_checkpoint",
    "list_checkpoints",
    "plan_batch",
    "read_metrics",
    "seed_everything",
    "step_seed",
    "to_device",
    "weights_path",
]
