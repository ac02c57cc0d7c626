"""LpS phase 2: a diffusion model on keypoint vectors that samples the 6 leg points (hips, knees, ankles) for 8 foot points.

Vectors: every point P (pixels) normalised with one size s = the photo's longer side,
P/s*0.9+0.1 (geometry.normalise), 0 for a missing point. The condition is the 8 foot points
(16 numbers, 0 where missing) plus their 8 seen flags; the diffused variable is the 6 leg points
mapped to [-1, 1] ((P_norm - 0.55) / 0.45), 0 where missing, and the loss is masked there.

Denoiser: a residual MLP (``LegDenoiser``, a diffusers ``ModelMixin`` so it saves as
safetensors with its config) that predicts the noise eps. Schedule: diffusers ``DDPMScheduler``
with T = 25 and the cosine ("squaredcos_cap_v2") betas: alpha_bar_T = 3.9e-6, i.e. x_T is noise.
(25 steps of the default linear betas leave alpha_bar_T = 0.78: a sample would start from mostly
signal it never saw.) Sampling runs all 25 ancestral steps from fresh noise, so every call draws
new, diverse legs for the same feet.

Training data: every person of every shoe-leg sample with a seen foot point and a seen leg
point, read once from the shards into memory (the set is tiny next to the images); batches are
drawn from it per step with random rotation about the feet's centre.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from hoiforge.training.shoemodel import geometry as G
from hoiforge.training.shoemodel.config import LpS2Config
from hoiforge.training.shoemodel.data import FOOT_IN_LEG, LEG_TARGET, ShoeLegSample

N_TARGET, N_COND = len(LEG_TARGET), len(FOOT_IN_LEG)
CENTRE, HALF = 0.55, 0.45  # P_norm in [0.1, 1] <-> x in [-1, 1]
CLIP_RANGE = 2.0  # x0 kept in [-2, 2]: P_norm in [-0.35, 1.45], hips may lie above the frame


class LegDenoiser(ModelMixin, ConfigMixin):
    """eps(x_t, t | foot points): residual MLP blocks, each modulated by the timestep embedding."""

    @register_to_config
    def __init__(self, n_target: int = N_TARGET, n_cond: int = N_COND, hidden: int = 512, depth: int = 4):
        super().__init__()
        self.time_proj = Timesteps(hidden, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(hidden, hidden)
        self.inp = nn.Linear(n_target * 2 + n_cond * 3, hidden)
        self.blocks = nn.ModuleList(
            nn.ModuleDict(
                {
                    "norm": nn.LayerNorm(hidden),
                    "fc1": nn.Linear(hidden, hidden),
                    "film": nn.Linear(hidden, 2 * hidden),
                    "fc2": nn.Linear(hidden, hidden),
                }
            )
            for _ in range(depth)
        )
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, n_target * 2)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_seen: torch.Tensor) -> torch.Tensor:
        """x: B x 12, t: B, cond: B x 16 (P_norm, 0 missing), cond_seen: B x 8 -> eps B x 12."""
        emb = self.time_embed(self.time_proj(t).to(x.dtype))
        h = self.inp(torch.cat([x, cond, cond_seen.to(x.dtype)], -1))
        for b in self.blocks:
            scale, shift = b["film"](emb).chunk(2, -1)
            y = b["fc1"](nn.functional.silu(b["norm"](h)))
            y = nn.functional.silu(y * (1 + scale) + shift)
            h = h + b["fc2"](y)
        return self.out(nn.functional.silu(self.out_norm(h)))


def scheduler(cfg: LpS2Config) -> DDPMScheduler:
    return DDPMScheduler(
        num_train_timesteps=cfg.timesteps,
        beta_schedule=cfg.beta_schedule,
        rescale_betas_zero_snr=cfg.rescale_zero_snr,
        prediction_type="epsilon",
        clip_sample=True,
        clip_sample_range=CLIP_RANGE,
    )


def build(cfg: LpS2Config) -> LegDenoiser:
    return LegDenoiser(hidden=cfg.hidden, depth=cfg.depth)


# -- the training table --------------------------------------------------------------------------
def records(sample: ShoeLegSample, min_score: float) -> list[tuple[np.ndarray, float]]:
    """(12 x 3 pixels, frame size s) for each person with a seen foot point and a seen leg point."""
    w, h = sample.size()
    out = []
    for person in sample.leg().get("persons", []):
        leg = np.asarray(person["leg"], np.float64).reshape(12, 3)
        seen = leg[:, 2] > min_score
        if seen[list(FOOT_IN_LEG)].any() and seen[list(LEG_TARGET)].any():
            out.append((leg, float(max(w, h))))
    return out


def build_table(urls: list[str], min_score: float, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(N x 12 x 3 float32 points, N float32 sizes) of every usable person in the shards, cached by shard identity."""
    from hoiforge.training.shoemodel.data import read_samples

    ident = hashlib.sha256(
        json.dumps([[u, Path(u).stat().st_size, Path(u).stat().st_mtime_ns] for u in urls] + [min_score]).encode()
    ).hexdigest()
    if cache is not None and cache.is_file():
        with np.load(cache) as z:
            if str(z["ident"]) == ident:
                return z["points"], z["sizes"]
    points, sizes = [], []
    for sample in read_samples(urls):
        if sample.has("leg.json"):
            for leg, size in records(sample, min_score):
                points.append(leg)
                sizes.append(size)
    table = (np.asarray(points, np.float32).reshape(-1, 12, 3), np.asarray(sizes, np.float32))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, points=table[0], sizes=table[1], ident=np.array(ident))
    return table


def vectors(points: torch.Tensor, sizes: torch.Tensor, min_score: float) -> dict[str, torch.Tensor]:
    """Model tensors of B x 12 x 3 pixel points: x0 (B x 12), target mask (B x 12), cond (B x 16), cond_seen (B x 8)."""
    seen = points[..., 2] > min_score
    norm = points[..., :2] / sizes[:, None, None] * G.NORM_SCALE + G.NORM_OFFSET
    norm = torch.where(seen[..., None], norm, torch.zeros_like(norm))
    target_seen = seen[:, list(LEG_TARGET)]
    x0 = torch.where(target_seen[..., None], (norm[:, list(LEG_TARGET)] - CENTRE) / HALF, torch.zeros_like(norm[:, list(LEG_TARGET)]))
    return {
        "x0": x0.flatten(1),
        "mask": target_seen[..., None].expand(-1, -1, 2).flatten(1).float(),
        "cond": norm[:, list(FOOT_IN_LEG)].flatten(1),
        "cond_seen": seen[:, list(FOOT_IN_LEG)].float(),
    }


def rotate(points: torch.Tensor, min_score: float, degrees: float, p: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each record's seen points about its seen foot points' centre by U(-deg, deg), with probability p."""
    b = points.shape[0]
    seen = points[..., 2] > min_score
    foot_seen = seen[:, list(FOOT_IN_LEG)].float()
    foot = points[:, list(FOOT_IN_LEG), :2]
    centre = (foot * foot_seen[..., None]).sum(1) / foot_seen.sum(1).clamp(min=1)[:, None]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * np.deg2rad(degrees)
    angle = torch.where(torch.rand(b, generator=generator) < p, angle, torch.zeros_like(angle))
    cos, sin = angle.cos()[:, None], angle.sin()[:, None]
    rel = points[..., :2] - centre[:, None]
    rotated = torch.stack([cos * rel[..., 0] - sin * rel[..., 1], sin * rel[..., 0] + cos * rel[..., 1]], -1) + centre[:, None]
    out = points.clone()
    out[..., :2] = torch.where(seen[..., None], rotated, points[..., :2])
    return out


class TableBatches:
    """Endless per-device batches drawn from the table; batch k of a run started at ``start`` depends on
    (seed, start + k, process) only, so each process of a multi-GPU run draws its own share of the global batch."""

    def __init__(self, points: np.ndarray, sizes: np.ndarray, cfg: LpS2Config, start: int, batch_size: int | None = None, process: int = 0):
        if len(points) == 0:
            raise ValueError("no person with both a seen foot point and a seen leg point in the shards")
        self.points, self.sizes = torch.from_numpy(points), torch.from_numpy(sizes)
        self.cfg, self.start = cfg, start
        self.batch_size, self.process = batch_size or cfg.train.batch_size, process

    def __iter__(self):
        from hoiforge.training.core import step_seed

        k = self.start
        while True:
            g = torch.Generator().manual_seed(step_seed(self.cfg.train.seed, k, 0, self.process))
            idx = torch.randint(0, len(self.points), (self.batch_size,), generator=g)
            pts = rotate(self.points[idx], self.cfg.min_score, self.cfg.rotate_deg, self.cfg.rotate_p, g)
            yield vectors(pts, self.sizes[idx], self.cfg.min_score)
            k += 1


def make_loss(sched: DDPMScheduler):
    def loss(batch: dict[str, torch.Tensor], models) -> torch.Tensor:
        x0, mask = batch["x0"], batch["mask"]
        noise = torch.randn_like(x0)
        t = torch.randint(0, sched.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        xt = sched.add_noise(x0, noise, t)
        pred = models["lps2"](xt, t, batch["cond"], batch["cond_seen"]).float()
        return ((pred - noise) ** 2 * mask).sum() / mask.sum().clamp(min=1)

    return loss


# -- sampling ----------------------------------------------------------------------------------
@torch.no_grad()
def sample(
    model: LegDenoiser, sched: DDPMScheduler, foot: np.ndarray, size: float, n: int, min_score: float, generator: torch.Generator
) -> np.ndarray:
    """``n`` draws of the 6 leg points (n x 6 x 3 [x, y, 1] pixels) for 8 x 3 foot points in a frame of longer side ``size``."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    leg = np.zeros((12, 3), np.float32)
    leg[list(FOOT_IN_LEG)] = np.asarray(foot, np.float32)
    v = vectors(torch.from_numpy(leg)[None], torch.tensor([float(size)]), min_score)
    cond = v["cond"].expand(n, -1).to(device, dtype)
    cond_seen = v["cond_seen"].expand(n, -1).to(device, dtype)
    sched.set_timesteps(sched.config.num_train_timesteps)
    x = torch.randn((n, N_TARGET * 2), generator=generator).to(device, dtype)
    for t in sched.timesteps:
        eps = model(x, t.expand(n).to(device), cond, cond_seen)
        x = sched.step(eps, t, x, generator=generator).prev_sample
    norm = (x.float().cpu().numpy().reshape(n, N_TARGET, 2)) * HALF + CENTRE
    out = np.ones((n, N_TARGET, 3), np.float64)
    out[..., :2] = (norm - G.NORM_OFFSET) / G.NORM_SCALE * float(size)
    return out


def save(model: LegDenoiser, sched: DDPMScheduler, folder: Path) -> None:
    model.save_pretrained(folder / "model", safe_serialization=True)
    sched.save_pretrained(folder / "scheduler")


def load(folder: Path) -> tuple[LegDenoiser, DDPMScheduler]:
    return LegDenoiser.from_pretrained(folder / "model"), DDPMScheduler.from_pretrained(folder / "scheduler")


def describe(sched: DDPMScheduler) -> dict[str, Any]:
    a = sched.alphas_cumprod
    return {
        "timesteps": int(sched.config.num_train_timesteps),
        "beta_schedule": sched.config.beta_schedule,
        "alpha_bar_T": float(a[-1]),
        "alpha_bar_1": float(a[0]),
    }
