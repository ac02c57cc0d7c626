"""H100-hours for HoIHuman (3.16M images) with recipes/hoihuman-paper.yaml, from model FLOPs.

No GPU was available where this was written, so nothing here is a measured GPU throughput.
Each model of the paper recipe is built from its real configuration (transformers / diffusers
config classes with the published hyperparameters) on PyTorch's meta device, and its FLOPs at
the recipe's input size are counted by ``torch.utils.flop_counter.FlopCounterMode`` (1 MAC =
2 FLOPs). Three exceptions, each stated in the table's source column:

- RT-DETR and GroundingDINO take data-dependent steps (``.item()``, top-k gathers) the meta
  device cannot run; their counts are recorded from the same counter run on CPU with random
  weights of the real size (``--measure-cpu`` repeats that: ~10 CPU-minutes).
- Qwen2-VL-7B (captions): analytic from its config (vision tower with full attention over the
  image patches, LLM prefill, causal attention) and, for decoding, the HBM roofline, because
  decoding is memory-bound: each step of B sequences reads the weights once and each
  sequence's KV cache.
- LaMa (TorchScript, not a config class) and PP-OCRv4 (ONNX): estimates, stated as such; both
  are small next to the rest.

Time per image = FLOPs / (peak x MFU). Peak: H100 SXM dense bf16 989 TFLOP/s, HBM 3.35 TB/s.
MFU per model family (why: docs/performance.md "## GPU-hour budget"): ViT/LLM GEMMs at batch
>= 16 in bf16 with flash attention 0.40 (LLM prefill under vLLM 0.50); convolutional nets
(ResNet detector, VAE encoder, LaMa) 0.25; GroundingDINO (deformable attention gathers, not
tensor-core work) 0.15; onnxruntime OCR 0.10. Decoding: 70 % of HBM bandwidth.

    python bench/gpu_hours.py                                    # the table (meta-device counts: ~1 min)
    python bench/gpu_hours.py --visual-tokens 640 --caption-tokens 120
    python bench/gpu_hours.py --measured gpu_check.json          # bench/gpu_check.py's measured time beside each estimate

Last line: total H100-hours (every stage sees every image; the goal is < 100).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

PEAK_BF16 = 989e12  # H100 SXM dense bf16 FLOP/s
HBM = 3.35e12  # bytes/s
MFU = {"vit": 0.40, "llm-prefill": 0.50, "conv": 0.25, "deformable": 0.15, "onnx": 0.10}
HBM_EFFICIENCY = 0.70
# Recorded by --measure-cpu (FlopCounterMode on CPU, random weights of the real size).
RECORDED_GFLOPS = {"rtdetr-r50vd @640x640": 136.7, "grounding-dino-base @800x1066, 60 text tokens": 1110.6}
RECORDED_PARAMS = {"rtdetr-r50vd @640x640": 42.7e6, "grounding-dino-base @800x1066, 60 text tokens": 232.3e6}


@dataclass
class Row:
    stage: str
    model: str
    params: float
    gflops: float  # per image, all calls of this model for one image
    family: str
    source: str
    per_image: float = 1.0  # calls per image (persons per image, text fraction, ...)
    seconds_override: float | None = None  # decode: from the memory roofline
    key: str = ""  # the bench/gpu_check.py measurement of this model (its stage row's key), "" if none

    @property
    def seconds(self) -> float:
        if self.seconds_override is not None:
            return self.seconds_override
        return self.gflops * 1e9 * self.per_image / (PEAK_BF16 * MFU[self.family])


def meta_count(build, inputs) -> tuple[float, float]:
    """(params, GFLOPs of one forward) of a model built on the meta device."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build()
        x = inputs()
    params = sum(p.numel() for p in model.parameters())
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**x) if isinstance(x, dict) else model(x)
    return float(params), counter.get_total_flops() / 1e9


def cpu_count(build, inputs) -> tuple[float, float]:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = build().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs())
    return float(sum(p.numel() for p in model.parameters())), counter.get_total_flops() / 1e9


def swin_base():
    import transformers as T

    return T.SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12, image_size=384,
                        out_features=["stage2", "stage3", "stage4"])  # fmt: skip


def qwen2_vl_7b_config():
    import transformers as T

    return T.Qwen2VLConfig(
        text_config=dict(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                         vocab_size=152064, tie_word_embeddings=False, rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}),
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4, patch_size=14, spatial_merge_size=2),
    )  # fmt: skip


def caption_rows(visual_tokens: int, prompt_tokens: int, new_tokens: int, batch: int) -> list[Row]:
    import torch
    import transformers as T

    config = qwen2_vl_7b_config()
    with torch.device("meta"):
        model = T.Qwen2VLForConditionalGeneration(config)
    vision = sum(p.numel() for p in model.model.visual.parameters())
    merger = sum(p.numel() for p in model.model.visual.merger.parameters())
    language = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("model.visual"))
    text = config.text_config
    embed = text.vocab_size * text.hidden_size
    body = language - 2 * embed  # untied input embedding and LM head: neither is a GEMM per prompt token
    patches = visual_tokens * config.vision_config.spatial_merge_size**2
    v = config.vision_config
    vision_flops = 2 * (vision - merger) * patches + 2 * merger * visual_tokens + 4 * v.depth * patches**2 * v.embed_dim
    tokens = visual_tokens + prompt_tokens
    attn_width = text.num_attention_heads * (text.hidden_size // text.num_attention_heads)
    prefill_flops = 2 * body * tokens + 2 * text.num_hidden_layers * tokens**2 * attn_width + 2 * embed  # causal attention: half of 4*T^2*d
    # Decoding, memory-bound: a step of `batch` sequences reads the bf16 weights once, and each
    # sequence reads its KV cache (layers x 2 x kv_heads x head_dim x 2 bytes per context token).
    kv_per_token = text.num_hidden_layers * 2 * text.num_key_value_heads * (text.hidden_size // text.num_attention_heads) * 2
    context = tokens + new_tokens / 2
    bytes_per_new_token = 2 * (language + vision) / batch + kv_per_token * context
    decode_memory = new_tokens * bytes_per_new_token / (HBM * HBM_EFFICIENCY)
    decode_compute = new_tokens * 2 * body / (PEAK_BF16 * MFU["llm-prefill"])
    model_name = f"Qwen2-VL-7B ({(language + vision) / 1e9:.2f}B)"
    return [
        Row("caption", f"{model_name} vision tower, {visual_tokens} visual tokens", vision, vision_flops / 1e9, "vit", "analytic from config",
            key="caption-vision"),
        Row("caption", f"{model_name} prefill, {tokens} tokens", language, prefill_flops / 1e9, "llm-prefill", "analytic from config",
            key="caption-prefill"),
        Row("caption", f"{model_name} decode, {new_tokens} tokens at batch {batch}", 0, new_tokens * 2 * body / 1e9, "llm-prefill",
            f"HBM roofline ({bytes_per_new_token / 1e6:.0f} MB/token)", seconds_override=max(decode_memory, decode_compute), key="caption-decode"),
    ]  # fmt: skip


def rows(args) -> list[Row]:
    import torch
    import transformers as T
    from diffusers import AutoencoderKL

    out: list[Row] = []
    empty = torch.empty

    if args.measure_cpu:
        p, g = cpu_count(lambda: T.RTDetrForObjectDetection(T.RTDetrConfig()), lambda: {"pixel_values": torch.randn(1, 3, 640, 640)})
        RECORDED_GFLOPS["rtdetr-r50vd @640x640"], RECORDED_PARAMS["rtdetr-r50vd @640x640"] = g, p
        p, g = cpu_count(
            lambda: T.GroundingDinoForObjectDetection(T.GroundingDinoConfig(backbone_config=swin_base())),
            lambda: {"pixel_values": torch.randn(1, 3, 800, 1066), "input_ids": torch.randint(1000, 2000, (1, 60)), "attention_mask": torch.ones(1, 60, dtype=torch.long)},
        )  # fmt: skip
        key = "grounding-dino-base @800x1066, 60 text tokens"
        RECORDED_GFLOPS[key], RECORDED_PARAMS[key] = g, p
    source = "FlopCounterMode on CPU" + ("" if args.measure_cpu else " (recorded)")

    key = "rtdetr-r50vd @640x640"
    out.append(Row("person", key, RECORDED_PARAMS[key], RECORDED_GFLOPS[key], "conv", source, key="rtdetr"))

    p, g = meta_count(
        lambda: T.CLIPVisionModelWithProjection(T.CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                                                                   patch_size=14, image_size=224, projection_dim=768)),
        lambda: {"pixel_values": empty(1, 3, 224, 224)},
    )  # fmt: skip
    out.append(Row("quality", "CLIP ViT-L/14 @224 (+ LAION MLP)", p, g, "vit", "meta-device count", key="clip-aesthetic"))

    key = "grounding-dino-base @800x1066, 60 text tokens"
    out.append(Row("products", key, RECORDED_PARAMS[key], RECORDED_GFLOPS[key], "deformable", source, key="grounding-dino"))
    p, g = meta_count(
        lambda: T.SamModel(T.SamConfig(vision_config=dict(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31]))).vision_encoder,
        lambda: {"pixel_values": empty(1, 3, 1024, 1024)},
    )  # fmt: skip
    out.append(
        Row(
            "products",
            "SAM ViT-H image encoder @1024x1024",
            p,
            g,
            "vit",
            "meta-device count (mask decoder per box: < 1 GFLOP)",
            key="sam-encoder",
        )
    )

    out.append(Row("cleanup", "PP-OCRv4 server det @960 + rec lines", 0, 250.0, "onnx", "estimate (ONNX)"))
    out.append(Row("cleanup", f"LaMa big @512x512 window, {args.text_fraction:.0%} of images", 51e6, 460.0, "conv", "estimate (18 FFC blocks @64x64x512)",
                   per_image=args.text_fraction, key="lama"))  # fmt: skip

    p, g = meta_count(
        lambda: T.VitPoseForPoseEstimation(T.VitPoseConfig(backbone_config=T.VitPoseBackboneConfig(hidden_size=1280, num_hidden_layers=32, num_attention_heads=16,
                                                                                                   intermediate_size=5120, image_size=[256, 192], out_indices=[32]),
                                                           use_simple_decoder=False, num_labels=133)),
        lambda: {"pixel_values": empty(1, 3, 256, 192)},
    )  # fmt: skip
    out.append(
        Row(
            "pose",
            f"ViTPose-H whole-body @256x192, flip test, {args.persons} persons",
            p,
            2 * g,
            "vit",
            "meta-device count",
            per_image=args.persons,
            key="vitpose",
        )
    )

    out += caption_rows(args.visual_tokens, args.prompt_tokens, args.caption_tokens, args.decode_batch)

    vae_config = dict(in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                      block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=512)  # fmt: skip
    p, g = meta_count(lambda: AutoencoderKL(**vae_config).encoder, lambda: empty(1, 3, 512, 680))
    out.append(Row("precompute", "SD1.5 VAE encoder @512x680", p, g, "conv", "meta-device count", key="vae-encoder"))
    p, g = meta_count(
        lambda: T.CLIPTextModel(T.CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)),
        lambda: {"input_ids": torch.zeros(1, 77, dtype=torch.long)},
    )
    chunks = -(-args.caption_tokens // 75)
    out.append(
        Row("precompute", f"CLIP ViT-L/14 text, {chunks} chunks of 77", p, g, "vit", "meta-device count", per_image=chunks, key="clip-text")
    )
    p, g = meta_count(lambda: T.Dinov2Model(T.Dinov2Config()), lambda: {"pixel_values": empty(1, 3, 224, 224)})
    out.append(
        Row(
            "precompute",
            f"DINOv2-base @224, {args.views} close views",
            p,
            g,
            "vit",
            "meta-device count",
            per_image=args.views,
            key="dinov2",
        )
    )
    return out


def load_measured(path: str, caption_tokens: int) -> tuple[dict[str, tuple[float, str]], dict]:
    """key -> (measured seconds per unit of the FLOP row, how) from bench/gpu_check.py's json; and its environment.

    Half precision where it ran (bf16; LaMa's fp16), else fp32. The caption rows: the measured
    prefill covers the vision tower too (one forward); decoding is scaled from the measured new
    tokens to ``caption_tokens``, at the check's batch through transformers (not vLLM's)."""
    import json
    from pathlib import Path

    doc = json.loads(Path(path).read_text())
    best: dict[str, dict] = {}
    for r in doc.get("rows", []):
        if r.get("section") != "stages" or "error" in r or "s_per_image" not in r:
            continue
        if r["key"] not in best or best[r["key"]]["dtype"] == "fp32":
            best[r["key"]] = r
    out: dict[str, tuple[float, str]] = {}
    for key, r in best.items():
        how = f"{r['dtype']}, batch {r['batch']}"
        if key == "caption":
            prefill = r["prefill_s"] / r["batch"]
            per_token = (r["s_per_call"] - r["prefill_s"]) / r["batch"] / r["new_tokens"]
            out["caption-vision"] = (0.0, "in the prefill")
            out["caption-prefill"] = (prefill, how + ", vision + prefill")
            out["caption-decode"] = (per_token * caption_tokens, how + f", {r['new_tokens']} tokens scaled, transformers")
        else:  # per unit of the FLOP row: a caption's text chunk, a close view, an image
            out[key] = (r["s_per_image"] / r.get("units_per_item", 1), how)
    return out, doc.get("environment", {})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=float, default=3.16e6)
    ap.add_argument(
        "--visual-tokens", type=int, default=576, help="per image: the captioner's max_pixels / 28^2 (672² -> 576, the default bound)"
    )
    ap.add_argument("--prompt-tokens", type=int, default=40, help="chat template + prompt")
    ap.add_argument("--caption-tokens", type=int, default=160, help="generated tokens per caption (max_new_tokens 256)")
    ap.add_argument("--decode-batch", type=int, default=256, help="sequences decoding together (vLLM max_num_seqs)")
    ap.add_argument("--persons", type=float, default=1.6, help="persons per image reaching pose (1-5 kept)")
    ap.add_argument("--views", type=float, default=3.0, help="close views per image (products + persons)")
    ap.add_argument("--text-fraction", type=float, default=0.4, help="images whose text cleanup inpaints")
    ap.add_argument("--measure-cpu", action="store_true", help="recount RT-DETR and GroundingDINO on CPU (minutes)")
    ap.add_argument("--measured", metavar="GPU_CHECK_JSON", help="bench/gpu_check.py's json: measured columns beside the estimate")
    args = ap.parse_args()

    table = rows(args)
    n = args.images
    if args.measured:
        measured_table(table, args, n)
        return
    print(f"HoIHuman paper recipe, {n / 1e6:.2f}M images, H100 SXM bf16 {PEAK_BF16 / 1e12:.0f} TFLOP/s dense, every stage sees every image")
    print(f"{'stage':<11} {'model':<66} {'params':>8} {'GFLOP/img':>10} {'MFU':>5} {'ms/img':>7} {'H100-h':>7}  source")
    per_stage: dict[str, float] = {}
    for r in table:
        hours = r.seconds * n / 3600
        per_stage[r.stage] = per_stage.get(r.stage, 0.0) + hours
        mfu = "HBM" if r.seconds_override is not None else f"{MFU[r.family]:.2f}"
        params = f"{r.params / 1e6:.0f}M" if r.params else "-"
        print(
            f"{r.stage:<11} {r.model:<66} {params:>8} {r.gflops * r.per_image:>10.0f} {mfu:>5} {r.seconds * 1e3:>7.2f} {hours:>7.1f}  {r.source}"
        )
    total = sum(per_stage.values())
    bound = max(per_stage, key=per_stage.get)
    print("per stage: " + ", ".join(f"{s} {h:.1f} h" for s, h in sorted(per_stage.items(), key=lambda p: -p[1])))
    print(f"bounding stage: {bound} ({per_stage[bound] / total:.0%} of the GPU time)")
    print(f"at pipeline efficiency 0.85 (GPU idle between batches): {total / 0.85:.1f} H100-hours")
    print(f"total H100-hours: {total:.1f}")


def measured_table(table: list[Row], args, n: float) -> None:
    """The FLOP estimate and the measured time side by side, per model and in total (estimate where nothing was measured)."""
    measured, env = load_measured(args.measured, args.caption_tokens)
    card = env.get("gpu", env.get("device", "?"))
    if env.get("smoke"):
        print("NOTE: the json is a --smoke run (tiny models on CPU): its figures are not real-size measurements")
    if "H100" not in str(card):
        print(f"NOTE: measured on {card}, not an H100: the measured hours are hours of that device")
    print(f"HoIHuman paper recipe, {n / 1e6:.2f}M images: FLOP estimate (H100 SXM bf16) vs measured on {card}")
    print(f"{'stage':<11} {'model':<66} {'est ms/img':>10} {'est h':>7} {'meas ms/img':>11} {'meas h':>7} {'x':>5}  measured as")
    est_total = meas_total = 0.0
    per_stage: dict[str, list[float]] = {}
    for r in table:
        est = r.seconds  # per image, all calls
        est_h = est * n / 3600
        got = measured.get(r.key)
        meas = got[0] * r.per_image if got else None
        meas_h = meas * n / 3600 if meas is not None else None
        est_total += est_h
        meas_total += meas_h if meas_h is not None else est_h
        s = per_stage.setdefault(r.stage, [0.0, 0.0])
        s[0] += est_h
        s[1] += meas_h if meas_h is not None else est_h
        ratio = f"{meas / est:5.2f}" if meas and est else "    -"
        m_ms = f"{meas * 1e3:11.2f}" if meas is not None else f"{'-':>11}"
        m_h = f"{meas_h:7.1f}" if meas_h is not None else f"{'-':>7}"
        print(
            f"{r.stage:<11} {r.model:<66} {est * 1e3:10.2f} {est_h:7.1f} {m_ms} {m_h} {ratio}  {got[1] if got else 'not measured: estimate used in the total'}"
        )
    print("per stage (estimate / measured-or-estimate): " + ", ".join(f"{k} {a:.1f}/{b:.1f} h" for k, (a, b) in per_stage.items()))
    print(f"total H100-hours: estimate {est_total:.1f}, measured (estimate where not measured) {meas_total:.1f}")


if __name__ == "__main__":
    main()
