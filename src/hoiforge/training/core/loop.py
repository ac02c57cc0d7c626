"""The accelerate training loop (see the package docstring for the contract a trainer follows)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hoiforge.training.core import checkpoints as ckpt
from hoiforge.training.core import run_lock
from hoiforge.training.core.config import TrainConfig
from hoiforge.training.core.disk_full import saving
from hoiforge.training.core.metrics import MetricsLog
from hoiforge.training.core.seeding import seed_everything, step_seed

log = logging.getLogger("hoiforge.training")

WEIGHTS = "weights"
VALIDATION = "validation"
EMA_DIR = "ema"

DataFn = Callable[[int], Iterable[Any]]
LossFn = Callable[[Any, Mapping[str, nn.Module]], torch.Tensor]
ValidateFn = Callable[[int, Mapping[str, nn.Module]], Mapping[str, Any]]


@dataclass
class TrainResult:
    step: int  # the step the run stopped at (== max_steps unless the data ran out)
    last_loss: float | None
    weights: dict[str, Path] = field(default_factory=dict)  # model name -> safetensors of the final weights
    ema_weights: dict[str, Path] = field(default_factory=dict)
    resumed_from: int | None = None


def weights_path(output_dir: Path, stage: str, model: str, ema: bool = False) -> Path:
    return Path(output_dir) / WEIGHTS / stage / f"{model}{'.ema' if ema else ''}.safetensors"


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors anywhere in a (nested) dict/list/tuple moved to ``device``; everything else untouched."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Trainer:
    """Train ``trainable`` modules on ``loss(batch, models)`` over ``data(start_step)``; see the package docstring."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        trainable: Mapping[str, nn.Module],
        data: DataFn,
        loss: LossFn,
        frozen: Mapping[str, nn.Module] | None = None,
        validate: ValidateFn | None = None,
        metadata: Mapping[str, str] | None = None,
        accelerator=None,
    ):
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        if not trainable:
            raise ValueError("Trainer needs at least one trainable module")
        overlap = set(trainable) & set(frozen or {})
        if overlap:
            raise ValueError(f"modules both trainable and frozen: {sorted(overlap)}")
        self.config = config
        self.trainable = dict(trainable)
        self.frozen = dict(frozen or {})
        self.data = data
        self.loss = loss
        self.validate = validate
        self.metadata = {str(k): str(v) for k, v in (metadata or {}).items()}
        self.accelerator = accelerator or Accelerator(
            mixed_precision=config.mixed_precision,
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            project_config=ProjectConfiguration(project_dir=str(config.output_dir)),
        )
        self.output_dir = Path(config.output_dir)
        self.step = 0
        launched = int(os.environ.get("WORLD_SIZE", 1))
        if launched > 1 and self.accelerator.num_processes == 1:
            # Every process would train alone and write the same files.
            raise RuntimeError(
                f"{launched} processes were launched but accelerate sees one (no GPU?); "
                "on CPUs set ACCELERATE_USE_CPU=1 (or `accelerate launch --cpu`)"
            )

    # -- the weight dtype of frozen modules under mixed precision (trainable ones stay fp32 masters)
    @property
    def weight_dtype(self) -> torch.dtype:
        return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.accelerator.mixed_precision, torch.float32)

    def fit(self, resume: bool = False) -> TrainResult:
        with run_lock.hold(self.output_dir):  # one trainer per RUN: a second would delete this one's temp checkpoint
            return self._fit(resume)

    def _fit(self, resume: bool) -> TrainResult:
        cfg, acc = self.config, self.accelerator
        if cfg.allow_tf32 and torch.cuda.is_available():
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if acc.is_main_process:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            ckpt.rotate(self.output_dir, cfg.name, None)  # temp dirs of a save that was killed

        for module in self.frozen.values():
            module.requires_grad_(False).eval().to(acc.device)
            if self.weight_dtype != torch.float32:
                module.to(dtype=self.weight_dtype)
        if cfg.gradient_checkpointing:
            for module in (*self.trainable.values(), *self.frozen.values()):
                if hasattr(module, "enable_gradient_checkpointing"):
                    module.enable_gradient_checkpointing()

        names = list(self.trainable)
        params = [p for m in self.trainable.values() for p in m.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the trainable modules have no parameter with requires_grad=True")
        optimizer = self._optimizer(params)
        scheduler = self._scheduler(optimizer)
        prepared = acc.prepare(*self.trainable.values(), optimizer, scheduler)
        models_p, optimizer, scheduler = list(prepared[: len(names)]), prepared[-2], prepared[-1]
        models = {**self.frozen, **dict(zip(names, models_p, strict=True))}
        trained_params = [p for m in models_p for p in m.parameters() if p.requires_grad]

        ema = self._make_ema() if cfg.ema else None
        metrics = MetricsLog(self.output_dir, cfg.name)

        start, resumed_from = 0, None
        latest = ckpt.latest_complete(self.output_dir, cfg.name) if resume else None
        if latest is not None:
            start, path = latest
            try:
                acc.load_state(str(path))
                if ema is not None:
                    self._load_ema(ema, path)
            except Exception as e:  # noqa: BLE001 - verified files that still do not load: say which, not 100 lines
                first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise ckpt.CheckpointError(
                    f"checkpoint {path} does not load into this run's models ({type(e).__name__}: {first}); "
                    "resume with the config it was trained with, or train into another --out"
                ) from None
            resumed_from = start
            log.info("%s: resumed from %s (step %d)", cfg.name, path, start)
        if acc.is_main_process:
            metrics.forget_after(start)
        self.step = start

        last_loss = None
        if start < cfg.max_steps:
            last_loss = self._loop(start, models, models_p, trained_params, optimizer, scheduler, ema, metrics)

        acc.wait_for_everyone()
        result = TrainResult(step=self.step, last_loss=last_loss, resumed_from=resumed_from)
        if acc.is_main_process:
            for name, module in zip(names, models_p, strict=True):
                with self._disk_full_guard(f"the final weights of {cfg.name}/{name}", self.output_dir / WEIGHTS):
                    result.weights[name] = self._save_weights(acc.unwrap_model(module), name, ema=None)
                    if ema is not None:
                        result.ema_weights[name] = self._save_weights(acc.unwrap_model(module), name, ema=ema[name])
        acc.wait_for_everyone()
        acc.free_memory()
        return result

    # -- the loop
    def _loop(self, start, models, models_p, trained_params, optimizer, scheduler, ema, metrics) -> float | None:
        from tqdm.auto import tqdm

        cfg, acc = self.config, self.accelerator
        batches: Iterator[Any] = iter(self.data(start))
        bar = tqdm(total=cfg.max_steps, initial=start, desc=cfg.name, disable=not (cfg.progress and acc.is_local_main_process))
        t_log, steps_since_log, t0 = time.perf_counter(), 0, time.perf_counter()
        last_loss = None
        skipped, skipped_total = 0, 0  # samples the loaders skipped (bad members), since the last row / in all
        step = start
        while step < cfg.max_steps:
            for m in models_p:
                m.train()
            losses = []
            for micro in range(cfg.gradient_accumulation_steps):
                # Seeded before the batch is fetched too: a loader without workers draws from the global RNGs.
                seed_everything(step_seed(cfg.seed, step, micro, acc.process_index))
                try:
                    batch = next(batches)
                except StopIteration:
                    log.warning("%s: the data ran out at step %d of %d", cfg.name, step, cfg.max_steps)
                    bar.close()
                    return last_loss
                if isinstance(batch, Mapping):
                    skipped += int(batch.pop("skipped", 0))
                batch = to_device(batch, acc.device)
                with acc.accumulate(*models_p):
                    with acc.autocast():
                        loss = self.loss(batch, models)
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.max_grad_norm is not None:
                        acc.clip_grad_norm_(trained_params, cfg.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach().float())
            step += 1
            self.step = step
            steps_since_log += 1
            if ema is not None:
                for name, m in zip(self.trainable, models_p, strict=True):
                    ema[name].step([p for p in m.parameters() if p.requires_grad])

            is_last = step == cfg.max_steps
            if step % cfg.log_every == 0 or is_last:
                # Every process joins the gather; only the main one writes.
                step_loss = acc.gather(torch.stack(losses).mean().reshape(1)).mean().item()
                skipped_all = int(acc.gather(torch.tensor([skipped], device=acc.device)).sum().item())
                skipped_total, skipped = skipped_total + skipped_all, 0
                now = time.perf_counter()
                it_s = steps_since_log / max(now - t_log, 1e-9)
                t_log, steps_since_log = now, 0
                last_loss = step_loss
                lr = scheduler.get_last_lr()[0]
                if acc.is_main_process:
                    metrics.write(step, loss=step_loss, lr=float(lr), it_s=it_s, elapsed_s=now - t0, skipped=skipped_all)
                bar.set_postfix(loss=f"{step_loss:.4f}", lr=f"{lr:.2e}", refresh=False)
            bar.update(1)
            if step % cfg.checkpoint_every == 0 or is_last:
                root, tmp = ckpt.checkpoint_root(self.output_dir), ckpt.temp_dir(self.output_dir, cfg.name, step)
                with self._disk_full_guard(f"the step-{step} checkpoint of {cfg.name}", root, cleanup=tmp):
                    self._save_checkpoint(step, ema)
                if not is_last:
                    # The data restarts at every checkpoint, as a run resumed from it starts data(step): the
                    # stream (shards drawn, shuffle buffer, augmentation RNG) is then the same in both (exact resume).
                    batches = iter(self.data(step))
            if self.validate is not None and ((cfg.validate_every and step % cfg.validate_every == 0) or is_last):
                self._run_validation(step, models, models_p, ema)
        bar.close()
        if skipped_total and acc.is_main_process:
            log.warning(
                "%s: %d samples skipped in this run (a member failed to decode; the warnings above name them)", cfg.name, skipped_total
            )
        return last_loss

    # -- optimizer, schedule, EMA
    def _optimizer(self, params):
        o = self.config.optimizer
        cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
        return cls(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay, eps=o.eps)

    def _scheduler(self, optimizer):
        from diffusers.optimization import get_scheduler

        o, n = self.config.optimizer, self.accelerator.num_processes
        # accelerate steps a prepared scheduler once per process per optimizer step (diffusers' examples scale the same way).
        return get_scheduler(
            o.schedule, optimizer, num_warmup_steps=o.warmup_steps * n, num_training_steps=max(1, self.config.max_steps) * n
        )

    def _make_ema(self) -> dict[str, Any]:
        from diffusers.training_utils import EMAModel

        e = self.config.ema
        out = {}
        for name, module in self.trainable.items():
            shadow = EMAModel([p for p in module.parameters() if p.requires_grad], decay=e.decay, update_after_step=e.update_after_step)
            shadow.to(self.accelerator.device)
            out[name] = shadow
        return out

    def _trained_names(self, name: str) -> list[str]:
        return [n for n, p in self.trainable[name].named_parameters() if p.requires_grad]

    def _save_ema(self, ema: dict[str, Any], directory: Path) -> None:
        from safetensors.torch import save_file

        (directory / EMA_DIR).mkdir(parents=True, exist_ok=True)
        for name, shadow in ema.items():
            tensors = {n: t.detach().contiguous().cpu() for n, t in zip(self._trained_names(name), shadow.shadow_params, strict=True)}
            meta = {"optimization_step": str(shadow.optimization_step), "decay": str(shadow.decay)}
            save_file(tensors, str(directory / EMA_DIR / f"{name}.safetensors"), metadata=meta)

    def _load_ema(self, ema: dict[str, Any], directory: Path) -> None:
        from safetensors import safe_open

        for name, shadow in ema.items():
            path = directory / EMA_DIR / f"{name}.safetensors"
            if not path.exists():
                log.warning(
                    "%s: checkpoint %s has no EMA weights for %s; EMA restarts from the current weights", self.config.name, directory, name
                )
                continue
            with safe_open(str(path), framework="pt") as f:
                shadow.optimization_step = int(f.metadata().get("optimization_step", 0))
                for n, t in zip(self._trained_names(name), shadow.shadow_params, strict=True):
                    t.copy_(f.get_tensor(n).to(t.device, t.dtype))

    # -- checkpoints and weights
    def _disk_full_guard(self, what: str, folder: Path, cleanup: Path | None = None):
        """A full disk while saving ``what`` becomes one OutputError naming what survived (disk_full.saving)."""
        latest = ckpt.latest_checkpoint(self.output_dir, self.config.name)
        survived = f"checkpoint {latest[1]} (step {latest[0]}) is intact" if latest else "no checkpoint of it was saved before"
        return saving(what, folder, survived, cleanup=cleanup if self.accelerator.is_main_process else None)

    def _save_checkpoint(self, step: int, ema) -> None:
        acc, cfg = self.accelerator, self.config
        tmp, final = ckpt.temp_dir(self.output_dir, cfg.name, step), ckpt.checkpoint_dir(self.output_dir, cfg.name, step)
        if acc.is_main_process:
            tmp.mkdir(parents=True, exist_ok=True)  # before anyone writes: every process saves its RNG state into it
        acc.wait_for_everyone()
        acc.save_state(str(tmp), safe_serialization=True)
        if acc.is_main_process:
            if ema is not None:
                self._save_ema(ema, tmp)
            (tmp / "hoiforge.json").write_text(
                json.dumps({"stage": cfg.name, "step": step, "models": list(self.trainable), **self.metadata})
            )
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.write_checksums(tmp)  # last: a checkpoint without it (or not matching it) is incomplete
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            ckpt.rotate(self.output_dir, cfg.name, cfg.checkpoints_keep)
        acc.wait_for_everyone()

    def _save_weights(self, module: nn.Module, name: str, ema) -> Path:
        from safetensors.torch import save_model

        path = weights_path(self.output_dir, self.config.name, name, ema=ema is not None)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {**self.metadata, "stage": self.config.name, "step": str(self.step), "model": name, "ema": str(ema is not None)}
        if ema is None:
            save_model(module, str(path), metadata=meta)
            return path
        trained = [p for p in module.parameters() if p.requires_grad]
        ema.store(trained)
        ema.copy_to(trained)
        try:
            save_model(module, str(path), metadata=meta)
        finally:
            ema.restore(trained)
        return path

    # -- validation images (main process; other processes wait)
    def _run_validation(self, step: int, models, models_p, ema) -> None:
        acc, cfg = self.accelerator, self.config
        if acc.is_main_process:
            swap = ema is not None and cfg.ema.validate_with_ema
            trained = {n: [p for p in m.parameters() if p.requires_grad] for n, m in zip(self.trainable, models_p, strict=True)}
            if swap:
                for n, shadow in ema.items():
                    shadow.store(trained[n])
                    shadow.copy_to(trained[n])
            for m in models_p:
                m.eval()
            unwrapped = {**self.frozen, **{n: acc.unwrap_model(m) for n, m in zip(self.trainable, models_p, strict=True)}}
            try:
                with torch.no_grad(), acc.autocast():
                    images = self.validate(step, unwrapped) or {}
            finally:
                if swap:
                    for n, shadow in ema.items():
                        shadow.restore(trained[n])
            folder = self.output_dir / VALIDATION
            folder.mkdir(parents=True, exist_ok=True)
            for key, image in images.items():
                image.save(folder / f"{cfg.name}-{step:08d}-{key}.png")
        acc.wait_for_everyone()
