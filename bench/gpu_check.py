"""One prepared GPU check: real-size training steps, generation and paper-grade stage throughput, in one run.

No weights, no network, no Ray: every network is the real architecture with random weights,
built from the configs the project ships (VirtualModel ``sd15`` with SD1.5 / DINOv2-base shapes,
ShoeModel ``paper``, the HoIHuman paper recipe's backends at their recipe sizes and batches).
Random weights cost the same FLOPs and memory as trained ones, so what is measured is speed and
peak memory, never quality.

- VirtualModel ``sd15``: stage 1 (base UNet) and stage 2 (IB + CB branches over the frozen base)
  training steps through the project's own trainer (``VirtualModelTrainer``'s losses on the
  shared ``training.core.Trainer``: accelerate, bf16 autocast, gradient checkpointing, Adam, clip)
  at 512² with precomputed latents/text/DINOv2 members (the paper recipe's precompute stage), then
  ``VirtualModelPipeline.batch`` generation: 30 DDIM steps with CFG at 512², batch 1 and the eval
  batch.
- ShoeModel ``paper``: SW (ControlNet over a frozen SD1.5), WD (SegFormer-B5, 640²), LpS1 (ViTPose-B,
  256²), LpS2 (MLP, batch 4096), each through its module's ``build`` + ``loss`` on the same Trainer.
- Paper-grade stages at the recipe's input sizes and batches, images/s in bf16 and fp32 (see
  ``stage_cases`` for each one's path; LaMa has no from-config path: a stand-in, stated in the table).

    python bench/gpu_check.py                     # on one GPU (~5-8 min on an H100): gpu_check.json + gpu_check.md
    python bench/gpu_check.py --smoke             # tiny sizes on CPU in seconds (tests/test_gpu_check.py runs it)
    python bench/gpu_check.py --only vm sw        # cases whose name starts with these
    python bench/gpu_hours.py --measured gpu_check.json   # HoIHuman H100-hours from the measured images/s

A case that fails (out of memory at every batch, a kernel without bf16, ...) is recorded with its
error and the run goes on; training cases halve their per-device batch on out-of-memory. Cases
past ``--budget`` seconds are skipped (recorded), so one command never runs past the device's
per-command limit. Last line: the written paths.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # tests.random_qwen2_vl
PHOTO = ROOT / "tests" / "data" / "astronaut.png"
CAPTION = (
    "a young woman with long dark hair stands in a bright kitchen, holding a white ceramic coffee cup with both hands in front "
    "of her chest; she wears a grey knitted sweater and blue jeans, behind her a wooden shelf with plants and glass jars, "
    "soft daylight from a window on the left"
)  # a QwenVL-length caption: 2-3 CLIP chunks, as the trainers see them

# -- per-device batches ----------------------------------------------------------------------
# The paper configs are the one source: their batch_size is the paper's GLOBAL batch and their
# per_device_batch what one 80 GB card holds (`hoiforge train ... --dry-run` sizes it); the papers'
# GPU counts are the world sizes (shared/PAPER_TABLES.md: WD on 4 V100s, the rest on 8).
PROCESSES = {"vm-base": 8, "vm-branches": 8, "sw": 8, "wd": 4, "lps1": 8, "lps2": 8}


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    processes: int
    per_device: int
    accumulation: int


def paper_settings(job: str):
    """The TrainSettings of ``job`` in the paper config (sd15 for VirtualModel, ``paper`` for ShoeModel)."""
    if job.startswith("vm-"):
        from hoiforge.training.virtualmodel.config import load_config

        return getattr(load_config("sd15").training, job.removeprefix("vm-"))
    from hoiforge.training.shoemodel.config import preset

    return getattr(preset("paper"), job).train


def per_device_batch(job: str, smoke: bool = False) -> BatchPlan:
    """The per-device batch one card runs in this check: the paper config's plan (training.core.plan_batch)."""
    if smoke:
        return BatchPlan(2, 1, 2, 1) if job != "lps2" else BatchPlan(64, 1, 64, 1)
    from hoiforge.training.core import plan_batch

    settings = paper_settings(job)
    p = plan_batch(settings.batch_size, PROCESSES[job], settings.per_device_batch)
    return BatchPlan(p.global_batch, p.world_size, p.per_device_batch, p.accumulation_steps)


# -- SD1.5 / DINOv2-base shapes (the published config.json files), for random weights -----------
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)  # fmt: skip
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, block_out_channels=[128, 256, 512, 512], sample_size=512,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
)  # fmt: skip
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
)  # fmt: skip
DINOV2_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4, patch_size=14, image_size=518)
MIT_B5 = dict(hidden_sizes=[64, 128, 320, 512], depths=[3, 6, 40, 3], num_attention_heads=[1, 2, 5, 8], sr_ratios=[8, 4, 2, 1],
              decoder_hidden_size=768)  # fmt: skip
VIT_B = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4)


# -- measuring -------------------------------------------------------------------------------
class Ctx:
    def __init__(self, smoke: bool, device: str, dtypes: list[str], tmp: Path, steps: int | None):
        import torch

        self.smoke, self.tmp = smoke, tmp
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.dtypes = dtypes
        self.steps = steps if steps is not None else (1 if smoke else 5)
        self.warmup = 0 if smoke else 2

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)

    def reset_peak(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak_gb(self) -> float | None:
        if not self.cuda:
            return None  # CPU: no allocator peak worth quoting
        import torch

        return round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)

    @contextlib.contextmanager
    def build(self):
        """Networks built inside are initialised on the device (an 8B model's random init on CPU takes minutes)."""
        import torch

        with torch.device(self.device):
            yield


def is_oom(e: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(e, oom) or "out of memory" in str(e).lower()


def _gc_cuda(ctx: Ctx) -> None:
    gc.collect()
    if ctx.cuda:
        import torch

        torch.cuda.empty_cache()


class _NoSaveTrainer:
    """The training core's Trainer, minus the final weight files (a bench keeps no weights)."""

    def __new__(cls, *args, **kwargs):
        from hoiforge.training.core import Trainer

        class NoSave(Trainer):
            def _save_weights(self, module, name, ema):
                return Path(self.output_dir) / "not-saved"

        return NoSave(*args, **kwargs)


def time_training(ctx: Ctx, name: str, *, trainable, frozen, loss, batches, mixed: str, checkpointing: bool, lr: float,
                  optimizer: str = "adam") -> dict:  # fmt: skip
    """s/step and peak memory of ``steps`` optimizer steps (after ``warmup``) of the core Trainer.

    ``batches()`` yields the batches (on the device already, as a prefetching loader hands them
    over); each step's time runs from one batch request to the next, with the device synchronised.
    Accumulation 1: every micro-batch is an optimizer step, so s/step is what one micro-batch of
    an accumulating run costs plus the optimizer step."""
    from accelerate.state import AcceleratorState

    from hoiforge.training.core import OptimizerConfig, TrainConfig

    AcceleratorState._reset_state(reset_partial_state=True)  # each case picks its own mixed precision
    for module in trainable.values():
        module.zero_grad(set_to_none=True)  # a try that ran out of memory may have left gradients behind
    if not ctx.cuda:
        mixed = "no"  # as the trainers do: autocast fp16/bf16 is a GPU path
    n = ctx.warmup + ctx.steps
    stamps: list[float] = []

    def data(start):
        it = iter(batches())
        for _ in range(n):
            ctx.sync()
            stamps.append(time.perf_counter())
            yield next(it)
        ctx.sync()
        stamps.append(time.perf_counter())

    cfg = TrainConfig(
        output_dir=ctx.tmp / name, name=name, max_steps=n + 1, optimizer=OptimizerConfig(name=optimizer, lr=lr),
        mixed_precision=mixed, gradient_checkpointing=checkpointing, checkpoint_every=10**9, log_every=10**9, progress=False,
    )  # fmt: skip
    ctx.reset_peak()
    trainer = _NoSaveTrainer(cfg, trainable=trainable, frozen=frozen, data=data, loss=loss)
    trainer.fit()
    steps = [b - a for a, b in itertools.pairwise(stamps)][ctx.warmup :]
    del trainer
    return {"s_per_step": sum(steps) / len(steps), "peak_gb": ctx.peak_gb(), "mixed_precision": mixed, "steps_timed": len(steps)}


def with_oom_fallback(ctx: Ctx, plan: BatchPlan, run) -> dict:
    """``run(batch)`` at the plan's per-device batch, halved on out-of-memory until it fits."""
    tried = []
    b = plan.per_device
    while True:
        try:
            out = run(b)
            break
        except Exception as e:
            if not (ctx.cuda and is_oom(e)) or b == 1:
                raise
            tried.append(b)
        _gc_cuda(ctx)  # outside the except clause: its traceback (and the step's tensors) is gone by now
        b //= 2
    out.update(batch=b, plan={**plan.__dict__}, oom_at=tried)
    out["samples_per_s"] = b / out["s_per_step"]
    return out


def time_calls(ctx: Ctx, fn, iters: int | None = None) -> float:
    """Seconds per call of ``fn()`` (after one warm-up call; none in smoke runs), the device synchronised."""
    if not ctx.smoke:
        fn()
    ctx.sync()
    iters = iters or (1 if ctx.smoke else 3)
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    ctx.sync()
    return (time.perf_counter() - t) / iters


# -- inputs ------------------------------------------------------------------------------------
def photo(side: int):
    """The test photo (tests/data/astronaut.png) at side x side, uint8 RGB, with a central product mask and its edges."""
    import cv2
    import numpy as np
    from PIL import Image

    rgb = cv2.resize(np.asarray(Image.open(PHOTO).convert("RGB")), (side, side), interpolation=cv2.INTER_AREA)
    mask = np.zeros((side, side), np.uint8)
    mask[side // 4 : 3 * side // 4, side // 3 : 2 * side // 3] = 1
    edges = cv2.Canny(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), 75, 100)
    return rgb, mask, edges


# -- VirtualModel ------------------------------------------------------------------------------
def vm_config(smoke: bool):
    from hoiforge.training.virtualmodel.config import VirtualModelConfig, load_config

    if smoke:
        return load_config("tiny")
    cfg = load_config("sd15")
    doc = cfg.model_dump(mode="json")
    # sd15 loads pretrained SD1.5 + DINOv2-base; the same shapes with random weights instead.
    doc["models"] = {"source": "random", "seed": 0, "unet": SD15_UNET, "vae": SD15_VAE, "text_encoder": SD15_TEXT,
                     "dino_config": DINOV2_BASE, "dino_image_size": cfg.models.dino_image_size,
                     "text_chunks": cfg.models.text_chunks, "precomputed": cfg.models.precomputed}  # fmt: skip
    return VirtualModelConfig.model_validate(doc)


def vm_batch(ctx: Ctx, cfg, comp, b: int, stage: str) -> dict:
    """A loader batch as VirtualModelTrainer receives it, with the precomputed members (latent, text, dino)."""
    import numpy as np
    import torch

    from hoiforge.models.text_encoding import CLIP_CONTEXT

    side = cfg.data.resolution
    rgb, mask, edges = photo(side)
    g = torch.Generator().manual_seed(0)
    width = comp.text_encoder.config.hidden_size
    batch = {
        "image": torch.from_numpy(np.stack([rgb] * b)),
        "latent": torch.randn(b, 4, side // 8, side // 8, generator=g),
        "text": [torch.randn(CLIP_CONTEXT * cfg.models.text_chunks, width, generator=g) for _ in range(b)],
        "caption": [CAPTION] * b,
    }
    if stage == "branches":
        d = comp.dino.config
        tokens = (cfg.models.dino_image_size // d.patch_size) ** 2 + 1
        batch.update(
            pose=torch.from_numpy(np.stack([rgb[::-1].copy()] * b)),
            edges=torch.from_numpy(np.stack([edges] * b)),
            mask=torch.from_numpy(np.stack([mask] * b)),
            dino=torch.randn(b, tokens, d.hidden_size, generator=g),
        )
    from hoiforge.training.core import to_device

    return to_device(batch, ctx.device)


def vm_cases(ctx: Ctx) -> list[dict]:
    import torch

    from hoiforge.training.virtualmodel import conditioning as C
    from hoiforge.training.virtualmodel.components import build_components, ddim_scheduler, noise_scheduler
    from hoiforge.training.virtualmodel.model import VirtualModelBranches
    from hoiforge.training.virtualmodel.pipeline import VirtualModelPipeline
    from hoiforge.training.virtualmodel.train import VirtualModelTrainer

    cfg = vm_config(ctx.smoke)
    t = cfg.training
    with ctx.build():
        comp = build_components(cfg)
    vm = VirtualModelTrainer(cfg, [], ctx.tmp / "vm")
    vm.components = comp
    vm.text = C.TextEncoder(comp.tokenizer, comp.text_encoder, cfg.models.text_chunks)
    vm.noise = noise_scheduler(comp)
    rows = []
    side = cfg.data.resolution

    def stage_row(stage: str, run) -> None:
        plan = per_device_batch(f"vm-{stage}", ctx.smoke)
        try:
            r = with_oom_fallback(ctx, plan, run)
            rows.append({"case": f"vm-{stage}", "section": "VirtualModel", "what": f"{cfg.name} stage {stage} train step @{side}²", **r,
                         "gradient_checkpointing": getattr(t, stage).gradient_checkpointing})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a case that fails is recorded with its error and the run goes on
            rows.append(failed(f"vm-{stage}", "VirtualModel", f"{cfg.name} stage {stage} train step @{side}²", e))

    # Stage 1: the base UNet, text dropped with p = 0.1 (the trainer's own loss).
    comp.unet.requires_grad_(True)
    stage_row(
        "base",
        lambda b: time_training(
            ctx, "base", trainable={"unet": comp.unet}, frozen={"vae": comp.vae, "text_encoder": comp.text_encoder, "dino": comp.dino},
            loss=vm._base_loss, batches=lambda: _repeat(vm_batch(ctx, cfg, comp, b, "base")), mixed=t.base.mixed_precision,
            checkpointing=t.base.gradient_checkpointing, lr=t.base.lr, optimizer=t.base.optimizer,
        ),
    )  # fmt: skip
    _gc_cuda(ctx)
    # Stage 2: IB + CB over the frozen base (which the core casts to the mixed-precision dtype).
    torch.manual_seed(t.branches.seed)
    with ctx.build():
        branches = VirtualModelBranches(comp.unet, comp.branch_spec(cfg))
    vm.branches = branches
    stage_row(
        "branches",
        lambda b: time_training(
            ctx, "branches", trainable={"branches": branches},
            frozen={"vae": comp.vae, "text_encoder": comp.text_encoder, "dino": comp.dino, "unet": comp.unet},
            loss=vm._branches_loss, batches=lambda: _repeat(vm_batch(ctx, cfg, comp, b, "branches")), mixed=t.branches.mixed_precision,
            checkpointing=t.branches.gradient_checkpointing, lr=t.branches.lr, optimizer=t.branches.optimizer,
        ),
    )  # fmt: skip
    _gc_cuda(ctx)

    # Generation: what `generate virtualmodel` / `eval virtualmodel` run (load_run's device and dtype policy).
    from hoiforge.eval.virtualmodel_eval import Options as EvalOptions
    from hoiforge.models.device import device_dtype

    _, dtype = device_dtype(str(ctx.device), None)
    for m in (comp.unet, comp.vae, comp.text_encoder, comp.dino, branches):
        m.to(ctx.device).eval().requires_grad_(False)
        m.to(dtype=dtype)
    text = C.TextEncoder(comp.tokenizer, comp.text_encoder, cfg.models.text_chunks)
    pipe = VirtualModelPipeline(comp.unet, comp.vae, text, comp.dino, branches, ddim_scheduler(comp), comp.dino_image_size)
    rgb, mask, _ = photo(side)
    steps = 1 if ctx.smoke else cfg.generate.steps
    eval_batch = 2 if ctx.smoke else EvalOptions.gen_batch  # eval virtualmodel --batch default

    def generate(b: int):
        return pipe.batch([CAPTION] * b, height=side, width=side, products=[rgb] * b, masks=[mask.astype(bool)] * b,
                          poses=[rgb] * b, steps=steps, guidance=cfg.generate.cfg, seeds=list(range(b)))  # fmt: skip

    for b in (1, eval_batch):
        what = f"generate {steps} DDIM steps, CFG {cfg.generate.cfg} @{side}², batch {b}"
        try:
            ctx.reset_peak()
            s = time_calls(ctx, lambda b=b: generate(b), iters=1)
            rows.append({"case": f"vm-generate-b{b}", "section": "VirtualModel", "what": what, "batch": b, "dtype": str(dtype).removeprefix("torch."),
                         "s_per_image": s / b, "s_per_call": s, "peak_gb": ctx.peak_gb()})  # fmt: skip
        except Exception as e:  # noqa: BLE001 - a case that fails is recorded with its error and the run goes on
            rows.append(failed(f"vm-generate-b{b}", "VirtualModel", what, e))
        _gc_cuda(ctx)
    return rows


def _repeat(batch):
    while True:
        yield batch


# -- ShoeModel ---------------------------------------------------------------------------------
def shoe_config(smoke: bool):
    from hoiforge.training.shoemodel.config import load_config

    cfg = load_config("tiny" if smoke else "paper")
    if not smoke:  # paper: the same architectures with random weights (no local checkpoints)
        cfg.wd.pretrained, cfg.wd.architecture = None, dict(MIT_B5)
        cfg.lps1.pretrained, cfg.lps1.architecture = None, dict(VIT_B)
    return cfg


def sd15_base(ctx: Ctx) -> dict:
    """The SW base as load_base returns it: SD1.5 shapes with random weights (the byte-level tokenizer of sw.tiny_base)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from hoiforge.training.shoemodel import sw

    base = sw.tiny_base({})
    if ctx.smoke:
        return base
    with ctx.build():
        base["unet"] = UNet2DConditionModel(**SD15_UNET)
        base["vae"] = AutoencoderKL(**SD15_VAE)
        base["text_encoder"] = CLIPTextModel(CLIPTextConfig(**SD15_TEXT, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    return base


def shoe_cases(ctx: Ctx, which: list[str]) -> list[dict]:
    import numpy as np
    import torch

    from hoiforge.training.core import to_device
    from hoiforge.training.shoemodel import lps1, lps2, sw, wd
    from hoiforge.training.shoemodel.train import _mixed_precision

    cfg = shoe_config(ctx.smoke)
    rows = []

    def module_row(name: str, what: str, build, batches, loss, settings, frozen=None, model_name=None):
        if name not in which:
            return
        plan = per_device_batch(name, ctx.smoke)
        try:
            with ctx.build():
                model = build()

            def run(b):
                return time_training(ctx, name, trainable={model_name or name: model}, frozen=frozen, loss=loss,
                                     batches=lambda: batches(b), mixed=_mixed_precision(settings.mixed_precision),
                                     checkpointing=settings.gradient_checkpointing, lr=settings.lr, optimizer=settings.optimizer)  # fmt: skip

            r = with_oom_fallback(ctx, plan, run)
            rows.append(
                {"case": name, "section": "ShoeModel", "what": what, **r, "gradient_checkpointing": settings.gradient_checkpointing}
            )
        except Exception as e:  # noqa: BLE001 - a case that fails is recorded with its error and the run goes on
            rows.append(failed(name, "ShoeModel", what, e))
        _gc_cuda(ctx)

    rgb, mask, _ = photo(cfg.sw.resolution)
    g = torch.Generator().manual_seed(0)

    # SW: ControlNet (6 conditioning channels) over the frozen SD1.5, sw.make_loss.
    base = sd15_base(ctx) if "sw" in which else None
    r = cfg.sw.resolution

    def sw_batches(b):
        pixels = torch.from_numpy(np.stack([(rgb.astype(np.float32) / 127.5 - 1).transpose(2, 0, 1)] * b))
        cond = torch.from_numpy(np.stack([sw.condition(np.dstack([rgb, mask * 255]), rgb[::-1])] * b))
        return _repeat(to_device({"pixel_values": pixels, "conditioning": cond, "caption": [CAPTION] * b}, ctx.device))

    module_row("sw", f"SW ControlNet train step @{r}²", lambda: sw.controlnet_from_unet(base["unet"], base["vae"]), sw_batches,
               base and sw.make_loss(base["tokenizer"], base["scheduler"]), cfg.sw.train,
               frozen=base and {"vae": base["vae"], "unet": base["unet"], "text_encoder": base["text_encoder"]}, model_name="controlnet")  # fmt: skip
    base = None  # frees the SD1.5 base before WD
    _gc_cuda(ctx)

    # WD: SegFormer, 3 classes, wd.loss.
    s = cfg.wd.size

    def wd_batches(b):
        x = torch.randn(b, 3, s, s, generator=g)
        labels = torch.randint(0, 3, (b, s, s), generator=g)
        return _repeat(to_device({"pixel_values": x, "labels": labels}, ctx.device))

    arch = "SegFormer-B5" if not ctx.smoke else "SegFormer (tiny)"
    module_row("wd", f"WD {arch} train step @{s}²", lambda: wd.build(cfg.wd), wd_batches, wd.loss, cfg.wd.train)

    # LpS1: ViTPose with the 8-point head, target-weighted heatmap MSE.
    c1 = cfg.lps1

    def lps1_batches(b):
        x = torch.randn(b, 3, c1.size, c1.size, generator=g)
        target = torch.rand(b, 8, c1.heatmap_size, c1.heatmap_size, generator=g)
        return _repeat(to_device({"pixel_values": x, "target": target, "weight": torch.ones(b, 8)}, ctx.device))

    arch = "ViTPose-B" if not ctx.smoke else "ViTPose (tiny)"
    module_row("lps1", f"LpS1 {arch} train step @{c1.size}²", lambda: lps1.build(c1), lps1_batches, lps1.loss, c1.train)

    # LpS2: the leg MLP on its in-memory table (lps2.TableBatches: the trainer's own batches, drawn on the CPU per step).
    c2 = cfg.lps2

    def lps2_batches(b):
        n = 1000
        points = np.zeros((n, 12, 3), np.float32)
        points[..., :2] = np.random.default_rng(0).uniform(100, 900, (n, 12, 2))
        points[..., 2] = 0.9
        settings = c2.model_copy(update={"train": c2.train.model_copy(update={"batch_size": b})})
        return (to_device(v, ctx.device) for v in lps2.TableBatches(points, np.full(n, 1000.0, np.float32), settings, 0))

    module_row("lps2", f"LpS2 MLP ({c2.depth} blocks x {c2.hidden}) train step", lambda: lps2.build(c2), lps2_batches,
               lps2.make_loss(lps2.scheduler(c2)), c2.train)  # fmt: skip
    return rows


# -- paper-grade stages ------------------------------------------------------------------------
@dataclass
class StageCase:
    key: str  # gpu_hours.py's row key
    what: str
    batch: int
    build: object  # () -> model (fp32, on the device)
    inputs: object  # (batch, dtype) -> inputs
    forward: object  # (model, inputs) -> anything
    path: str  # how the check stands for the backend, shown in the table
    dtypes: tuple[str, ...] = ("bf16", "fp32")
    extra: dict | None = None  # recorded in the row as is


def stage_cases(ctx: Ctx) -> list[StageCase]:
    import torch
    import transformers as T
    from gpu_hours import qwen2_vl_7b_config, swin_base

    smoke = ctx.smoke
    cases = []

    def randn(*shape):
        return lambda b, dt: torch.randn(b, *shape, device=ctx.device, dtype=dt)

    # Caption first: the bounding stage of bench/gpu_hours.py, measured before the budget can run out.
    # Qwen2-VL-7B, 576 visual tokens + 40 prompt tokens, then 64 decoded tokens, batch 16. bf16 or fp32 (never fp16).
    if smoke:
        from tests.random_qwen2_vl import SIZES  # the random Qwen2-VL sizes (a test helper)

        spec = SIZES["tiny"]
        text = dict(spec["text"])
        mrope = text.pop("mrope_section")
        qcfg = T.Qwen2VLConfig(text_config=dict(vocab_size=320, **text, rope_scaling={"type": "mrope", "mrope_section": mrope}),
                               vision_config=dict(patch_size=14, spatial_merge_size=2, **spec["vision"]),
                               image_token_id=300, video_token_id=301, vision_start_token_id=302, vision_end_token_id=303)  # fmt: skip
        grid, prompt, new = 4, 8, 4
    else:
        qcfg, grid, prompt, new = qwen2_vl_7b_config(), 48, 40, 64  # 48x48 patches of 14 px = 672², merged 2x2: 576 tokens
    qb = 2 if smoke else 16
    cases.append(StageCase("caption", f"Qwen2-VL-7B prefill {grid * grid // 4}+{prompt} tokens + {new} decoded", qb,
                           lambda: T.Qwen2VLForConditionalGeneration(qcfg), lambda b, dt: qwen_inputs(ctx, qcfg, b, dt, grid, prompt),
                           lambda m, x: qwen_generate(m, x, new),
                           f"transformers Qwen2VLForConditionalGeneration.generate from config (QwenVLCaptioner's model), greedy, "
                           f"exactly {new} new tokens; prefill timed alone too", extra={"new_tokens": new, "prefill_tokens": grid * grid // 4 + prompt + 2}))  # fmt: skip

    # Person: RT-DETR r50vd (HFPersonDetector's model) @640², recipe batch 32.
    if smoke:
        rt = T.RTDetrConfig(
            backbone_config=T.RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 16, 16], depths=[1, 1, 1, 1], layer_type="basic",
                                                 out_features=["stage2", "stage3", "stage4"]),
            encoder_in_channels=[16, 16, 16], encoder_hidden_dim=16, encoder_ffn_dim=32, encoder_attention_heads=2, encoder_layers=1,
            d_model=16, decoder_in_channels=[16, 16, 16], decoder_ffn_dim=32, decoder_attention_heads=2, decoder_layers=1, num_queries=10,
            num_denoising=0,
        )  # fmt: skip
    else:
        rt = T.RTDetrConfig()
    side = 64 if smoke else 640
    cases.append(StageCase("rtdetr", f"RT-DETR r50vd @{side}²", 2 if smoke else 32, lambda: T.RTDetrForObjectDetection(rt),
                           randn(3, side, side), lambda m, x: m(pixel_values=x).logits,
                           "transformers RTDetrForObjectDetection from config (HFPersonDetector's model), forward only"))  # fmt: skip

    # Quality: CLIP ViT-L/14 + LAION MLP @224, batch 64 (LaionAestheticScorer.embed + score, minus the processor).
    from hoiforge.models.aesthetic import build_aesthetic_mlp

    if smoke:
        clip = T.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14, image_size=56,
                                  projection_dim=768)  # fmt: skip
    else:
        clip = T.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, patch_size=14,
                                  image_size=224, projection_dim=768)  # fmt: skip

    def clip_build():
        return torch.nn.ModuleDict({"clip": T.CLIPVisionModelWithProjection(clip), "mlp": build_aesthetic_mlp(768)})

    def clip_forward(m, x):
        emb = torch.nn.functional.normalize(m["clip"](pixel_values=x).image_embeds.float(), dim=-1)
        return m["mlp"](emb.to(x.dtype))

    cases.append(StageCase("clip-aesthetic", f"CLIP ViT-L/14 + LAION MLP @{clip.image_size}²", 2 if smoke else 64, clip_build,
                           randn(3, clip.image_size, clip.image_size), clip_forward,
                           "transformers CLIPVisionModelWithProjection from config + models.aesthetic.build_aesthetic_mlp"))  # fmt: skip

    # Products: GroundingDINO-B @800x1066, 60 text tokens, recipe batch 8.
    if smoke:
        gd = T.GroundingDinoConfig(
            backbone_config=T.SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], window_size=4,
                                         out_features=["stage2", "stage3", "stage4"]),
            text_config=T.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                                     max_position_embeddings=64),
            d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
            decoder_ffn_dim=32, num_queries=12, num_feature_levels=3, encoder_n_points=2, decoder_n_points=2, max_text_len=32,
        )  # fmt: skip
        hw, tokens = (64, 96), 16
    else:
        gd, hw, tokens = T.GroundingDinoConfig(backbone_config=swin_base()), (800, 1066), 60

    def gd_inputs(b, dt):
        vocab = gd.text_config.vocab_size
        return {"pixel_values": torch.randn(b, 3, *hw, device=ctx.device, dtype=dt),
                "input_ids": torch.randint(5, min(vocab, 2000), (b, tokens), device=ctx.device),
                "attention_mask": torch.ones(b, tokens, dtype=torch.long, device=ctx.device)}  # fmt: skip

    cases.append(StageCase("grounding-dino", f"GroundingDINO-B @{hw[0]}x{hw[1]}, {tokens} text tokens", 2 if smoke else 8,
                           lambda: T.GroundingDinoForObjectDetection(gd), gd_inputs, lambda m, x: m(**x).logits,
                           "transformers GroundingDinoForObjectDetection from config (GroundingDinoDetector's model), forward only"))  # fmt: skip

    # Products: SAM ViT-H image encoder @1024², batch 8 (SegmentAnythingSegmenter's encoder: half precision there, decoder fp32).
    from hoiforge.models import sam as S

    sam_arch = {"encoder_embed_dim": 32, "encoder_depth": 2, "encoder_num_heads": 2, "encoder_global_attn_indexes": [1], "image_size": 64,
                "prompt_embed_dim": 32} if smoke else S.SAM_ARCHS["vit_h"]  # fmt: skip
    sam_side = sam_arch.get("image_size", 1024)
    try:
        S.sam_modeling()
        sam_build, sam_path = (
            (lambda: S.build_sam(sam_arch).image_encoder),
            "models.sam.build_sam (segment-anything classes), image encoder",
        )
    except Exception:  # noqa: BLE001 - segment-anything absent: transformers' SAM vision encoder of the same shape (HfSamSegmenter's)
        vc = dict(hidden_size=sam_arch["encoder_embed_dim"], num_hidden_layers=sam_arch["encoder_depth"],
                  num_attention_heads=sam_arch["encoder_num_heads"], global_attn_indexes=sam_arch["encoder_global_attn_indexes"],
                  image_size=sam_side, output_channels=sam_arch.get("prompt_embed_dim", 256))  # fmt: skip
        sam_build = lambda: T.SamModel(T.SamConfig(vision_config=vc)).vision_encoder
        sam_path = "transformers SamModel vision encoder (segment-anything not installed), from config"
    cases.append(StageCase("sam-encoder", f"SAM ViT-H image encoder @{sam_side}²", 2 if smoke else 8, sam_build, randn(3, sam_side, sam_side),
                           lambda m, x: m(x), sam_path))  # fmt: skip

    # Cleanup: LaMa, TorchScript only: a stand-in of big-lama's architecture (see lama_standin), loaded by LamaInpainter.
    win = 64 if smoke else 512
    cases.append(StageCase("lama", f"LaMa-big stand-in, {win}² windows", 2 if smoke else 8, lambda: lama_inpainter(ctx, win),
                           lambda b, dt: lama_inputs(b, win), lama_forward,
                           "STAND-IN: big-lama's FFC architecture (18 blocks, 512 ch at 1/8) written in bench/gpu_check.py, "
                           "traced to TorchScript, run by models.inpaint.LamaInpainter (bf16 -> fp16 there)"))  # fmt: skip

    # Pose: ViTPose-H whole-body @256x192, 32 crops, flip test (VitPoseWholeBody.heatmaps itself).
    if smoke:
        bb = T.VitPoseBackboneConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=[64, 48],
                                     out_indices=[2])  # fmt: skip
    else:
        bb = T.VitPoseBackboneConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, intermediate_size=5120,
                                     image_size=[256, 192], out_indices=[32])  # fmt: skip
    vp = T.VitPoseConfig(backbone_config=bb, use_simple_decoder=False, num_labels=133)
    cases.append(StageCase("vitpose", f"ViTPose-H whole-body @{bb.image_size[0]}x{bb.image_size[1]}, flip test", 2 if smoke else 32,
                           lambda: T.VitPoseForPoseEstimation(vp), randn(3, *bb.image_size), vitpose_forward,
                           "transformers VitPoseForPoseEstimation from config through models.vitpose.VitPoseWholeBody.heatmaps (flip test)"))  # fmt: skip

    cases += precompute_cases(ctx)
    return cases


def precompute_cases(ctx: Ctx) -> list[StageCase]:
    """The recipe's precompute stage (batch 16): models.encoders' own encode methods over SD1.5 VAE / CLIP text / DINOv2-base."""
    import numpy as np
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, Dinov2Config, Dinov2Model

    from hoiforge.models import encoders as E
    from hoiforge.models.text_encoding import LongPromptEncoder
    from hoiforge.training.virtualmodel.tokenizer import byte_clip_tokenizer

    smoke, b = ctx.smoke, (2 if ctx.smoke else 16)
    short, views, chunks = (64 if smoke else 512), 3, 3
    vae_cfg = dict(SD15_VAE, block_out_channels=[8, 8, 16, 16], layers_per_block=1, norm_num_groups=4) if smoke else SD15_VAE
    text_cfg = dict(SD15_TEXT, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2) if smoke else SD15_TEXT
    dino_cfg = (
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, patch_size=14) if smoke else DINOV2_BASE
    )
    side = 56 if smoke else 224

    def shim(cls, **attrs):
        obj = object.__new__(cls)  # the backend without its from_pretrained: the model is built here
        obj.__dict__.update(attrs)
        return obj

    def vae_build():
        vae = AutoencoderKL(**vae_cfg)
        return shim(E.SDVaeEncoder, vae=vae, scaling_factor=0.18215, short_side=short, batch_size=8, device=ctx.device, dtype=None)

    def text_build():
        model = CLIPTextModel(CLIPTextConfig(**text_cfg, bos_token_id=0, eos_token_id=1, pad_token_id=1))
        return shim(E.ClipTextEncoder, encoder=LongPromptEncoder(byte_clip_tokenizer(), model, max_chunks=chunks))

    def dino_build():
        return shim(E.Dinov2Encoder, model=Dinov2Model(Dinov2Config(**dino_cfg)), mean=np.asarray([0.485, 0.456, 0.406], np.float32),
                    std=np.asarray([0.229, 0.224, 0.225], np.float32), size=side, layer=-2, batch_size=32, device=ctx.device, dtype=None)  # fmt: skip

    rgb, _, _ = photo(short)
    import cv2

    wide = cv2.resize(rgb, (short * 4 // 3, short))  # a 4:3 photo: 512x680 at the 512 short side, as gpu_hours counts
    note = "models.encoders.{}.encode (the precompute stage's backend) over a {} built from config"
    return [
        StageCase("vae-encoder", f"SD1.5 VAE encoder @{short}x{wide.shape[1]}", b, vae_build, lambda n, dt: [wide] * n,
                  lambda m, x: m.encode(x), note.format("SDVaeEncoder", "random SD1.5 AutoencoderKL")),
        StageCase("clip-text", f"CLIP ViT-L/14 text, {chunks} chunks of 77", b, text_build, lambda n, dt: [CAPTION] * n,
                  lambda m, x: m.encode(x), note.format("ClipTextEncoder", "random SD1.5 CLIP text model (byte-level tokenizer)"),
                  extra={"units_per_item": chunks}),
        StageCase("dinov2", f"DINOv2-base @{side}², {views} close views per image", b * views, dino_build,
                  lambda n, dt: [cv2.resize(rgb, (side, side))] * n, lambda m, x: m.encode(x),
                  note.format("Dinov2Encoder", "random DINOv2-base")),
    ]  # fmt: skip


def vitpose_forward(model, x):
    import types

    import torch

    from hoiforge.models.vitpose import FLIP_PAIRS, VitPoseWholeBody

    shim = types.SimpleNamespace(model=model, device=x.device, dtype=x.dtype, flip_test=True, max_batch=64, _torch=torch,
                                 _flip_pairs=torch.tensor(FLIP_PAIRS, device=x.device))  # fmt: skip
    return VitPoseWholeBody.heatmaps(shim, x)


def qwen_inputs(ctx: Ctx, cfg, b: int, dt, grid: int, prompt: int) -> dict:
    """Token ids with the image placeholders and pixel patches the Qwen2-VL processor makes for a (grid*14)² image."""
    import torch

    v = cfg.vision_config
    patches = grid * grid
    visual = patches // v.spatial_merge_size**2
    vocab = cfg.text_config.vocab_size
    g = torch.Generator().manual_seed(0)
    words = torch.randint(10, min(vocab, 150000) - 10, (b, prompt), generator=g)
    head = torch.tensor([cfg.vision_start_token_id] + [cfg.image_token_id] * visual + [cfg.vision_end_token_id]).expand(b, -1)
    ids = torch.cat([head, words], 1)
    pixels = torch.randn(b * patches, 3 * v.temporal_patch_size * v.patch_size**2, generator=g)
    out = {"input_ids": ids.to(ctx.device), "attention_mask": torch.ones_like(ids).to(ctx.device),
           "pixel_values": pixels.to(ctx.device, dt), "image_grid_thw": torch.tensor([[1, grid, grid]] * b).to(ctx.device)}  # fmt: skip
    from transformers import Qwen2VLForConditionalGeneration

    if "mm_token_type_ids" in inspect.signature(Qwen2VLForConditionalGeneration.forward).parameters:
        out["mm_token_type_ids"] = (ids == cfg.image_token_id).long().to(ctx.device)  # what the processor adds (transformers >= 5.x)
    return out


def qwen_prefill(model, x):
    """One forward over the prompt (vision tower + language model), logits of the last position only, as generate's first step."""
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(type(model).forward).parameters else {}
    return model(**x, **keep).logits[:, -1]


def qwen_generate(model, x, new: int):
    return model.generate(**x, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)


# -- LaMa stand-in -----------------------------------------------------------------------------
def lama_standin(smoke: bool):
    """big-lama's generator (LaMa, Suvorov et al. 2022, configs/training/big-lama.yaml): FFC ResNet, ngf 64,
    3 downsamplings, 18 FFC blocks with 75 % global (Fourier) channels at 1/8 resolution, 3 transposed-conv
    upsamplings, sigmoid; input the masked image and the mask, output the image with the hole filled.
    Written here because LaMa ships only as TorchScript (no config class): same layer shapes and FFT work,
    random weights."""
    import torch
    from torch import nn

    ngf, blocks = (8, 2) if smoke else (64, 18)

    class FourierUnit(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(2 * c, 2 * c, 1, bias=False)
            self.bn = nn.BatchNorm2d(2 * c)

        def forward(self, x):
            _b, _c, h, w = x.shape
            f = torch.fft.rfftn(x, dim=(-2, -1), norm="ortho")  # in x's precision, as LaMa's ffc.py (half: cuFFT wants 2^n sides)
            f = torch.relu(self.bn(self.conv(torch.cat([f.real, f.imag], 1))))
            real, imag = f.chunk(2, 1)
            return torch.fft.irfftn(torch.complex(real, imag), s=(h, w), dim=(-2, -1), norm="ortho")

    class Spectral(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv1 = nn.Sequential(nn.Conv2d(cin, cout // 2, 1, bias=False), nn.BatchNorm2d(cout // 2), nn.ReLU())
            self.fu = FourierUnit(cout // 2)
            self.conv2 = nn.Conv2d(cout // 2, cout, 1, bias=False)

        def forward(self, x):
            x = self.conv1(x)
            return self.conv2(x + self.fu(x))

    class FFC(nn.Module):
        """Local/global split convolution (ratio 0.75 global), BN + ReLU on each part."""

        def __init__(self, c):
            super().__init__()
            g = int(c * 0.75)
            lo = c - g
            self.g = g
            self.l2l, self.l2g, self.g2l = nn.Conv2d(lo, lo, 3, padding=1, padding_mode="reflect", bias=False), nn.Conv2d(lo, g, 3, padding=1, padding_mode="reflect", bias=False), nn.Conv2d(g, lo, 3, padding=1, padding_mode="reflect", bias=False)  # fmt: skip
            self.g2g = Spectral(g, g)
            self.bn_l, self.bn_g = nn.BatchNorm2d(lo), nn.BatchNorm2d(g)

        def forward(self, x):
            xl, xg = x[:, : x.shape[1] - self.g], x[:, x.shape[1] - self.g :]
            yl = torch.relu(self.bn_l(self.l2l(xl) + self.g2l(xg)))
            yg = torch.relu(self.bn_g(self.l2g(xl) + self.g2g(xg)))
            return torch.cat([yl, yg], 1)

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.a, self.b = FFC(c), FFC(c)

        def forward(self, x):
            return x + self.b(self.a(x))

    def down(cin, cout):
        return [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    def up(cin, cout):
        return [nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1), nn.BatchNorm2d(cout), nn.ReLU()]

    class Lama(nn.Module):
        def __init__(self):
            super().__init__()
            c = ngf * 8
            self.net = nn.Sequential(
                nn.ReflectionPad2d(3), nn.Conv2d(4, ngf, 7, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(),
                *down(ngf, 2 * ngf), *down(2 * ngf, 4 * ngf), *down(4 * ngf, c),
                *[Block(c) for _ in range(blocks)],
                *up(c, 4 * ngf), *up(4 * ngf, 2 * ngf), *up(2 * ngf, ngf),
                nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Sigmoid(),
            )  # fmt: skip

        def forward(self, image, mask):
            filled = self.net(torch.cat([image * (1 - mask), mask], 1))
            return mask * filled + (1 - mask) * image

    return Lama().eval()


def lama_inpainter(ctx: Ctx, win: int):
    import torch

    from hoiforge.models.inpaint import LamaInpainter

    path = ctx.tmp / "lama-standin.pt"
    if not path.exists():
        model = lama_standin(ctx.smoke)
        x = torch.rand(1, 3, win, win)
        traced = torch.jit.trace(model, (x, torch.zeros(1, 1, win, win)), check_trace=False)
        traced.save(str(path))
    return LamaInpainter(model_path=str(path), device=str(ctx.device), dtype="fp32", batch_size=8)


def lama_inputs(b: int, win: int):
    import numpy as np

    rgb, mask, _ = photo(win)
    text = np.zeros_like(mask)
    text[win // 3 : win // 3 + win // 10, win // 8 : 7 * win // 8] = 255  # a caption-like band
    return [rgb] * b, [text] * b


def lama_forward(inpainter, x):
    return inpainter.inpaint(*x)


def _set_dtype(ctx: Ctx, case: StageCase, model, dtype: str):
    """The model in ``dtype`` as the backend would run it (LamaInpainter maps bf16 to fp16 itself)."""
    import torch

    dt = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    if case.key == "lama":
        model.dtype = torch.float16 if dt == torch.bfloat16 else torch.float32
        model.model = model.model.half() if model.dtype == torch.float16 else model.model.float()
        return model, dt
    if case.key == "vae-encoder":
        model.vae, model.dtype = model.vae.to(dtype=dt), dt
        return model, dt
    if case.key == "dinov2":
        model.model, model.dtype = model.model.to(dtype=dt), dt
        return model, dt
    if case.key == "clip-text":
        model.encoder.text_encoder.to(dtype=dt)
        return model, dt
    return model.to(dtype=dt), dt


def run_stage(ctx: Ctx, case: StageCase) -> list[dict]:
    import torch

    rows = []
    try:
        with ctx.build():
            torch.manual_seed(0)
            model = case.build()
        if hasattr(model, "eval"):
            model.eval()
        for part in ("vae", "model"):  # the precompute shims: their network evaluated, on the device
            if isinstance(getattr(model, part, None), torch.nn.Module):
                getattr(model, part).eval()
    except Exception as e:  # noqa: BLE001 - a case that cannot build is recorded and the run goes on
        return [failed(case.key, "stages", case.what, e)]
    for dtype in [d for d in ("fp32", "bf16") if d in ctx.dtypes and d in case.dtypes]:
        row = {"case": f"{case.key}-{dtype}", "key": case.key, "section": "stages", "what": case.what, "batch": case.batch, "dtype": dtype,
               "path": case.path, **(case.extra or {})}  # fmt: skip
        try:
            model, dt = _set_dtype(ctx, case, model, dtype)
            x = case.inputs(case.batch, dt)
            ctx.reset_peak()
            with torch.inference_mode():
                s = time_calls(ctx, lambda model=model, x=x: case.forward(model, x))
                if case.key == "caption":  # prefill (vision tower + prompt) alone: the rest of the call is decoding
                    row["prefill_s"] = time_calls(ctx, lambda model=model, x=x: qwen_prefill(model, x), iters=1)
            if case.key == "lama":
                row["dtype"] = str(model.dtype).removeprefix("torch.")
            row.update(s_per_call=s, images_per_s=case.batch / s, s_per_image=s / case.batch, peak_gb=ctx.peak_gb())
        except Exception as e:  # noqa: BLE001 - a case that fails is recorded with its error and the run goes on
            row.update(failed(row["case"], "stages", case.what, e))
        rows.append(row)
        _gc_cuda(ctx)
    model = None
    _gc_cuda(ctx)
    return rows


# -- the run -----------------------------------------------------------------------------------
def failed(case: str, section: str, what: str, e: BaseException) -> dict:
    last = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
    where = f" ({Path(last.filename).name}:{last.lineno})" if last else ""
    lines = [x.strip() for x in str(e).splitlines() if x.strip()]
    # TorchScript and CUDA errors put the cause on their last line, after a generic first one.
    text = lines[0][:200] + (f" ... {lines[-1][:200]}" if len(lines) > 1 else "") if lines else ""
    return {"case": case, "section": section, "what": what, "error": f"{type(e).__name__}: {text}{where}"}


def environment(ctx: Ctx) -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "device": str(ctx.device), "smoke": ctx.smoke}
    if ctx.cuda:
        p = torch.cuda.get_device_properties(ctx.device)
        env.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    for pkg in ("transformers", "diffusers", "accelerate", "pydantic"):
        with contextlib.suppress(Exception):
            env[pkg] = __import__(pkg).__version__
    return env


def table(result: dict) -> str:
    env = result["environment"]
    gpu = env.get("gpu", f"{env['device']} (no GPU)")
    lines = [f"GPU check on {gpu}, torch {env['torch']}{' — SMOKE sizes, not a measurement' if env['smoke'] else ''}", ""]

    def gb(v):
        return "-" if v is None else f"{v:.1f}"

    train = [r for r in result["rows"] if r["section"] in ("VirtualModel", "ShoeModel") and "s_per_image" not in r]
    lines += ["| training step | per-device batch (plan: global / processes x accumulation) | precision | s/step | samples/s | peak GB |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for r in train:
        if "error" in r:
            lines.append(f"| {r['what']} | - | - | {r['error']} | - | - |")
            continue
        p = r["plan"]
        oom = f"; OOM at {', '.join(map(str, r['oom_at']))}" if r["oom_at"] else ""
        ck = ", ckpt" if r.get("gradient_checkpointing") else ""
        lines.append(f"| {r['what']} | {r['batch']} ({p['global_batch']} / {p['processes']} x {p['accumulation']}{oom}) | "
                     f"{r['mixed_precision']}{ck} | {r['s_per_step']:.3f} | {r['samples_per_s']:.1f} | {gb(r['peak_gb'])} |")  # fmt: skip
    gen = [r for r in result["rows"] if r["case"].startswith("vm-generate")]
    lines += ["", "| generation | dtype | s/image | s/call | peak GB |", "|---|---|---|---|---|"]
    for r in gen:
        if "error" in r:
            lines.append(f"| {r['what']} | - | {r['error']} | - | - |")
        else:
            lines.append(f"| {r['what']} | {r['dtype']} | {r['s_per_image']:.3f} | {r['s_per_call']:.2f} | {gb(r['peak_gb'])} |")
    stages = [r for r in result["rows"] if r["section"] == "stages"]
    lines += ["", "| stage model | batch | dtype | images/s | ms/image | peak GB | path |", "|---|---|---|---|---|---|---|"]
    for r in stages:
        if "error" in r:
            lines.append(f"| {r['what']} | {r.get('batch', '-')} | {r.get('dtype', '-')} | {r['error']} | - | - | {r.get('path', '')} |")
            continue
        extra = f" (prefill {r['prefill_s']:.2f} s/batch)" if "prefill_s" in r else ""
        lines.append(f"| {r['what']} | {r['batch']} | {r['dtype']} | {r['images_per_s']:.1f}{extra} | {r['s_per_image'] * 1e3:.1f} | "
                     f"{gb(r['peak_gb'])} | {r['path']} |")  # fmt: skip
    for note in result.get("notes", []):
        lines.append(f"\n{note}")
    for r in result["skipped"]:
        lines.append(f"\nskipped (past the {result['budget_s']:.0f} s budget): {r}")
    lines.append(f"\ntotal {result['elapsed_s']:.0f} s")
    return "\n".join(lines) + "\n"


SECTIONS = ("vm", "shoe", "stages")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on CPU in seconds (the test suite's run)")
    ap.add_argument("--out", type=Path, default=Path("."), help="folder for gpu_check.json and gpu_check.md")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument(
        "--only", nargs="*", default=None, help="cases whose name starts with one of these (vm, sw, wd, lps, rtdetr, caption, ...)"
    )
    ap.add_argument("--dtypes", nargs="+", default=None, choices=["bf16", "fp32"], help="stage precisions (default both; --smoke: fp32)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per case (default 5; --smoke 1)")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds after which the remaining sections are skipped")
    args = ap.parse_args(argv)
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):  # nothing here may reach the network
        os.environ.setdefault(var, "1")

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: --device cuda asked for, but torch sees no GPU; run with --smoke (CPU) or on a GPU machine", file=sys.stderr)
        return 2
    dtypes = args.dtypes or (["fp32"] if args.smoke else ["bf16", "fp32"])
    t0 = time.perf_counter()
    rows, skipped = [], []
    want = args.only

    def wanted(name: str) -> bool:
        return not want or any(name.startswith(w) or w.startswith(name) for w in want)

    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        ctx = Ctx(args.smoke, device, dtypes, Path(tmp), args.steps)
        torch.backends.cuda.matmul.allow_tf32 = True  # what the training core and most backends run with
        torch.backends.cudnn.allow_tf32 = True
        plan = []
        if wanted("vm"):
            plan.append(("vm", lambda: vm_cases(ctx)))
        shoe = [n for n in ("sw", "wd", "lps1", "lps2") if wanted(n) or wanted("shoe")]
        if shoe:
            plan.append(("shoe", lambda: shoe_cases(ctx, shoe)))
        for case in stage_cases(ctx):
            if wanted(case.key) or wanted("stages"):
                plan.append((case.key, lambda case=case: run_stage(ctx, case)))
        for name, run in plan:
            if time.perf_counter() - t0 > args.budget:
                skipped.append(name)
                continue
            t, cpu = time.perf_counter(), time.process_time()
            try:
                got = run()
            except Exception as e:  # noqa: BLE001 - a section that fails is recorded and the run goes on
                got = [failed(name, name, name, e)]
            for r in got:
                r.setdefault("wall_s", round(time.perf_counter() - t, 1))
            rows += got
            print(
                f"gpu_check: {name} done in {time.perf_counter() - t:.1f} s ({time.process_time() - cpu:.1f} CPU s)",
                file=sys.stderr,
                flush=True,
            )
            _gc_cuda(ctx)
        import importlib.util

        notes = []
        if wanted("caption"):
            notes.append(
                "vLLM: importable but not run here (it loads from a model folder; load_format='dummy' over a written config would be the way)"
                if importlib.util.find_spec("vllm")
                else "vLLM: not importable on this machine; captions measured through transformers only"
            )
        result = {"environment": environment(ctx), "rows": rows, "skipped": skipped, "notes": notes, "budget_s": args.budget,
                  "elapsed_s": time.perf_counter() - t0}  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=2))
    md = table(result)
    (args.out / "gpu_check.md").write_text(md)
    print(md)
    print(f"wrote {args.out / 'gpu_check.json'} and {args.out / 'gpu_check.md'}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
