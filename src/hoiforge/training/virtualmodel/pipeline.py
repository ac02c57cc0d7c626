"""VirtualModel inference: DDIM (30 steps), classifier-free guidance (7), then Content Backfill.

Content Backfill (§3.3): the product's own pixels inside its mask m are copied back into the
generated image at the output size, so the product is exactly the input product.
"""

from __future__ import annotations

import numpy as np
import torch

from hoiforge.datasets.vm_sample import crop_padded, product_edges, square_box
from hoiforge.training.virtualmodel.conditioning import TextEncoder, encode_views
from hoiforge.training.virtualmodel.model import predict_noise


def backfill(generated: np.ndarray, product: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``generated`` with ``product``'s pixels wherever ``mask`` is set (all three at the same size)."""
    if generated.shape != product.shape or mask.shape != product.shape[:2]:
        raise ValueError(f"backfill needs equal sizes: generated {generated.shape}, product {product.shape}, mask {mask.shape}")
    return np.where(mask[..., None].astype(bool), product, generated)


def product_conditions(product: np.ndarray, mask: np.ndarray, view_size: int, margin: float = 0.25) -> dict[str, np.ndarray]:
    """What the loader gives the trainer, made from a product image and its mask: o, m, e inside m, close view v."""
    m = mask.astype(bool)
    ys, xs = np.nonzero(m)
    box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, product.shape[1], product.shape[0])
    return {
        "mask": m.astype(np.uint8),
        "edges": product_edges(product, m),  # as the training loader computes e from its crop
        "view": crop_padded(product, square_box(box, margin), view_size, fast=True),  # as the training loader shrinks it
    }


def _one(x):
    return None if x is None else [x]


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class VirtualModelPipeline:
    def __init__(self, unet, vae, text: TextEncoder, dino, branches, scheduler, dino_image_size: int):
        self.unet, self.vae, self.text, self.dino, self.branches = unet, vae, text, dino, branches
        self.scheduler, self.dino_image_size = scheduler, dino_image_size

    @property
    def device(self):
        return self.unet.device

    @property
    def dtype(self):
        return self.unet.dtype

    @torch.no_grad()
    def __call__(
        self,
        prompt: str,
        *,
        height: int,
        width: int,
        product: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        pose: np.ndarray | None = None,
        steps: int = 30,
        guidance: float = 7.0,
        seed: int = 0,
    ) -> np.ndarray:
        """HxWx3 uint8 (before backfill). Without branches (stage 1) it is the base UNet's text-to-image."""
        one = lambda x: None if x is None else [x]
        return self.batch(
            [prompt],
            height=height,
            width=width,
            products=one(product),
            masks=one(mask),
            poses=one(pose),
            steps=steps,
            guidance=guidance,
            seeds=[seed],
        )[0]

    @torch.no_grad()
    def batch(
        self,
        prompts: list[str],
        *,
        height: int,
        width: int,
        products: list[np.ndarray] | None = None,
        masks: list[np.ndarray] | None = None,
        poses: list[np.ndarray] | None = None,
        steps: int = 30,
        guidance: float = 7.0,
        seeds: list[int],
    ) -> list[np.ndarray]:
        """Several conditions of one size in one denoising loop; image k starts from the noise of ``seeds[k]``,
        the noise a single call with that seed starts from."""
        if height % 8 or width % 8:
            raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")
        if len(seeds) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts for {len(seeds)} seeds")
        dev, dt = self.device, self.dtype
        b = len(prompts)
        text = self.text.encode(list(prompts)).to(dev, dt)
        null = self.text.empty().unsqueeze(0).expand(b, -1, -1).to(dev, dt)
        conds, null_conds = {}, {}
        if self.branches is not None:
            spec = self.branches.spec
            per = [product_conditions(p, m, self.dino_image_size) for p, m in zip(products, masks, strict=True)]
            if spec.identity_branch:
                conds["pose"] = torch.from_numpy(np.stack(poses)).permute(0, 3, 1, 2).float().div(255)
                conds["edges"] = torch.from_numpy(np.stack([c["edges"] for c in per]))[:, None].float().div(255)
                if spec.close_view:
                    v = torch.from_numpy(np.stack([c["view"] for c in per])).permute(0, 3, 1, 2).float().div(255)
                    conds["view"] = encode_views(self.dino, v, self.dino_image_size)
            if spec.content_branch:
                m = torch.from_numpy(np.stack([c["mask"] for c in per]))[:, None].float()
                conds["obj"] = torch.from_numpy(np.stack(products)).permute(0, 3, 1, 2).float().div(127.5).sub(1) * m
                conds["mask"] = m
            conds = {k: v.to(dev, dt) for k, v in conds.items()}
            null_conds = {k: torch.zeros_like(v) for k, v in conds.items()}

        shape = (1, 4, height // 8, width // 8)
        latents = torch.cat([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds]).to(dev, dt)
        self.scheduler.set_timesteps(steps, device=dev)
        latents = latents * self.scheduler.init_noise_sigma
        guided = guidance != 1.0
        for t in self.scheduler.timesteps:
            x = torch.cat([latents, latents]) if guided else latents
            x = self.scheduler.scale_model_input(x, t)
            ehs = torch.cat([null, text]) if guided else text
            kw = {k: torch.cat([null_conds[k], v]) if guided else v for k, v in conds.items()}
            eps = predict_noise(self.unet, self.branches, x, t, ehs, **kw)
            if guided:
                uncond, cond = eps.chunk(2)
                eps = uncond + guidance * (cond - uncond)
            latents = self.scheduler.step(eps, t, latents).prev_sample
        scale = float(getattr(self.vae.config, "scaling_factor", 0.18215))
        images = self.vae.decode(latents.to(self.vae.dtype) / scale).sample
        return list(_to_uint8(images))
