"""Train VirtualModel in the paper's two decoupled stages, on the shared core (hoiforge.training.core).

1. ``base``: the base UNet eps_theta on close-view human crops (text dropped with p = 0.1);
2. ``branches``: base frozen, IB + CB trained; each condition (text, pose, edges, close view,
   object+mask) dropped independently with p = 0.1 for classifier-free guidance.

A run directory holds ``config.yaml``, ``metrics.jsonl``, ``checkpoints/<stage>-<step>/``,
``validation/`` and ``weights/<stage>/`` (safetensors, carrying the config's architecture
fingerprint, checked when a run is resumed or generated from).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from hoiforge.datasets.loader import normalise
from hoiforge.datasets.vm_sample import SampleSpec, ShardDataError
from hoiforge.training.core import BatchPlan, Trainer, TrainResult, list_checkpoints, plan_batch, run_lock, weights_path
from hoiforge.training.core.batch_plan import world_size
from hoiforge.training.virtualmodel import conditioning as C
from hoiforge.training.virtualmodel.components import Components, build_components, ddim_scheduler, noise_scheduler
from hoiforge.training.virtualmodel.config import ConfigError, VirtualModelConfig, load_config
from hoiforge.training.virtualmodel.model import VirtualModelBranches, predict_noise
from hoiforge.training.virtualmodel.pipeline import VirtualModelPipeline, backfill

log = logging.getLogger("hoiforge.training")

STAGES = ("base", "branches")
CONFIG_FILE = "config.yaml"
TRAINED = {"base": "unet", "branches": "branches"}  # the module each stage trains and saves


def sample_spec(cfg: VirtualModelConfig, stage: str, components: Components | None = None, crop: str | None = None) -> SampleSpec:
    b = cfg.branches
    ids = components.ids if components is not None else dict(cfg.models.precomputed)
    return SampleSpec(
        mode="humans" if stage == "base" else "branches",
        resolution=cfg.data.resolution,
        view_size=cfg.models.dino_image_size,
        crop=crop or cfg.data.crop,
        pose=b.identity_branch,
        edges=b.identity_branch,
        person_margin=cfg.data.person_margin,
        product_margin=cfg.data.product_margin,
        precomputed=ids,
    )


def required_precomputed(cfg: VirtualModelConfig, stage: str) -> tuple[str, ...]:
    if not cfg.data.require_precomputed:
        return ()
    if stage == "base":
        return ("text.npy",)
    return ("latent.npy", "text.npy") + (("dino.npy",) if cfg.branches.identity_branch and cfg.branches.close_view else ())


def check_run(run: Path, cfg: VirtualModelConfig, stages: tuple[str, ...], resume: bool) -> None:
    """One-sentence errors for a run directory that belongs to another config, or would be overwritten."""
    saved = run / CONFIG_FILE
    if saved.exists():
        try:
            old = load_config(saved)
        except ConfigError as e:
            raise ConfigError(f"{run} holds a config this version cannot read ({e}); choose another --out") from None
        if old.architecture() != cfg.architecture():
            raise ConfigError(
                f"{run} holds checkpoints of config {old.name!r} (another architecture than {cfg.name!r}); "
                "train it with the same --config or choose another --out"
            )
    if not resume:
        for stage in stages:
            if list_checkpoints(run, stage):
                raise ConfigError(f"{run} already holds checkpoints of stage {stage!r}; pass --resume to continue or choose another --out")


class VirtualModelTrainer:
    """``batches(stage, start_step)``, when given, replaces the shard loader as the training data (tests, custom sources)."""

    def __init__(self, cfg: VirtualModelConfig, data: list[Path], run: Path, workers: int | None = None, batches=None):
        self.cfg, self.data, self.run = cfg, [Path(d) for d in data], Path(run)
        self.batches = batches
        self.workers = cfg.data.workers if workers is None else workers
        self.components: Components | None = None

    # -- data
    def loader(self, stage: str, start_step: int, batch_size: int, mode: str = "train", crop: str | None = None, **where):
        from hoiforge.datasets.loader import vm_loader

        cfg = self.cfg
        return vm_loader(
            self.data,
            sample_spec(cfg, stage, self.components, crop),
            batch_size=batch_size,
            mode=mode,
            workers=self.workers if mode == "train" else 0,
            seed=getattr(cfg.training, stage).seed,
            start_step=start_step,
            shuffle_buffer=cfg.data.shuffle_buffer,
            require=required_precomputed(cfg, stage),
            **where,
        )

    def check_data(self, stages: tuple[str, ...]) -> None:
        """Fail before building any model if a data folder cannot feed a stage."""
        from hoiforge.datasets.loader import check_members, shard_urls

        for stage in stages:
            for out in self.data:
                check_members(out, shard_urls(out), sample_spec(self.cfg, stage), required_precomputed(self.cfg, stage))

    # -- the run
    def plans(self, stages: tuple[str, ...], world: int | None = None) -> dict[str, BatchPlan]:
        """Each stage's global batch split over this run's processes (BatchPlanError if it cannot be)."""
        world = world_size() if world is None else world
        return {
            s: plan_batch(getattr(self.cfg.training, s).batch_size, world, getattr(self.cfg.training, s).per_device_batch) for s in stages
        }

    def fit(self, stages: tuple[str, ...], max_steps: int | None = None, resume: bool = False) -> dict[str, TrainResult]:
        check_run(self.run, self.cfg, stages, resume)
        self.check_data(stages)
        self.plan = self.plans(stages)  # refused here, before any model is built
        self.components = build_components(self.cfg)  # missing weights fail here, before the run folder exists
        from accelerate import PartialState
        from accelerate.utils import parse_flag_from_env

        with run_lock.hold(self.run):  # one trainer per RUN, from its config.yaml to its last weights
            check_run(self.run, self.cfg, stages, resume)  # again, now that no other trainer can write the run
            # The first PartialState fixes the process group for the whole run; it reads ACCELERATE_USE_CPU only if told.
            if PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).is_main_process:
                self.run.mkdir(parents=True, exist_ok=True)
                (self.run / CONFIG_FILE).write_text(self.cfg.to_yaml())
            results = {}
            for stage in stages:
                if stage == "branches":
                    self._load_base_weights()
                results[stage] = self._fit_stage(stage, max_steps, resume)
            return results

    def _load_base_weights(self) -> None:
        path = weights_path(self.run, "base", "unet")
        if path.exists():
            load_weights(self.components.unet, path, self.cfg)
            log.info("branches: base UNet from %s", path)
        else:
            log.warning("branches: no stage-1 weights in %s; the branches train on the config's base UNet as loaded", self.run)

    def _fit_stage(self, stage: str, max_steps: int | None, resume: bool) -> TrainResult:
        from hoiforge.datasets.loader import split_size

        cfg, comp = self.cfg, self.components
        sc = getattr(cfg.training, stage)
        plan = self.plan[stage]
        steps = max_steps if max_steps is not None else sc.steps(split_size(self.data) if sc.epochs is not None else None)
        core = sc.core_config(self.run, stage, steps, plan)
        log.info("%s: %s", stage, plan.describe())
        frozen = {"vae": comp.vae, "text_encoder": comp.text_encoder, "dino": comp.dino}
        if stage == "base":
            trainable = {"unet": comp.unet}
            comp.unet.requires_grad_(True)
            loss = self._base_loss
        else:
            torch.manual_seed(sc.seed)
            self.branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
            trainable = {"branches": self.branches}
            frozen["unet"] = comp.unet
            loss = self._branches_loss
        self.text = C.TextEncoder(comp.tokenizer, comp.text_encoder, cfg.models.text_chunks)
        self.noise = noise_scheduler(comp)
        # The validation sample: the first of the first shard, on every rank (only the main one draws it).
        self.val_batch = next(iter(self.loader(stage, 0, 1, mode="eval", crop="center", rank=0, world=1)), None)
        if self.val_batch is None:  # every sample was skipped (the log says why, one line each)
            raise ShardDataError(f"{self.data[0]}: no sample decodes for the validation image (see the skipped samples above)")
        trainer = Trainer(
            core,
            trainable=trainable,
            frozen=frozen,
            data=(lambda start: self.batches(stage, start))
            if self.batches
            else (lambda start: self.loader(stage, start, plan.per_device_batch)),
            loss=loss,
            validate=self._validate_base if stage == "base" else self._validate_branches,
            metadata={
                "config": cfg.name,
                "architecture": cfg.architecture(),
                "model": "virtualmodel",
                "batch_plan": json.dumps(plan.as_dict()),
            },
        )
        return trainer.fit(resume=resume)

    # -- losses
    def _text(self, batch, models, keep) -> torch.Tensor:
        self.text.model = models["text_encoder"]
        text = self.text.fit(batch["text"]) if "text" in batch else self.text.encode(batch["caption"])
        null = self.text.empty().unsqueeze(0).expand_as(text)
        return torch.where(keep.view(-1, 1, 1), text, null)

    def _noised(self, latents):
        noise = torch.randn_like(latents)
        t = torch.randint(0, self.noise.config.num_train_timesteps, (latents.shape[0],), device=latents.device)
        x_t = self.noise.add_noise(latents, noise, t)
        target = noise if self.noise.config.prediction_type == "epsilon" else self.noise.get_velocity(latents, noise, t)
        return x_t, t, target

    def _latents(self, batch, models) -> torch.Tensor:
        if "latent" in batch:
            return batch["latent"].float()
        return C.encode_latents(models["vae"], batch["image"]).float()

    def _base_loss(self, batch, models) -> torch.Tensor:
        batch = normalise(batch)
        keep = C.condition_keep(batch["image"].shape[0], self.cfg.training.condition_dropout, batch["image"].device)
        latents = self._latents(batch, models)
        x_t, t, target = self._noised(latents)
        unet = models["unet"]
        pred = unet(x_t, t, self._text(batch, models, keep["text"])).sample
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    def _views(self, batch, models) -> torch.Tensor | None:
        spec = self.cfg.branches
        if not (spec.identity_branch and spec.close_view):
            return None
        if "dino" in batch:
            return batch["dino"]
        return C.encode_views(models["dino"], batch["view"], self.components.dino_image_size)

    def _branches_loss(self, batch, models) -> torch.Tensor:
        batch = normalise(batch)
        b = batch["image"].shape[0]
        keep = C.condition_keep(b, self.cfg.training.condition_dropout, batch["image"].device)
        latents = self._latents(batch, models)
        x_t, t, target = self._noised(latents)
        text = self._text(batch, models, keep["text"])
        conds = C.branch_conditions(batch, self._views(batch, models), keep, torch.float32)
        pred = predict_noise(models["unet"], models["branches"], x_t, t, text, **conds)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    # -- validation images
    def _pipeline(self, models, branches):
        comp = self.components
        text = C.TextEncoder(comp.tokenizer, models["text_encoder"], self.cfg.models.text_chunks)
        return VirtualModelPipeline(
            models["unet"], models["vae"], text, models["dino"], branches, ddim_scheduler(comp), comp.dino_image_size
        )

    def _validate_base(self, step, models) -> dict[str, Any]:
        from PIL import Image

        g = self.cfg.generate
        side = self.cfg.data.resolution
        image = self._pipeline(models, None)(
            self.val_batch["caption"][0], height=side, width=side, steps=g.validation_steps, guidance=g.cfg, seed=0
        )
        return {"sample": Image.fromarray(image)}

    def _validate_branches(self, step, models) -> dict[str, Any]:
        import numpy as np
        from PIL import Image

        g, side, vb = self.cfg.generate, self.cfg.data.resolution, self.val_batch
        product = vb["image"][0].numpy()
        mask = vb["mask"][0].numpy().astype(bool)
        pose = vb["pose"][0].numpy() if "pose" in vb else None
        image = self._pipeline(models, models["branches"])(
            vb["caption"][0], height=side, width=side, product=product, mask=mask, pose=pose, steps=g.validation_steps, guidance=g.cfg
        )
        shown = [product, backfill(image, product, mask)]
        if pose is not None:
            shown.insert(1, pose)
        return {"sample": Image.fromarray(np.concatenate(shown, axis=1))}


def load_weights(module: torch.nn.Module, path: Path, cfg: VirtualModelConfig) -> None:
    """Safetensors weights into ``module``; ConfigError if they were trained with another config."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:  # noqa: BLE001 - safetensors' own error type: a truncated or foreign file
        raise ConfigError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0][:200]}); it may be truncated") from None
    if meta.get("architecture") and meta["architecture"] != cfg.architecture():
        raise ConfigError(f"{path} was trained with config {meta.get('config')!r}, not {cfg.name!r} (another architecture)")
    try:
        load_model(module, str(path), strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise ConfigError(f"{path} does not fit config {cfg.name!r} ({first})") from None


def train_virtualmodel(
    data: list[Path], config: str | Path, run: Path, stage: str | None = None, max_steps: int | None = None, resume: bool = False
) -> dict[str, TrainResult]:
    """What ``hoiforge train virtualmodel`` runs: stage 1 then 2 (or one ``stage``), ``max_steps`` each."""
    cfg = load_config(config)
    if stage is not None and stage not in STAGES:
        raise ConfigError(f"--stage must be one of {', '.join(STAGES)}, not {stage!r}")
    stages = (stage,) if stage else STAGES
    return VirtualModelTrainer(cfg, data, run).fit(stages, max_steps=max_steps, resume=resume)
