"""SW, the shoe-wearing module: a ControlNet on concat(X_w, X_p) (6 channels) over a frozen, text-conditioned SD UNet.

Training follows diffusers' ``train_controlnet.py``: VAE latents of the photo, noise at a random
timestep of the base's 1000-step scheduler, the ControlNet's down/mid residuals added to the
frozen UNet, MSE against the scheduler's target (epsilon for SD1.5). The ControlNet starts as a
copy of the UNet's encoder (``ControlNetModel.from_unet``) with a 6-channel conditioning
embedding. Conditioning image: X_w (shoe.png without the wearable area, on black) and X_p (the
12-point leg rendering) in [0, 1], stacked. Captions are CLIP-encoded in 77-token chunks
(hoiforge.models.text_encoding), so long VLM captions are not cut at 77 tokens.

Generation: diffusers' ``StableDiffusionControlNetPipeline`` with a DDIM scheduler, classifier-
free guidance on the text, the 6-channel condition passed as a tensor; then X_w's visible pixels
are pasted back (``backfill``).

Base models: ``stable-diffusion-v1-5`` from the weights registry (or a local diffusers folder);
the tiny preset builds a small random UNet/VAE/CLIP text encoder with a byte-level tokenizer and
saves them beside the ControlNet, so generation uses the very base it was trained over.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from hoiforge.models.text_encoding import LongPromptEncoder
from hoiforge.training.shoemodel.config import SWConfig
from hoiforge.training.shoemodel.data import ShoeLegSample, on_black
from hoiforge.training.shoemodel.loader import each

MAX_TEXT_CHUNKS = 3  # at most 3 x 77 CLIP tokens of caption


# -- the base model ----------------------------------------------------------------------------
def base_folder(name: str) -> Path:
    """A local diffusers SD folder: a weights-registry entry name, else a path."""
    from hoiforge.models.weights import registry as Wt

    if name in Wt.REGISTRY:
        return Wt.resolve(name)
    path = Path(name).expanduser()
    if not (path / "unet").is_dir():
        from hoiforge.errors import BackendUnavailable

        raise BackendUnavailable(
            f"SW base model {name!r} is neither a weights entry (hoiforge models list) nor a diffusers folder with unet/"
        )
    return path


def load_base(folder: Path) -> dict[str, Any]:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return {
        "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer"),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder"),
        "vae": AutoencoderKL.from_pretrained(folder / "vae"),
        "unet": UNet2DConditionModel.from_pretrained(folder / "unet"),
        "scheduler": DDPMScheduler.from_pretrained(folder / "scheduler"),
    }


def tiny_base(sizes: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    """A random SD-shaped base (UNet, VAE, CLIP text encoder, byte-level tokenizer, DDPM) small enough for a CPU."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from tokenizers import pre_tokenizers
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    width = int(sizes.get("width", 32))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in sorted(pre_tokenizers.ByteLevel.alphabet()):
            vocab[c + suffix] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(vocab_size=len(vocab), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2,
                       num_attention_heads=2, max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    )  # fmt: skip
    vae = AutoencoderKL(
        block_out_channels=[width, width], in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=8,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2, layers_per_block=1,
    )  # fmt: skip
    unet = UNet2DConditionModel(
        block_out_channels=(width, 2 * width), layers_per_block=1, in_channels=4, out_channels=4, norm_num_groups=8,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=width, attention_head_dim=4, sample_size=int(sizes.get("sample_size", 32)),
    )  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    return {"tokenizer": tokenizer, "text_encoder": text_encoder, "vae": vae, "unet": unet, "scheduler": scheduler}


def save_base(base: dict[str, Any], folder: Path) -> None:
    for name in ("tokenizer", "text_encoder", "vae", "unet", "scheduler"):
        base[name].save_pretrained(folder / name)


def vae_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def controlnet_from_unet(unet, vae):
    """The ControlNet: a copy of the UNet's encoder, 6 conditioning channels, its embedding downsampling as the VAE does."""
    from diffusers import ControlNetModel

    steps = int(np.log2(vae_factor(vae)))
    channels = (16, 32, 96, 256)[: steps + 1] if steps <= 3 else (16, 32, 96, 256)
    return ControlNetModel.from_unet(unet, conditioning_channels=6, conditioning_embedding_out_channels=channels)


# -- examples ----------------------------------------------------------------------------------
def condition(xw_rgba: np.ndarray, leg_rgb: np.ndarray) -> np.ndarray:
    """6 x H x W float32 in [0, 1]: X_w on black, then X_p."""
    both = np.concatenate([on_black(xw_rgba), leg_rgb[..., :3]], -1).astype(np.float32) / 255.0
    return np.ascontiguousarray(both.transpose(2, 0, 1))


def _crop_origin(extent: int, size: int, lo: float, hi: float, rng: np.random.Generator) -> int:
    """A random crop start in [0, extent - size], keeping [lo, hi) inside the crop when it fits."""
    top = extent - size
    a, b = max(0, int(np.ceil(hi)) - size), min(top, int(lo))
    if a > b:  # the shoe is larger than the crop: centre it
        return int(np.clip((lo + hi - size) / 2, 0, top))
    return int(rng.integers(a, b + 1))


def example(sample: ShoeLegSample, rng: np.random.Generator, cfg: SWConfig, min_score: float) -> dict[str, Any] | None:
    """A random ``resolution``-square crop (keeping the shoe when it fits) of the photo, X_w and X_p, and the caption."""
    if not (sample.has("shoe.png") and sample.has("leg.json")):
        return None
    r = cfg.resolution
    image = sample.image()
    h, w = image.shape[:2]
    f = r / min(h, w)
    size = (max(r, round(w * f)), max(r, round(h * f)))
    img = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    xw = cv2.resize(sample.wearable_removed(), size, interpolation=cv2.INTER_AREA)
    xp = cv2.resize(sample.leg_image(min_score), size, interpolation=cv2.INTER_AREA)
    ys, xs = np.nonzero(xw[..., 3] > 0)
    if len(xs):
        x0 = _crop_origin(size[0], r, xs.min(), xs.max() + 1, rng)
        y0 = _crop_origin(size[1], r, ys.min(), ys.max() + 1, rng)
    else:
        x0, y0 = int(rng.integers(0, size[0] - r + 1)), int(rng.integers(0, size[1] - r + 1))
    win = (slice(y0, y0 + r), slice(x0, x0 + r))
    caption = "" if rng.random() < cfg.empty_prompt_p else sample.caption()
    return {
        "pixel_values": np.ascontiguousarray((img[win].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)),
        "conditioning": condition(xw[win], xp[win]),
        "caption": caption,
    }


def examples(samples: Iterator[ShoeLegSample], rng: np.random.Generator, cfg: SWConfig, min_score: float) -> Iterator[dict[str, Any]]:
    return each(samples, lambda s: example(s, rng, cfg, min_score))


def make_examples(cfg: SWConfig, min_score: float):
    return partial(examples, cfg=cfg, min_score=min_score)


def encode_text(tokenizer, text_encoder, captions: list[str]) -> torch.Tensor:
    """(batch, chunks x 77, hidden) CLIP hidden states of the captions (no gradient: the encoder is frozen)."""
    chunks = LongPromptEncoder(tokenizer, text_encoder, max_chunks=MAX_TEXT_CHUNKS).token_chunks(list(captions))
    ids = torch.tensor([c for per in chunks for c in per], device=text_encoder.device)
    with torch.no_grad():
        hidden = text_encoder(input_ids=ids).last_hidden_state
    return hidden.reshape(len(chunks), -1, hidden.shape[-1])


def make_loss(tokenizer, noise_scheduler):
    def loss(batch: dict[str, Any], models) -> torch.Tensor:
        vae, unet, controlnet, text_encoder = models["vae"], models["unet"], models["controlnet"], models["text_encoder"]
        dtype = next(unet.parameters()).dtype
        with torch.no_grad():
            latents = vae.encode(batch["pixel_values"].to(dtype)).latent_dist.sample() * vae.config.scaling_factor
        text = encode_text(tokenizer, text_encoder, batch["caption"])
        noise = torch.randn_like(latents)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=latents.device).long()
        noisy = noise_scheduler.add_noise(latents, noise, t)
        down, mid = controlnet(noisy, t, encoder_hidden_states=text, controlnet_cond=batch["conditioning"], return_dict=False)
        pred = unet(
            noisy.to(dtype),
            t,
            encoder_hidden_states=text.to(dtype),
            down_block_additional_residuals=[d.to(dtype) for d in down],
            mid_block_additional_residual=mid.to(dtype),
        ).sample
        v_prediction = noise_scheduler.config.prediction_type == "v_prediction"
        target = noise_scheduler.get_velocity(latents, noise, t) if v_prediction else noise
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    return loss


# -- generation --------------------------------------------------------------------------------
def pipeline(base: dict[str, Any], controlnet, device, dtype):
    from diffusers import DDIMScheduler, StableDiffusionControlNetPipeline

    pipe = StableDiffusionControlNetPipeline(
        vae=base["vae"],
        text_encoder=base["text_encoder"],
        tokenizer=base["tokenizer"],
        unet=base["unet"],
        controlnet=controlnet,
        scheduler=DDIMScheduler.from_config(base["scheduler"].config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    return pipe if dtype == torch.float32 else pipe.to(dtype=dtype)


def generate(pipe, conds: np.ndarray, prompt: str, steps: int, guidance: float, generator: torch.Generator) -> list[np.ndarray]:
    """One HxWx3 uint8 image per 6 x H x W condition of ``conds`` (H, W multiples of what the base needs), all for ``prompt``."""
    device, dtype = pipe.device, pipe.unet.dtype
    n = len(conds)
    texts = encode_text(pipe.tokenizer, pipe.text_encoder, [prompt, ""]).to(device, dtype)
    out = pipe(
        prompt_embeds=texts[:1].expand(n, -1, -1),
        negative_prompt_embeds=texts[1:].expand(n, -1, -1),
        image=torch.from_numpy(np.ascontiguousarray(conds, np.float32)).to(device, dtype),
        height=conds.shape[2],
        width=conds.shape[3],
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        output_type="np",
    ).images
    return [(np.clip(im, 0, 1) * 255 + 0.5).astype(np.uint8) for im in out]


def backfill(generated: np.ndarray, shoe_rgb: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """The generated image with X_w's visible shoe pixels copied back exactly."""
    out = generated.copy()
    out[visible] = shoe_rgb[visible]
    return out
