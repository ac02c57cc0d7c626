"""``hoiforge eval virtualmodel``: generate on a build's test split with a trained run, score, write Table 1 (and 4).

Per test sample (shard order, the first ``n``), the condition is what the paper's object-to-human
task (OHG) gives the model, read from the sample: ONE product, as in training: ``products[0]``,
the product the training sampler (``datasets.vm_sample``) takes when it draws without a random
generator (in training it draws one product uniformly per iteration; a fixed one keeps the
evaluation reproducible). The product o = the photo's pixels inside m, m = that product's whole
mask (its ``rle``, else its pixels of ``mask.png``), the pose p
drawn from the persons' 133 keypoints, the edges e and the close view v made from o and m by the
pipeline (``VirtualModelPipeline``, as ``hoiforge generate virtualmodel`` does), and the caption.
Everything is brought to the output size (the photo's aspect, short side ``size``, sides multiples
of 8), one image is generated per condition with seed ``seed + i`` (i = the sample's position),
Content Backfill applied, and saved as ``REPORT/generated/<variant>/<id>.png``. Conditions of
the same output size are generated ``gen_batch`` at a time in one denoising loop (each image still
starts from its own seed's noise; batching changes pixels by round-off only, so the batch size is
recorded with the settings).

Scoring (``scoring.score_virtualmodel``): FID/KID against the same samples' real images (exported
to ``REPORT/real/``) at the generation short side, CLIP score against the captions, whole-body
AP/AR of the pose estimator run on the generated images against the conditioning keypoints, OER
of the products segmenter's mask on the generated image (prompted with m's box) against m, per
product, averaged over products.

Estimators: the paper's are a whole-body pose estimator and "SAM segmentation"; the defaults are
the paper-grade backends (``vitpose`` whole-body, ``sam``), their weights checked before any work
(missing: one sentence naming the fetch command and the flags that pick the embedded ones).
With an embedded backend (``mediapipe`` pose, ``embedded`` GrabCut M) the tables' titles and rows
say so and ``--compare`` is refused.

Ablations (Table 4) are separately trained models (a config with ``branches.content_branch``,
``identity_branch`` or ``close_view`` false): the run's own variant is one row, each
``--ablation-run`` another; a variant no run provides is listed as not evaluated. A branch is never
switched off at inference to stand in for a model trained without it.

A rerun into the same REPORT reuses the images of a variant generated with identical settings
(``generation.json``), so an interrupted evaluation continues where it stopped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from hoiforge.errors import EvalError
from hoiforge.eval.held_out import Members, Need, annotation, caption, check_test_split, samples, survey
from hoiforge.eval.runs import check_run, finite, generation_folder, prepare_report, table_markdown, timed, tracked
from hoiforge.eval.scoring import score_virtualmodel, virtualmodel_row
from hoiforge.eval.tables import GenerationSettings, ResultRow, write_table
from hoiforge.metrics.pose import PersonPose

COMMAND = "hoiforge eval virtualmodel"
IMAGE_EXTS = ("jpg", "png", "webp")
# Table 4's variants and the config that trains each (README "Table 4 ablations").
ABLATIONS = {
    "VirtualModel": "the default branches",
    "w/o CB": "branches: {content_branch: false}",
    "w/o IB": "branches: {identity_branch: false}",
    "w/o C_v": "branches: {close_view: false}",
}
SLUGS = {"VirtualModel": "virtualmodel", "w/o CB": "wo-cb", "w/o IB": "wo-ib", "w/o C_v": "wo-cv"}
# Backends that measure what the paper's AP/AR (a whole-body estimator) and OER (SAM) measure.
PAPER_GRADE = {"pose-estimator": ("vitpose", "rtmw"), "box-segmenter": ("sam", "hf-sam")}
EMBEDDED_FLAGS = "--pose-estimator mediapipe --oer-segmenter embedded"
EMBEDDED = "embedded estimators, not the paper's"
PRODUCT_RULE = "products[0], the product the training sampler takes without a random draw"


def _has_products(m: Members) -> bool:
    products = annotation(m).get("products") or []
    return bool(products) and ("mask.png" in m or all("rle" in p for p in products))


NEEDS = [
    Need("an image", "the `decode` stage", lambda m: any(e in m for e in IMAGE_EXTS)),
    Need(
        "persons with 133 keypoints in the json",
        "the `pose` stage",
        lambda m: any(p.get("keypoints") for p in annotation(m).get("persons", [])),
    ),
    Need("product masks (products[].rle or mask.png)", "the `products` stage", _has_products),
    Need("a caption (txt)", "the `caption` stage", lambda m: bool(caption(m))),
]


@dataclass
class Options:
    n: int | None = None
    steps: int | None = None  # default: the run's config (generate.steps)
    cfg: float | None = None  # default: the run's config (generate.cfg)
    seed: int = 0
    size: int | None = None  # output short side; default: the run's training resolution
    pose_estimator: str = "vitpose"  # the paper's kind: a whole-body estimator
    oer_segmenter: str = "sam"  # the paper's "SAM segmentation"
    oer_box_scale: float = 1.1
    clip_model: str | None = None
    clip_truncation: str = "torchmetrics"
    fid_method: str = "sqrtm"
    batch_size: int = 16  # generated images per pose/OER batch
    gen_batch: int = 8  # conditions of one output size per denoising loop
    cache_dir: str | None = None
    device: str | None = None
    compare: bool = False
    progress: bool = True
    allow_outside_run: bool = False  # load base models a run's config names outside it (runs you made)


def variant_of(cfg) -> str:
    """Table 4's name for what a run's config trains."""
    b = cfg.branches
    parts = [name for name, off in (("w/o IB", not b.identity_branch), ("w/o CB", not b.content_branch)) if off]
    if b.identity_branch and not b.close_view:
        parts.append("w/o C_v")
    return " + ".join(parts) if parts else "VirtualModel"


def slug(variant: str) -> str:
    return SLUGS.get(variant) or "".join(c if c.isalnum() else "-" for c in variant.lower()).strip("-")


# -- conditions --------------------------------------------------------------------------------
def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


class Condition:
    """A VirtualModelCondition (what ``scoring`` reads: id, file, caption, persons, size, product_mask(s)) whose m (one
    product's) is held as COCO RLE and decoded when read: a test split's full-size masks would not fit in memory."""

    def __init__(self, sid: str, ext: str, caption: str, persons: list[PersonPose], mask: np.ndarray, labels: tuple[str, ...]):
        from pycocotools import mask as mask_utils

        self.id, self.ext, self.caption, self.persons, self.product_labels = sid, ext, caption, persons, labels
        self.size = (int(mask.shape[0]), int(mask.shape[1]))
        self._rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))

    @property
    def file(self) -> str:
        return f"{self.id}.png"

    @property
    def product_mask(self) -> np.ndarray:
        from pycocotools import mask as mask_utils

        return mask_utils.decode(self._rle).astype(bool)

    @property
    def product_masks(self) -> list[np.ndarray]:
        return [self.product_mask]


def read_condition(sid: str, members: Members) -> Condition:
    """The OHG condition of a test sample at the photo's size: one product (``products[0]``, see the module doc)."""
    from hoiforge.datasets.bounds import SampleRejected, image_size
    from hoiforge.datasets.vm_sample import product_mask

    ann = annotation(members)
    ext = next(e for e in IMAGE_EXTS if e in members)
    try:
        w, h = image_size(members[ext], ext)  # from the header, within the pixel bound, before any allocation
    except SampleRejected as e:
        raise EvalError(f"test sample {sid}: {e}; the build output is damaged or crafted, rebuild it") from None
    persons = [
        PersonPose(tuple(float(v) for v in p["box"]), np.asarray(p["keypoints"], np.float64).reshape(-1, 3))
        for p in ann.get("persons", [])
        if p.get("keypoints")
    ]
    instance_map = None
    if "mask.png" in members:
        from hoiforge.datasets.masks import decode_mask

        instance_map = decode_mask(members["mask.png"])
    try:
        mask = product_mask(ann, 0, instance_map, (h, w))  # a received RLE is checked against the photo's size
    except SampleRejected as e:
        raise EvalError(f"test sample {sid}: {e}; the build output is damaged or crafted, rebuild it") from None
    if mask.shape != (h, w):  # a received mask of another size: no product pixels rather than a misplaced m
        mask = np.zeros((h, w), bool)
    return Condition(sid, ext, caption(members), persons, mask, (str(ann["products"][0].get("label", "")),))


def condition_at(cond: Condition, photo: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(product o, mask m, pose p) at the output size (short side ``size``, sides multiples of 8)."""
    import cv2

    from hoiforge.datasets.render import render_pose
    from hoiforge.datasets.vm_sample import training_size
    from hoiforge.eval.scoring import scaled_to

    rgb = photo
    h, w = rgb.shape[:2]
    out_w, out_h = training_size(w, h, size)
    persons, mask = scaled_to(cond, out_h, out_w)
    product = cv2.resize(rgb, (out_w, out_h), interpolation=cv2.INTER_AREA if out_w < w else cv2.INTER_LINEAR)
    pose = render_pose([p.keypoints for p in persons], out_h, out_w)
    return product, mask, pose


# -- the command -------------------------------------------------------------------------------
def _backend(task: str, name: str, flag: str) -> tuple:
    """(backend, options with its registry weights filled in, weight entries missing) for ``name``; a wrong name is an
    EvalError naming the command-line ``flag``."""
    from hoiforge.errors import BackendUnavailable
    from hoiforge.models import registry
    from hoiforge.models.weights.registry import resolve

    try:
        b = registry.backend(task, name)
    except KeyError as e:
        raise EvalError(f"{flag}: {e.args[0]}") from None
    options, missing = {}, []
    for option, marker in registry.weight_fields(b.load()).items():
        try:
            options[option] = str(resolve(marker.entry, marker.file))
        except BackendUnavailable:
            missing.append(marker.entry)
    return b, options, missing


def estimators(opts: Options) -> tuple:
    """(pose backend instance, OER segmenter backends, whether both are paper-grade), checked before any work."""
    from hoiforge.models import registry
    from hoiforge.models.weights.registry import fetch_command

    embedded = embedded_choice(opts)
    if embedded and opts.compare:
        raise EvalError(
            f"--compare needs the paper-grade estimators: {embedded} do not measure what the paper's AP/AR and OER do; "
            "leave --pose-estimator and --oer-segmenter at their defaults (vitpose, sam)"
        )
    pose_b, pose_opts, pose_missing = _backend("pose-estimator", opts.pose_estimator, "--pose-estimator")
    seg_b, seg_opts, seg_missing = _backend("box-segmenter", opts.oer_segmenter, "--oer-segmenter")
    missing = list(dict.fromkeys(pose_missing + seg_missing))
    if missing:
        raise EvalError(
            f"the paper-grade estimators (--pose-estimator {opts.pose_estimator}, --oer-segmenter {opts.oer_segmenter}) need weights "
            f"not found: {', '.join(missing)}; get them with `{fetch_command(missing)}`, or pass {EMBEDDED_FLAGS} to score with "
            "the embedded estimators (the tables then say so and --compare is refused)"
        )
    typed = {}
    for b, options in ((pose_b, pose_opts), (seg_b, seg_opts)):
        try:
            typed[b.task] = registry.validate_options(b, options)
        except ValueError as e:
            raise EvalError(f"{b.name}: {e.args[0]}") from None
        registry.check(b, typed[b.task])
    pose = registry.instantiate(pose_b, typed["pose-estimator"])
    segment_backends = {"segmenter": seg_b.name, "segmenter_options": seg_opts}
    return pose, segment_backends, not embedded


def embedded_choice(opts: Options) -> str | None:
    """The embedded estimators chosen, in words (None when both are paper-grade)."""
    chosen = [
        f"{flag} {name}"
        for task, flag, name in (
            ("pose-estimator", "--pose-estimator", opts.pose_estimator),
            ("box-segmenter", "--oer-segmenter", opts.oer_segmenter),
        )
        if name not in PAPER_GRADE[task]
    ]
    return " and ".join(chosen) or None


def batches(conditions: list[Condition], folder: Path, size: int, batch: int) -> list[list[tuple[int, Condition]]]:
    """The conditions whose image is not in ``folder`` yet, as (position, condition) batches of one output size."""
    from hoiforge.datasets.vm_sample import training_size

    groups: dict[tuple[int, int], list[tuple[int, Condition]]] = {}
    out = []
    for i, c in enumerate(conditions):
        if (folder / c.file).is_file():
            continue
        group = groups.setdefault(training_size(c.size[1], c.size[0], size), [])
        group.append((i, c))
        if len(group) == batch:
            out.append(list(group))
            group.clear()
    out += [g for g in groups.values() if g]
    return out


def generate(
    pipe,
    conditions: list[Condition],
    real: Path,
    folder: Path,
    size: int,
    steps: int,
    guidance: float,
    seed: int,
    opts: Options,
    label: str,
) -> int:
    """Generate the missing ``<id>.png`` in ``folder`` (each photo read back from ``real``), conditions of one output
    size ``opts.gen_batch`` at a time; returns how many were made."""
    from hoiforge.training.virtualmodel.pipeline import backfill

    todo = batches(conditions, folder, size, opts.gen_batch)
    made = 0
    for chunk in tracked(todo, sum(map(len, todo)), f"generate {label}", opts.progress, weight=len):
        made_here = [condition_at(c, _decode((real / f"{c.id}.{c.ext}").read_bytes()), size) for _, c in chunk]
        h, w = made_here[0][1].shape
        images = pipe.batch(
            [c.caption for _, c in chunk],
            height=h,
            width=w,
            products=[p for p, _, _ in made_here],
            masks=[m for _, m, _ in made_here],
            poses=[q for _, _, q in made_here],
            steps=steps,
            guidance=guidance,
            seeds=[seed + i for i, _ in chunk],
        )
        for (_, c), image, (product, mask, _) in zip(chunk, images, made_here, strict=True):
            tmp = folder / f".{c.id}.png.tmp"
            Image.fromarray(backfill(image, product, mask)).save(tmp, format="PNG")
            tmp.replace(folder / c.file)  # a killed run leaves no half-written image behind
            made += 1
    return made


@dataclass
class Plan:
    """Everything the command checked before any model loads."""

    variants: dict[str, Path]  # Table 4 variant -> its run
    root: Path
    report: Path
    kept: list[str]
    n_test_read: int
    pose: object  # the pose backend, loaded
    segment_backends: dict
    embedded: str | None  # the embedded estimators chosen, in words; None = paper-grade
    notes: list[str] = field(default_factory=list)


def check_inputs(checkpoint, data, report, ablations: bool, ablation_runs, opts: Options) -> Plan:
    """Every refusal of the command, before any image is generated."""
    from hoiforge.metrics.clip_score import resolve_clip
    from hoiforge.training.virtualmodel.config import load_config

    if ablation_runs and not ablations:
        raise EvalError("--ablation-run needs --ablations (Table 4 is written only with --ablations)")
    runs = [check_run(checkpoint, "virtualmodel"), *(check_run(r, "virtualmodel") for r in ablation_runs)]
    if opts.steps is not None and opts.steps < 1:
        raise EvalError(f"--steps {opts.steps}: give at least 1 DDIM step")
    if opts.gen_batch < 1:
        raise EvalError(f"--batch {opts.gen_batch}: give at least 1 condition per batch")
    if opts.size is not None and (opts.size < 16 or opts.size % 8):
        raise EvalError(f"--size {opts.size}: give a short side that is a multiple of 8, at least 16")
    variants: dict[str, Path] = {}
    for run in runs:
        variant = variant_of(load_config(_config_file(run)))
        if variant in variants:
            raise EvalError(f"--checkpoint {variants[variant]} and --ablation-run {run} both train {variant!r}; give one run per variant")
        variants[variant] = run
    root = check_test_split(data, opts.n)
    kept, total, skipped = survey(root, opts.n, NEEDS, COMMAND)
    report_dir = prepare_report(report)
    resolve_clip(opts.clip_model)
    pose, segment_backends, _ = estimators(opts)
    return Plan(variants, root, report_dir, kept, total, pose, segment_backends, embedded_choice(opts), [f"{skipped}."] if skipped else [])


def read_conditions(plan: Plan, n: int | None) -> tuple[list[Condition], Path]:
    """The kept samples' conditions, and the real set (FID/KID) exported to ``REPORT/real``, in one streamed pass."""
    real = plan.report / "real"
    real.mkdir(exist_ok=True)
    kept_ids = set(plan.kept)
    for stale in real.iterdir():  # a previous evaluation of other samples
        if stale.is_file() and stale.stem not in kept_ids:
            stale.unlink()
    conditions = []
    for sid, members in samples(plan.root, n, kept_ids):
        cond = read_condition(sid, members)
        if not (real / f"{sid}.{cond.ext}").is_file():
            (real / f"{sid}.{cond.ext}").write_bytes(members[cond.ext])
        conditions.append(cond)
    return conditions, real


def generate_variant(variant: str, run: Path, plan: Plan, conditions: list[Condition], real: Path, opts: Options, say) -> dict:
    """Generate the variant's images missing from its folder; returns the result so far (settings, images made, timing)."""
    from hoiforge.training.virtualmodel.generate import load_run

    cfg, pipe = load_run(run, opts.allow_outside_run)
    if opts.device is not None:
        on_device(pipe, opts.device)
    size = opts.size or cfg.data.resolution
    steps, guidance = opts.steps or cfg.generate.steps, cfg.generate.cfg if opts.cfg is None else opts.cfg
    untrained = None
    if cfg.untrained:
        say(f"warning: {run} is config {cfg.name!r}: UNTRAINED random models, its images are noise and its numbers mean nothing")
        untrained = f"{variant}: config {cfg.name!r} is untrained random models (a code-path check); the numbers mean nothing."
    folder = plan.report / "generated" / slug(variant)
    settings = {
        "run": str(run.resolve()),
        "config": cfg.name,
        "architecture": cfg.architecture(),
        "variant": variant,
        "sampler": "DDIM",
        "steps": steps,
        "cfg": guidance,
        "size": size,
        "seed": seed_rule(opts.seed),
        "batch": opts.gen_batch,  # batched convolutions round differently: part of what made the images
        "product": PRODUCT_RULE,
        "ids": [c.id for c in conditions],
    }
    generation_folder(folder, settings)
    timing: dict = {}
    with timed(timing, "generate_s"):
        made = generate(pipe, conditions, real, folder, size, steps, guidance, opts.seed, opts, variant)
    del pipe
    gen = GenerationSettings("DDIM", steps, guidance, f"short side {size}", opts.seed, len(conditions))
    return {"variant": variant, "run": str(run), "generated": str(folder), "images_made": made, "settings": settings,
            "timing": timing, "gen": gen, "untrained": untrained}  # fmt: skip


def score_variant(result: dict, plan: Plan, conditions: list[Condition], real: Path, opts: Options, say) -> dict:
    """Table 1's numbers of the variant's images, added to its ``result``."""
    timing = result["timing"]
    with timed(timing, "score_s"):
        scores = score_virtualmodel(
            result["generated"],
            real,
            conditions,
            pose_backend=plan.pose,
            segment_backends=plan.segment_backends,
            oer_box_scale=opts.oer_box_scale,
            batch_size=opts.batch_size,
            resolution=result["settings"]["size"],
            clip_model=opts.clip_model,
            clip_truncation=opts.clip_truncation,
            fid_method=opts.fid_method,
            cache_dir=opts.cache_dir,
            device=opts.device,
            progress=opts.progress,
        )
    for w in scores.get("warnings", []):
        say(f"warning: {w}")
    made, variant = result["images_made"], result["variant"]
    say(f"{variant}: {made} image(s) generated in {timing['generate_s']:.1f} s, scored in {timing['score_s']:.1f} s")
    return {**result, "scores": scores}


def _spec(name: str, embedded: str | None):
    """The table's spec, its title saying so when embedded estimators measured it."""
    from dataclasses import replace

    from hoiforge.eval.tables import spec_of

    spec = spec_of(name)
    return replace(spec, title=f"{spec.title} — {EMBEDDED} ({embedded})") if embedded else spec


def write_report(plan: Plan, results: list[dict], data, ablations: bool, opts: Options, n: int) -> dict:
    """Table 1 (the first run), Table 4 (every run, with --ablations), report.json; returns the report document."""
    untrained = {r["variant"]: r["untrained"] for r in results if r["untrained"]}
    notes = [
        *plan.notes,
        f"Conditions: the first {n} test samples of {data}; one product per sample as in training ({PRODUCT_RULE}): "
        f"product o and mask m are that product's; seed {opts.seed} + sample position; pose AP/AR with the "
        f"{opts.pose_estimator!r} pose estimator; OER per product with the {opts.oer_segmenter!r} box segmenter on m's box "
        f"grown {opts.oer_box_scale:g}x, averaged over products.",
    ]
    if plan.embedded:
        notes.append(f"{EMBEDDED.capitalize()} ({plan.embedded}): not the paper's whole-body estimator and SAM; not comparable.")
    tag = f" [{EMBEDDED}]" if plan.embedded else ""
    first = results[0]
    t1_notes = [*([untrained[first["variant"]]] if first["variant"] in untrained else []), *notes]
    label = ("VirtualModel" if first["variant"] == "VirtualModel" else f"VirtualModel ({first['variant']})") + tag
    specs = {"table1": (_spec("virtualmodel-table1", plan.embedded), [virtualmodel_row(label, first["scores"], first["gen"])], t1_notes)}
    if ablations:
        missing = [v for v in ABLATIONS if v not in plan.variants]
        t4_notes = [*untrained.values(), *notes]
        t4_notes += [
            f"{v}: not evaluated — it is a separately trained model (a run whose config sets {ABLATIONS[v]}); "
            "pass one with --ablation-run RUN. No branch is switched off at inference to stand in for it."
            for v in missing
        ]
        specs["table4"] = (_spec("virtualmodel-table4", plan.embedded), [table4_row(r, tag) for r in results], t4_notes)
    tables, shown = {}, []
    for key, (spec, rows, table_notes) in specs.items():
        tables[key] = write_table(spec, rows, plan.report, opts.compare, table_notes)
        shown.append(table_markdown(spec, rows, opts.compare, table_notes))
    doc = {
        "command": COMMAND,
        "checkpoint": str(next(iter(plan.variants.values()))),
        "data": str(data),
        "n": n,
        "n_test_read": plan.n_test_read,
        "estimators": {"pose": opts.pose_estimator, "oer_segmenter": opts.oer_segmenter, "embedded": plan.embedded},
        "options": {k: v for k, v in asdict(opts).items() if k not in ("progress",)},
        "variants": [{k: v for k, v in r.items() if k not in ("gen", "untrained")} | {"generation": asdict(r["gen"])} for r in results],
        "tables": {k: {f: str(p) for f, p in v.items()} for k, v in tables.items()},
        "notes": [*untrained.values(), *notes],
    }
    (plan.report / "report.json").write_text(json.dumps(finite(doc), indent=2, ensure_ascii=False) + "\n")
    doc["markdown"] = "\n".join(shown)
    return doc


def evaluate_virtualmodel(
    checkpoint: str | Path,
    data: str | Path,
    report: str | Path,
    ablations: bool = False,
    ablation_runs: list[str | Path] = (),
    options: Options | None = None,
    say: Callable[[str], None] = print,
) -> dict:
    """Check, read the conditions, generate and score each variant, write the tables; returns the report document."""
    opts = options or Options()
    plan = check_inputs(checkpoint, data, report, ablations, ablation_runs, opts)
    conditions, real = read_conditions(plan, opts.n)
    results = [
        score_variant(generate_variant(v, run, plan, conditions, real, opts, say), plan, conditions, real, opts, say)
        for v, run in plan.variants.items()
    ]
    return write_report(plan, results, data, ablations, opts, len(conditions))


def on_device(pipe, device: str) -> None:
    """Move a loaded pipeline to ``device`` with the device policy's dtype (load_run places it by the policy's default device)."""
    from hoiforge.models.device import device_dtype

    dev, dtype = device_dtype(device, None)
    for module in (pipe.unet, pipe.vae, pipe.text.model, pipe.dino, pipe.branches):
        if module is not None:
            module.to(dev, dtype)  # the pipeline moves its text encodings to the UNet's device at each call


def _config_file(run: Path) -> Path:
    """config.yaml of a run folder, or of the run a checkpoint folder belongs to."""
    return run.parent.parent / "config.yaml" if run.parent.name == "checkpoints" else run / "config.yaml"


def seed_rule(seed: int) -> str:
    return f"{seed} + sample position"


def table4_row(result: dict, tag: str = "") -> ResultRow:
    row = virtualmodel_row(result["variant"] + tag, result["scores"], result["gen"])
    row.metrics = {k: row.metrics.get(k) for k in ("ap", "ar", "oer_pct")}
    return row
