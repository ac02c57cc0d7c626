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

    from hoiforge.models.weights.registry import resolve
    folder = resolve("stable-diffusion-v1-5")                 # the entry's folder
    ckpt = resolve("sam-vit-h", "sam_vit_h_4b8939.pth")       # one file of it

``resolve`` only looks at files (no hashing, no network): cheap enough for a driver preflight.

Pins: every URL file carries the sha256 of the published file and every Hugging Face entry a
commit, where one could be found (each entry's notes say where it came from; None where none was
found, and the notes say so). ``hoiforge models fetch`` checks them after download, and
``resolve`` (so every build, before any backend loads a file) checks them again: a pinned file is
hashed unless ``.hoiforge.json`` records that very file (size and mtime) with the pinned sha256,
and a Hugging Face copy must come from the pinned commit. Pickle-based checkpoints (ultralytics
``.pt``) are loaded only when pinned (docs/weights.md).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from hoiforge.errors import BackendUnavailable
from hoiforge.models.weights import digest

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
    sha256: str | None = None  # the published file's sha256 (the entry's notes say where it comes from)


@dataclass(frozen=True)
class WeightSpec:
    name: str
    needed_by: tuple[Use, ...]
    files: tuple[WeightFile, ...]
    licence: str
    size_mb: int  # approximate download size
    hf_repo: str | None = None
    revision: str | None = None  # the pinned commit; None where none was found (fetch then records what main resolved to)
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


def _hf(name, needed_by, repo, files, licence, size_mb, revision=None, **kw) -> WeightSpec:
    return WeightSpec(name, tuple(needed_by), tuple(WeightFile(f) for f in files), licence, size_mb, hf_repo=repo, revision=revision, **kw)


def _url(name, needed_by, urls: Iterable[tuple[str, str, str | None]], licence, size_mb, **kw) -> WeightSpec:
    return WeightSpec(name, tuple(needed_by), tuple(WeightFile(path, url, sha) for path, url, sha in urls), licence, size_mb, **kw)


_OPENMMLAB = "https://download.openmmlab.com/mmpose/v1/projects"
_CLIP_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt")  # fmt: skip
_PADDLE_FILES = ("config.json", "inference.json", "inference.pdiparams", "inference.yml")
_RTMW_ZIP = "rtmw-x_simcc-cocktail13_pt-ucoco_270e-384x288-0949e3a9_20230925.zip"
_DWPOSE_ZIP = "rtmpose-l_simcc-ucoco_dw-ucoco_270e-384x288-2438fd99_20230728.zip"

_ENTRIES: list[WeightSpec] = [
    # -- person detection -------------------------------------------------------------
    _url("yolo11x", [Use("person", "yolo", "model", "yolo11x.pt")],
         [("yolo11x.pt", "https://github.com/ultralytics/assets/releases/download/v8.3.0/yolo11x.pt",
           "7bc158aa95c0ebfdd87f70f01653c1131b93e92522dbe15c228bcd742e773a24")],
         "AGPL-3.0", 110,
         notes="Ultralytics YOLO11-x (maintained successor of the papers' YOLOX); a pickled ultralytics "
               "checkpoint that ultralytics unpickles in full, so only this pinned file is loaded. sha256 "
               "(114,636,239 bytes): not stated by Ultralytics; the value several independent public projects "
               "pin for this release asset (found with the code search, 2026)."),
    _hf("rtdetr-r50vd-coco-o365", [Use("person", "rtdetr", "model")], "PekingU/rtdetr_r50vd_coco_o365",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 170,
        revision="457857cec8ac28ddede40ecee9eed2beca321af8",
        notes="transformers RTDetrForObjectDetection, Objects365-pretrained then COCO (higher AP than rtdetr_r50vd). "
              "Commit: the snapshot public projects' Hugging Face cache paths name (code search, 2026)."),
    # -- whole-body pose (133 COCO-WholeBody keypoints) -------------------------------
    _hf("vitpose-h-wholebody", [Use("pose", "vitpose", "model", "vitpose-h-wholebody-hf")], "JunkyByte/easy_ViTPose",
        ("torch/wholebody/vitpose-h-wholebody.pth",), "Apache-2.0", 2500,
        converter="hoiforge.models.weights.convert_vitpose", converted="vitpose-h-wholebody-hf",
        revision="2757e82adcccda02f9f7fef66e5a115b7be439fe",
        notes="ViTPose-H whole-body original (mmpose-layout) weights. The ViTPose project publishes them only "
              "behind OneDrive links, which no script can fetch; easy_ViTPose mirrors them on the hub. "
              "Converted to a transformers VitPoseForPoseEstimation with num_labels=133 by "
              "hoiforge.models.weights.convert_vitpose (people/pose issue). Size approximate. Commit: the snapshot several "
              "public projects' Hugging Face cache paths name (code search, 2026)."),
    _url("rtmw-x-wholebody", [Use("pose", "rtmw", "model", "rtmw-x-384x288.onnx")],
         [(_RTMW_ZIP, f"{_OPENMMLAB}/rtmw/onnx_sdk/{_RTMW_ZIP}", "e2635599f6d14152af4bb3e97f90881a782b003857514c76cc341794364ffbdd")],
         "Apache-2.0", 200,
         converter="hoiforge.models.weights.convert_onnx_zip", converted="rtmw-x-384x288.onnx",
         notes="RTMW-x 384x288 ONNX (onnxruntime), the URL rtmlib's Wholebody 'performance' mode uses; the "
               "zip's end2end.onnx is extracted. The hash in the name is of the .pth, not this zip. sha256 of the zip: "
               "OpenMMLab publishes none; one public project's recorded download (code search, 2026). Size approximate."),
    _url("dwpose-l-wholebody", [Use("pose", "rtmw", "model", "dwpose-l-384x288.onnx")],
         [(_DWPOSE_ZIP, f"{_OPENMMLAB}/rtmposev1/onnx_sdk/{_DWPOSE_ZIP}", "b06f1bc598ddbdb5008a61f4a411aa11ed331370b4f7f438126d6d99e168d147")],
         "Apache-2.0", 120,
         converter="hoiforge.models.weights.convert_onnx_zip", converted="dwpose-l-384x288.onnx", default=False,
         notes="DWPose-l 384x288 ONNX (the URL rtmlib documents for DWPose); same runtime as RTMW. Not the "
               "default: set the pose stage's options.model to it. sha256 of the zip (125,375,567 bytes): OpenMMLab "
               "publishes none; a public project's download script pins it (code search, 2026). Size approximate."),
    # -- products: open-vocabulary detection + segmentation ---------------------------
    _hf("grounding-dino-base", [Use("products", "grounding-dino", "model")], "IDEA-Research/grounding-dino-base",
        ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
         "special_tokens_map.json", "vocab.txt"), "Apache-2.0", 940,
        revision="12bdfa3120f3e7ec7b434d90674b3396eccf88eb",
        notes="transformers GroundingDinoForObjectDetection. Commit: the snapshot many public projects' Hugging "
              "Face cache paths name, with model.safetensors in it (code search, 2026)."),
    _url("sam-vit-h", [Use("products", "sam", "checkpoint", "sam_vit_h_4b8939.pth")],
         [("sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
           "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e")],
         "Apache-2.0", 2560,
         notes="segment-anything original checkpoint (a plain state dict: torch.load weights_only=True). "
               "Meta publishes no sha256 ('4b8939' in the name is an md5 prefix); the pinned one (2,564,550,879 "
               "bytes) is the value many independent public projects verify with sha256sum (code search, 2026)."),
    _hf("sam-vit-huge-hf", [Use("products", "hf-sam", "model")], "facebook/sam-vit-huge",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 2560,
        revision="87aecf0df4ce6b30cd7de76e87673c49644bdf67",
        notes="the same SAM ViT-H weights converted for transformers SamModel. Commit: the revision public "
              "projects pin for facebook/sam-vit-huge (code search, 2026)."),
    # -- cleanup: OCR + inpainting ----------------------------------------------------
    _hf("ppocr-v4-det", [Use("cleanup", "paddleocr", "det_model_dir")], "PaddlePaddle/PP-OCRv4_server_det",
        _PADDLE_FILES, "Apache-2.0", 113,
        revision="50dd9a19217e48ef97f93d6b67e29225c2561cb7",
        notes="PP-OCRv4 server text detection in PaddleOCR 3.x format (inference.yml names the model). The "
              "embedded rapidocr backend ships PP-OCRv4 as ONNX and needs nothing here. Commit: the revision a "
              "public model inventory read (code search, 2026)."),
    _hf("ppocr-v4-rec", [Use("cleanup", "paddleocr", "rec_model_dir")], "PaddlePaddle/PP-OCRv4_server_rec",
        _PADDLE_FILES, "Apache-2.0", 91,
        notes="PP-OCRv4 server text recognition (Chinese + English), PaddleOCR 3.x format. The direction "
              "classifier is not fetched: the backend turns text-line orientation off. No commit pinned: none "
              "was found published (code search, 2026); fetch records the commit main resolved to and the "
              "build checks the copy against that."),
    _url("big-lama", [Use("cleanup", "lama", "model_path", "big-lama.pt")],
         [("big-lama.pt", "https://github.com/enesmsahin/simple-lama-inpainting/releases/download/v0.1.0/big-lama.pt",
           "7ba7aa7ac37a4d41fdbbeba3a2af7ead18058552997e3a3cd1a3b2210c9e6b4c")],
         "Apache-2.0", 196,
         notes="LaMa big-lama as TorchScript (torch.jit.load), the file simple-lama-inpainting downloads. "
               "No publisher sha256; the pinned one (205,803,670 bytes) is what many public projects verify for "
               "this v0.1.0 release asset (code search, 2026)."),
    # -- captions and aesthetics ------------------------------------------------------
    _hf("qwen2-vl-7b-instruct", [Use("caption", "qwen2-vl", "model"), Use("caption", "vllm", "model")], "Qwen/Qwen2-VL-7B-Instruct",
        ("config.json", "generation_config.json", "model.safetensors.index.json",
         *(f"model-0000{i}-of-00005.safetensors" for i in range(1, 6)),
         "preprocessor_config.json", "chat_template.json", "tokenizer.json", "tokenizer_config.json",
         "vocab.json", "merges.txt"), "Apache-2.0", 16600,
        revision="eed13092ef92e448dd6875b2a00151bd3f7db0ac",
        notes="transformers Qwen2VLForConditionalGeneration (no trust_remote_code needed). Commit: the snapshot "
              "many public projects' Hugging Face cache paths name (code search, 2026)."),
    _hf("opus-mt-zh-en", [Use("caption", "marian", "model")], "Helsinki-NLP/opus-mt-zh-en",
        ("config.json", "generation_config.json", "pytorch_model.bin", "source.spm", "target.spm", "vocab.json",
         "tokenizer_config.json"), "CC-BY-4.0", 320,
        notes="MarianMT Chinese->English (OPUS-MT) for the caption stage's optional translator (the paper used "
              "CSANMT, which has no transformers port); transformers MarianMTModel + MarianTokenizer (sentencepiece). "
              "The repo's PyTorch weights are pytorch_model.bin, which transformers loads with torch.load "
              "weights_only=True. No commit pinned: none was found published (code search, 2026); fetch records "
              "the commit main resolved to. Size approximate."),
    _hf("clip-vit-large-patch14", [Use("quality", "laion-aesthetic", "clip_model")], "openai/clip-vit-large-patch14",
        _CLIP_FILES, "MIT", 1710, revision="32bd64288804d66eefd0ccbe215aa642df71cc41",
        notes="image embeddings for the LAION aesthetic MLP. Commit: the snapshot many public projects' Hugging "
              "Face cache paths name, model.safetensors included (code search, 2026)."),
    _url("laion-aesthetic-mlp", [Use("quality", "laion-aesthetic", "mlp_weights", "sac+logos+ava1-l14-linearMSE.safetensors")],
         [("sac+logos+ava1-l14-linearMSE.pth",
           "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/6934dd81792f086e613a121dbce43082cb8be85e/"
           "sac%2Blogos%2Bava1-l14-linearMSE.pth", "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0")],
         "Apache-2.0", 4,
         converter="hoiforge.models.weights.convert_aesthetic", converted="sac+logos+ava1-l14-linearMSE.safetensors",
         notes="LAION improved aesthetic predictor MLP on CLIP ViT-L/14 embeddings; converted to safetensors "
               "(same keys). Fetched from the repository's commit 6934dd81 rather than main. No publisher sha256; the "
               "pinned one (3,714,759 bytes) is what many public projects verify (code search, 2026)."),
    # -- evaluation ---------------------------------------------------------------------
    _hf("clip-vit-base-patch16", [Use("eval", "clip-score")], "openai/clip-vit-base-patch16", _CLIP_FILES, "MIT", 600,
        revision="57c216476eefef5ab752ec549e440a49ae4ae5f3",
        notes="CLIP score in the evaluation tables. Commit: the snapshot many public projects' Hugging Face cache "
              "paths name (code search, 2026); that it holds model.safetensors was not confirmed there."),
    _url("fid-inception", [Use("eval", "fid", None, "pt_inception-2015-12-05-6726825d.pth")],
         [("pt_inception-2015-12-05-6726825d.pth",
           "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
           "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2")],
         "Apache-2.0", 92,
         notes="the FID Inception (TF 2015-12-05 graph ported by pytorch-fid; torchmetrics uses the same). "
               "'6726825d' is torch.hub's sha256-prefix naming; the full sha256 (95,628,359 bytes), which starts "
               "with it, is the one many public projects pin (code search, 2026)."),
    # -- training ---------------------------------------------------------------------
    _hf("dinov2-base", [Use("precompute", "dinov2", "model"), Use("train", "virtualmodel")], "facebook/dinov2-base",
        ("config.json", "model.safetensors", "preprocessor_config.json"), "Apache-2.0", 350,
        revision="f9e44c814b77203eaa57a6bdbbd535f21ede1415",
        notes="product/appearance features for precompute and the trainers. Commit: the snapshot many public projects' "
              "Hugging Face cache paths name (code search, 2026); that it holds model.safetensors was not confirmed there."),
    _hf("stable-diffusion-v1-5", [Use("precompute", "sd-vae", "model"), Use("precompute", "clip-text", "model"),
                                   Use("train", "virtualmodel"), Use("train", "shoemodel")],
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        ("model_index.json", "scheduler/scheduler_config.json",
         "vae/config.json", "vae/diffusion_pytorch_model.safetensors",
         "text_encoder/config.json", "text_encoder/model.safetensors",
         "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
         "unet/config.json", "unet/diffusion_pytorch_model.safetensors"),
        "CreativeML-OpenRAIL-M", 4300, revision="451f4fe16113bff5a5d2269ed5ad43b0592e9a14",
        notes="Commit: the snapshot many public projects' Hugging Face cache paths name (code search, 2026). "
              "Only the components the trainers load (VAE, text encoder + tokenizer, UNet, scheduler); the "
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


def is_commit(revision: str | None) -> bool:
    return bool(revision) and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision)


def file_stamp(path: Path) -> dict:
    """What identifies a file already hashed: its size and modification time."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def verify_pinned(s: WeightSpec, folder: Path, root: Path | str | None = None) -> None:
    """BackendUnavailable unless ``folder`` holds the pinned bytes of ``s``: each file with a pinned sha256
    hashes to it (skipped when .hoiforge.json records that very file, by size and mtime, with that sha256),
    and a Hugging Face copy comes from the pinned commit."""
    refetch = f"delete {folder} and get them again with: {fetch_command([s.name], root)}"
    manifest = read_manifest(folder)
    if s.hf_repo and is_commit(s.revision) and (manifest or folder.parent.name == "snapshots"):
        # A fetched copy says its commit in the manifest; a Hugging Face cache snapshot is named by it. (A
        # folder copied in by hand without its .hoiforge.json cannot say: its files are safetensors/json.)
        commit = manifest.get("commit") if manifest else folder.name
        if commit != s.revision:
            raise BackendUnavailable(
                f"weights {s.name!r} in {folder} are from commit {commit or 'unknown'}, not the pinned {s.revision}; {refetch}"
            )
    recorded = manifest.get("files", {})
    changed = False
    for f in s.files:
        path = folder / f.path
        if not f.sha256 or not path.is_file():
            continue
        known = recorded.get(f.path, {})
        if known.get("sha256") == f.sha256 and all(known.get(k) == v for k, v in file_stamp(path).items()):
            continue
        got = digest.sha256_of(path)
        if got != f.sha256:
            raise BackendUnavailable(
                f"weights {s.name!r}: {path} has sha256 {got}, not the pinned {f.sha256} (corrupted or replaced); refused, "
                f"nothing loads it. {refetch}"
            )
        recorded[f.path] = {**known, "sha256": got, **file_stamp(path)}
        changed = True
    if changed and manifest:  # remember the check (best effort: a read-only shared root is checked again next time)
        with contextlib.suppress(OSError):
            (folder / MANIFEST).write_text(json.dumps({**manifest, "files": recorded}, indent=1))


def pinned_sha256s(backend: str) -> set[str]:
    """The pinned sha256 of every registry file loaded by ``backend`` (e.g. "yolo")."""
    return {f.sha256 for s in REGISTRY.values() if any(u.backend == backend for u in s.needed_by) for f in s.files if f.sha256}


def resolve(name: str, file: str | None = None, root: Path | str | None = None) -> Path:
    """The folder of weights ``name`` (or one ``file`` in it), checked against its pins (``verify_pinned``);
    BackendUnavailable with the fix if missing or not the pinned bytes."""
    s = spec(name)
    if file is not None and file not in s.expected_paths():
        raise BackendUnavailable(f"weights {name!r} have no file {file!r}; they have: {', '.join(s.expected_paths())}")
    folder = locate(s, root)
    if folder is None:
        missing = s.missing_in(s.local_dir(root))
        raise BackendUnavailable(
            f"weights {name!r} missing in {s.local_dir(root)} ({', '.join(missing)}); get them with: {fetch_command([name], root)}"
        )
    verify_pinned(s, folder, root)
    return folder / file if file else folder


__all__ = [
    "REGISTRY", "Use", "WeightFile", "WeightSpec", "fetch_command", "locate", "pinned_sha256s", "resolve", "runtime_env_vars",
    "spec", "verify_pinned", "weights_root",
]  # fmt: skip
