"""The model-weights registry: what every paper-grade backend loads, where it comes from, where it lives.

One weights root is shared by all backends and all nodes of a cluster:
``--weights DIR`` (which sets ``HOIFORGE_WEIGHTS``) > ``HOIFORGE_WEIGHTS`` > ``~/.cache/hoiforge/weights``.
Entry ``NAME`` lives in ``<root>/<NAME>/`` with each file at its path relative to that folder.
For Hugging Face entries a complete copy already in the Hugging Face cache is used as-is, so
users who downloaded a model before do not download it twice.

How a backend gets its weights: the backend's option says which entry it takes
(``Weights("sam-vit-h", "sam_vit_h_4b8939.pth")`` in its annotation, models/registry.py), and
pipeline/weights_plan.py derives from those what a recipe needs and fills unset options with
local paths before Ray starts. ``Use`` below documents who loads an entry (shown by ``hoiforge
models list``); a test keeps it equal to the backends' annotations. Code outside a recipe
(trainers, eval) asks directly:

    from hoiforge.models.weights import resolve
    folder = resolve("stable-diffusion-v1-5")                 # the entry's folder
    ckpt = resolve("sam-vit-h", "sam_vit_h_4b8939.pth")       # one file of it

``resolve`` only looks at files (no hashing, no network): cheap enough for a driver preflight.

sha256: filled only where the publisher states one. None of the entries below has one today
(notes say what exists instead); ``hoiforge models fetch`` records the sha256 of what it
downloaded in ``<root>/<NAME>/.hoiforge.json`` and ``hoiforge models check --verify`` compares
against it, so later corruption (a truncated copy on a shared disk) is still caught.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hoiforge.errors import BackendUnavailable

WEIGHTS_ENV = "HOIFORGE_WEIGHTS"
DEFAULT_ROOT = Path("~/.cache/hoiforge/weights")
MANIFEST = ".hoiforge.json"  # written by fetch: source, commit, size and sha256 of each file


class Use(NamedTuple):
    """Who loads an entry: recipe stage (or "eval"/"train"), backend name, the backend option that
    takes the path, and which path: the entry's folder (file None) or one file/folder in it."""

    stage: str
    backend: str
    option: str | None = None
    file: str | None = None


@dataclass(frozen=True)
class WeightFile:
    """One file of an entry. ``url`` for plain HTTP sources; None for Hugging Face entries."""

    path: str  # relative to the entry's folder (and to the repo root for Hugging Face entries)
    url: str | None = None
    sha256: str | None = None  # only where the publisher states it


@dataclass(frozen=True)
class WeightSpec:
    name: str
    needed_by: tuple[Use, ...]
    files: tuple[WeightFile, ...]
    licence: str
    size_mb: int  # approximate download size
    hf_repo: str | None = None
    revision: str | None = None  # branch or commit; fetch pins the commit it resolved in the manifest
    # A module with ``convert(src: Path, dst: Path) -> Path``: fetch runs it on the first file to make
    # ``converted`` (a file, or a folder such as a transformers model), which is what the backend loads.
    converter: str | None = None
    converted: str | None = None  # relative to the entry's folder
    default: bool = True  # False: an alternative the user picks by setting the option to resolve(name)
    notes: str = ""

    @property
    def source(self) -> str:
        if self.hf_repo:
            return f"hf://{self.hf_repo}@{self.revision or 'main'}"
        return ", ".join(f.url or f.path for f in self.files)

    def local_dir(self, root: Path | str | None = None) -> Path:
        return weights_root(root) / self.name

    def expected_paths(self) -> list[str]:
        """Every path that must exist for the entry to be usable (downloads + converted output)."""
        return [f.path for f in self.files] + ([self.converted] if self.converted else [])

    def missing_in(self, folder: Path) -> list[str]:
        """Expected paths absent from ``folder``, or whose size differs from what fetch recorded."""
        recorded = read_manifest(folder).get("files", {})
        missing = []
        for rel in self.expected_paths():
            p = folder / rel
            if p.is_dir():  # a converter may write a model folder (config + weights)
                present = any(p.iterdir())
            else:
                size = recorded.get(rel, {}).get("size")
                present = p.is_file() and p.stat().st_size > 0 and (size is None or p.stat().st_size == size)
            if not present:
                missing.append(rel)
        return missing


def _hf(name, needed_by, repo, files, licence, size_mb, revision="main", **kw) -> WeightSpec:
    return WeightSpec(name, tuple(needed_by), tuple(WeightFile(f) for f in files), licence, size_mb, hf_repo=repo, revision=revision, **kw)


def _url(name, needed_by, urls: Iterable[tuple[str, str]], licence, size_mb, **kw) -> WeightSpec:
    return WeightSpec(name, tuple(needed_by), tuple(WeightFile(path, url) for path, url in urls), licence, size_mb, **kw)


_OPENMMLAB = "https://download.openmmlab.com/mmpose/v1/projects"
_CLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt")  # fmt: skip
_PADDLE_FILES = ("config.json", "inference.json", "inference.pdiparams", "inference.yml")
_RTMW_ZIP = "rtmw-x_simcc-cocktail13_pt-ucoco_270e-384x288-0949e3a9_20230925.zip"
_DWPOSE_ZIP = "rtmpose-l_simcc-ucoco_dw-ucoco_270e-384x288-2438fd99_20230728.zip"

_ENTRIES: list[WeightSpec] = [
    # -- person detection -------------------------------------------------------------
    _url("yolo11x", [Use("person", "yolo", "model", "yolo11x.pt")],
         [("yolo11x.pt", "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11x.pt")],
         "AGPL-3.0", 110,
         notes="Ultralytics YOLO11-x (maintained successor of the papers' YOLOX); a pickled ultralytics "
               "checkpoint that ultralytics loads itself. No published sha256."),
    _hf("rtdetr-r50vd-coco-o365", [Use("person", "rtdetr", "model")], "PekingU/rtdetr_r50vd_coco_o365",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 170,
        notes="transformers RTDetrForObjectDetection, Objects365-pretrained then COCO (higher AP than rtdetr_r50vd)."),
    # -- whole-body pose (133 COCO-WholeBody keypoints) -------------------------------
    _hf("vitpose-h-wholebody", [Use("pose", "vitpose", "model", "vitpose-h-wholebody-hf")], "JunkyByte/easy_ViTPose",
        ("torch/wholebody/vitpose-h-wholebody.pth",), "Apache-2.0", 2500,
        converter="hoiforge.models.convert_vitpose", converted="vitpose-h-wholebody-hf",
        notes="ViTPose-H whole-body original (mmpose-layout) weights. The ViTPose project publishes them only "
              "behind OneDrive links, which no script can fetch; easy_ViTPose mirrors them on the hub. "
              "Converted to a transformers VitPoseForPoseEstimation with num_labels=133 by "
              "hoiforge.models.convert_vitpose (people/pose issue). Size approximate."),
    _url("rtmw-x-wholebody", [Use("pose", "rtmw", "model", "rtmw-x-384x288.onnx")],
         [(_RTMW_ZIP, f"{_OPENMMLAB}/rtmw/onnx_sdk/{_RTMW_ZIP}")], "Apache-2.0", 200,
         converter="hoiforge.models.convert_onnx_zip", converted="rtmw-x-384x288.onnx",
         notes="RTMW-x 384x288 ONNX (onnxruntime), the URL rtmlib's Wholebody 'performance' mode uses; the "
               "zip's end2end.onnx is extracted. The hash in the name is of the .pth, not this zip. Size approximate."),
    _url("dwpose-l-wholebody", [Use("pose", "rtmw", "model", "dwpose-l-384x288.onnx")],
         [(_DWPOSE_ZIP, f"{_OPENMMLAB}/rtmposev1/onnx_sdk/{_DWPOSE_ZIP}")], "Apache-2.0", 120,
         converter="hoiforge.models.convert_onnx_zip", converted="dwpose-l-384x288.onnx", default=False,
         notes="DWPose-l 384x288 ONNX (the URL rtmlib documents for DWPose); same runtime as RTMW. Not the "
               "default: set the pose stage's options.model to it. Size approximate."),
    # -- products: open-vocabulary detection + segmentation ---------------------------
    _hf("grounding-dino-base", [Use("products", "grounding-dino", "model")], "IDEA-Research/grounding-dino-base",
        ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.txt"), "Apache-2.0", 940,
        notes="transformers GroundingDinoForObjectDetection."),
    _url("sam-vit-h", [Use("products", "sam", "checkpoint", "sam_vit_h_4b8939.pth")],
         [("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth")],
         "Apache-2.0", 2560,
         notes="segment-anything original checkpoint (a plain state dict: torch.load weights_only=True). "
               "Meta publishes no sha256 ('4b8939' in the name is an md5 prefix)."),
    _hf("sam-vit-huge-hf", [Use("products", "hf-sam", "model")], "facebook/sam-vit-huge",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 2560,
        notes="the same SAM ViT-H weights converted for transformers SamModel."),
    # -- cleanup: OCR + inpainting ----------------------------------------------------
    _hf("ppocr-v4-det", [Use("cleanup", "paddleocr", "det_model_dir")], "PaddlePaddle/PP-OCRv4_server_det",
        _PADDLE_FILES, "Apache-2.0", 113,
        notes="PP-OCRv4 server text detection in PaddleOCR 3.x format (inference.yml names the model). The "
              "embedded rapidocr backend ships PP-OCRv4 as ONNX and needs nothing here."),
    _hf("ppocr-v4-rec", [Use("cleanup", "paddleocr", "rec_model_dir")], "PaddlePaddle/PP-OCRv4_server_rec",
        _PADDLE_FILES, "Apache-2.0", 91,
        notes="PP-OCRv4 server text recognition (Chinese + English), PaddleOCR 3.x format. The direction "
              "classifier is not fetched: the backend turns text-line orientation off."),
    _url("big-lama", [Use("cleanup", "lama", "model_path", "big-lama.pt")],
         [("big-lama.pt", "https://github.com/enesmsahin/simple-lama-inpainting/releases/download/v0.1.0/big-lama.pt")],
         "Apache-2.0", 196,
         notes="LaMa big-lama as TorchScript (torch.jit.load), the file simple-lama-inpainting downloads. "
               "No publisher sha256 (community copies quote 7ba7aa7a...; not used as it is not the publisher's)."),
    # -- captions and aesthetics ------------------------------------------------------
    _hf("qwen2-vl-7b-instruct", [Use("caption", "qwen2-vl", "model")], "Qwen/Qwen2-VL-7B-Instruct",
        ("config.json", "generation_config.json", "model.safetensors.index.json",
         *(f"model-0000{i}-of-00005.safetensors" for i in range(1, 6)),
         "preprocessor_config.json", "chat_template.json", "tokenizer.json", "tokenizer_config.json",
         "vocab.json", "merges.txt"), "Apache-2.0", 16600,
        notes="transformers Qwen2VLForConditionalGeneration (no trust_remote_code needed)."),
    _hf("clip-vit-large-patch14", [Use("quality", "laion-aesthetic", "clip_model")], "openai/clip-vit-large-patch14",
        _CLIP_FILES, "MIT", 1710, notes="image embeddings for the LAION aesthetic MLP."),
    _url("laion-aesthetic-mlp", [Use("quality", "laion-aesthetic", "mlp_weights", "sac+logos+ava1-l14-linearMSE.safetensors")],
         [("sac+logos+ava1-l14-linearMSE.pth",
           "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/sac%2Blogos%2Bava1-l14-linearMSE.pth")],
         "Apache-2.0", 4,
         converter="hoiforge.models.convert_aesthetic", converted="sac+logos+ava1-l14-linearMSE.safetensors",
         notes="LAION improved aesthetic predictor MLP on CLIP ViT-L/14 embeddings; converted to safetensors "
               "(same keys). No publisher sha256."),
    # -- evaluation ---------------------------------------------------------------------
    _hf("clip-vit-base-patch16", [Use("eval", "clip-score")], "openai/clip-vit-base-patch16", _CLIP_FILES, "MIT", 600,
        notes="CLIP score in the evaluation tables."),
    _url("fid-inception", [Use("eval", "fid", None, "pt_inception-2015-12-05-6726825d.pth")],
         [("pt_inception-2015-12-05-6726825d.pth",
           "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth")],
         "Apache-2.0", 92,
         notes="the FID Inception (TF 2015-12-05 graph ported by pytorch-fid; torchmetrics uses the same). "
               "'6726825d' follows torch.hub's sha256-prefix naming but is not stated as a checksum, so not enforced."),
    # -- training ---------------------------------------------------------------------
    _hf("dinov2-base", [Use("precompute", "dinov2", "model"), Use("train", "virtualmodel")], "facebook/dinov2-base",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 350,
        notes="product/appearance features for the trainers."),
    _hf("stable-diffusion-v1-5", [Use("precompute", "sd-vae", "model"), Use("precompute", "clip-text", "model"),
                                   Use("train", "virtualmodel"), Use("train", "shoemodel")],
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        ("model_index.json", "scheduler/scheduler_config.json",
         "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
         "text_encoder/config.json", "text_encoder/model.safetensors",
         "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
         "unet/config.json", "unet/diffusion_pytorch_model.safetensors"),
        "CreativeML-OpenRAIL-M", 4300,
        notes="only the components the trainers load (VAE, text encoder + tokenizer, UNet, scheduler); the "
              "safety checker is not fetched."),
]  # fmt: skip
REGISTRY: dict[str, WeightSpec] = {s.name: s for s in _ENTRIES}


def weights_root(root: Path | str | None = None) -> Path:
    """The one weights folder: ``root`` if given, else $HOIFORGE_WEIGHTS, else ~/.cache/hoiforge/weights."""
    chosen = root if root is not None else os.environ.get(WEIGHTS_ENV) or DEFAULT_ROOT
    return Path(chosen).expanduser().resolve()


def runtime_env_vars(root: Path | str | None = None) -> dict[str, str]:
    """Environment for Ray workers (runtime_env={"env_vars": ...}) so every node resolves the same weights."""
    env = {WEIGHTS_ENV: str(weights_root(root))}
    if "HF_HUB_OFFLINE" in os.environ:
        env["HF_HUB_OFFLINE"] = os.environ["HF_HUB_OFFLINE"]
    return env


def spec(name: str) -> WeightSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _hf_cache_dir(s: WeightSpec) -> Path | None:
    """The Hugging Face cache snapshot holding every file of ``s``, if one does (no network)."""
    if not s.hf_repo or s.converted:
        return None  # converted entries exist only under the weights root
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    folder = None
    for f in s.files:
        hit = try_to_load_from_cache(s.hf_repo, f.path, revision=s.revision)
        if not isinstance(hit, str):
            return None
        here = Path(hit).parents[len(Path(f.path).parts) - 1]
        if folder is not None and here != folder:
            return None  # files from different commits: not one consistent copy
        folder = here
    return folder


def locate(s: WeightSpec, root: Path | str | None = None) -> Path | None:
    """Where a complete copy of ``s`` is: the weights root first, then the Hugging Face cache."""
    local = s.local_dir(root)
    if not s.missing_in(local):
        return local
    return _hf_cache_dir(s)


def fetch_command(names: Iterable[str], root: Path | str | None = None) -> str:
    return f"hoiforge models fetch {' '.join(names)} --to {weights_root(root)}"


def resolve(name: str, file: str | None = None, root: Path | str | None = None) -> Path:
    """The folder of weights ``name`` (or one ``file`` in it); BackendUnavailable with the fix if missing."""
    s = spec(name)
    if file is not None and file not in s.expected_paths():
        raise BackendUnavailable(f"weights {name!r} have no file {file!r}; they have: {', '.join(s.expected_paths())}")
    folder = locate(s, root)
    if folder is None:
        missing = s.missing_in(s.local_dir(root))
        raise BackendUnavailable(
            f"weights {name!r} missing in {s.local_dir(root)} ({', '.join(missing)}); get them with: {fetch_command([name], root)}"
        )
    return folder / file if file else folder


__all__ = ["REGISTRY", "Use", "WeightFile", "WeightSpec", "fetch_command", "locate", "resolve", "runtime_env_vars", "spec", "weights_root"]
