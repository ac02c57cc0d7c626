"""``hoiforge eval virtualmodel`` and ``hoiforge eval shoemodel`` through the CLI: tiny random runs on tiny builds with a
test split, end to end (generate, score, tables), and the one-line errors for bad runs and bad builds."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hoiforge.cli import app
from tests.eval_helpers import build_tiny_clip
from tests.vm_shards import write_out as write_vm_out

FAST = ["--fid-method", "eigh", "--no-progress"]
EMBEDDED = ["--pose-estimator", "mediapipe", "--oer-segmenter", "embedded"]  # no paper-grade weights on a test machine


pytestmark = pytest.mark.usefixtures("torch_one_thread")  # tiny networks on a shared 2-core machine


def cli(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def fails(*args, match: str) -> str:
    code, out, err = cli(*args)
    assert code == 2, (out, err)
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert match in " ".join(err.split()), err
    return err


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="module")
def vm_out(tmp_path_factory) -> Path:
    """A HoIHuman-like build: 4 train samples and a test split of 3 (persons with 133 keypoints, products as RLE, captions)."""
    out = tmp_path_factory.mktemp("vm") / "out"
    write_vm_out(out, 4, per_shard=2, rle=True)
    write_vm_out(out, 3, per_shard=3, rle=True, split="test", seed=1)
    return out


def fake_vm_run(root: Path) -> Path:
    """Enough of a VirtualModel run for the checks that come before any model loads."""
    from hoiforge.training.virtualmodel.config import load_config

    root.mkdir(parents=True)
    (root / "config.yaml").write_text(load_config("tiny").to_yaml())
    return root


def fake_shoe_run(root: Path) -> Path:
    """A ShoeModel run folder whose four modules look trained (records and artifact paths present)."""
    from hoiforge.training.shoemodel.system import ARTIFACTS

    for module, artifact in ARTIFACTS.items():
        (root / module / artifact).parent.mkdir(parents=True, exist_ok=True)
        (root / module / artifact).touch()
        (root / module / "shoemodel.json").write_text(json.dumps({"module": module}))
    return root


def with_members(out: Path, dest: Path, extra: dict[str, bytes]) -> Path:
    """A copy of ``out``'s test split with ``extra`` members added to every sample."""
    from hoiforge.eval.scoring import iter_split_samples

    (dest / "shards").mkdir(parents=True)
    with tarfile.open(dest / "shards" / "test-000000.tar", "w") as tar:
        for key, members in iter_split_samples(out, "test"):
            for ext, data in {**members, **extra}.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (dest / "index.test.json").write_text((out / "index.test.json").read_text())
    return dest


# -- errors: one line, before any model loads --------------------------------------------------
def test_bad_runs_and_builds_are_one_line(vm_out, tmp_path):
    vm_run, shoe_run = fake_vm_run(tmp_path / "vm-run"), fake_shoe_run(tmp_path / "shoe-run")
    report = tmp_path / "report"

    def vm(run, data, *extra):
        return ("eval", "virtualmodel", "--checkpoint", run, "--data", data, "--out", report, *extra)

    def shoe(run, data, *extra):
        return ("eval", "shoemodel", "--checkpoint", run, "--data", data, "--out", report, *extra)

    # RUN: missing, not a run, the other model's run.
    fails(*vm(tmp_path / "nope", vm_out), match="does not exist; pass the --out folder of `hoiforge train virtualmodel")
    fails(*vm(vm_out, vm_out), match="is not a trained run (no config.yaml, no wd/ lps1/ lps2/ sw/)")
    fails(*vm(shoe_run, vm_out), match="is a ShoeModel run, not a VirtualModel one; evaluate it with `hoiforge eval shoemodel`")
    fails(*shoe(vm_run, vm_out), match="is a VirtualModel run, not a ShoeModel one; evaluate it with `hoiforge eval virtualmodel`")
    partial = fake_shoe_run(tmp_path / "partial")
    (partial / "sw" / "shoemodel.json").unlink()
    fails(*shoe(partial, vm_out), match="has no trained sw module: train with hoiforge train shoemodel --module sw")

    # OUT: not there, no test split, too few test samples, --n under 2.
    fails(*vm(vm_run, tmp_path / "no-out"), match="does not exist; pass the --out folder of `hoiforge build`")
    train_only = tmp_path / "train-only"
    write_vm_out(train_only, 2)
    fails(
        *vm(vm_run, train_only),
        match="has no test split (no index.test.json); rebuild it with a test split: `hoiforge build ... --test-size F`",
    )
    one = tmp_path / "one"
    write_vm_out(one, 1, split="test")
    fails(*vm(vm_run, one), match="the test split holds 1 sample(s); FID and KID need at least 2")
    fails(*vm(vm_run, vm_out, "--n", "1"), match="--n 1: FID and KID need at least 2 test samples")
    fails(*shoe(shoe_run, vm_out, "--n", "0"), match="--n 0: FID and KID need at least 2 test samples")

    # OUT without the members a command needs: named, with the stage that writes them.
    no_products = tmp_path / "no-products"
    write_vm_out(no_products, 3, split="test", drop=("mask.png",))  # and no products[].rle
    fails(
        *vm(vm_run, no_products), match="no test sample holds product masks (products[].rle or mask.png) (the `products` stage writes it)"
    )
    fails(
        *shoe(shoe_run, vm_out),
        match="no test sample holds shoe.png (the shoe-only image) (the `shoes` stage writes it); "
        "leg.json (leg and foot keypoints) (the `pose` stage with leg_json: true writes it); "
        "wear.png (wearable-area labels) (the `wear_labels` stage (or `shoes` with bootstrap_wear) writes it)",
    )
    no_wear = with_members(vm_out, tmp_path / "no-wear", {"shoe.png": b"-", "leg.json": b"{}", "txt": b"x"})
    fails(*shoe(shoe_run, no_wear), match="no test sample holds wear.png (wearable-area labels) (the `wear_labels` stage")
    fails(*vm(vm_run, vm_out, "--ablation-run", vm_run), match="--ablation-run needs --ablations")
    fails(*vm(vm_run, vm_out, "--ablations", "--ablation-run", vm_run), match="both train 'VirtualModel'; give one run per variant")
    fails(*vm(vm_run, vm_out, "--size", "60"), match="--size 60: give a short side that is a multiple of 8")


def test_missing_clip_weights_fail_before_generation(vm_out, tmp_path, monkeypatch):
    monkeypatch.setenv("HOIFORGE_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
    report = tmp_path / "report"
    fails("eval", "virtualmodel", "--checkpoint", fake_vm_run(tmp_path / "run"), "--data", vm_out, "--out", report,
          match="hoiforge models fetch clip-vit-base-patch16")  # fmt: skip
    assert not (report / "generated").exists()


def test_paper_grade_estimators_are_the_default_and_missing_weights_fail_before_work(vm_out, clip, tmp_path, monkeypatch):
    monkeypatch.setenv("HOIFORGE_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-hf"))
    report = tmp_path / "report"
    err = fails("eval", "virtualmodel", "--checkpoint", fake_vm_run(tmp_path / "run"), "--data", vm_out, "--out", report,
                "--clip-model", clip, match="the paper-grade estimators (--pose-estimator vitpose, --oer-segmenter sam) need weights")  # fmt: skip
    joined = " ".join(err.split())
    assert "vitpose-h-wholebody, sam-vit-h" in joined and "hoiforge models fetch" in joined
    assert "--pose-estimator mediapipe --oer-segmenter embedded" in joined
    assert not (report / "generated").exists()


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vm_runs(vm_out, tmp_path_factory) -> dict[str, Path]:
    """The tiny config trained 1 step per stage, and a w/o CB ablation of it (content_branch: false)."""
    from hoiforge.training.virtualmodel.config import load_config

    root = tmp_path_factory.mktemp("vm-runs")
    cfg = load_config("tiny")
    ablation = root / "wo-cb.yaml"
    ablation.write_text(cfg.model_copy(update={"branches": cfg.branches.model_copy(update={"content_branch": False})}).to_yaml())
    runs = {"full": root / "full", "wo-cb": root / "wo-cb"}
    for name, config in (("full", "tiny"), ("wo-cb", ablation)):
        code, out, err = cli("train", "virtualmodel", "--data", vm_out, "--config", config, "--out", runs[name], "--max-steps", "1")
        assert code == 0, out + err
    return runs


@pytest.mark.slow
def test_eval_virtualmodel_end_to_end(vm_runs, vm_out, clip, tmp_path):
    from hoiforge.eval.scoring import iter_split_samples

    report = tmp_path / "report"
    args = ["eval", "virtualmodel", "--checkpoint", vm_runs["full"], "--data", vm_out, "--out", report, "--ablations",
            "--ablation-run", vm_runs["wo-cb"], "--steps", "2", "--seed", "5", "--clip-model", clip,
            "--cache-dir", tmp_path / "cache", *EMBEDDED, *FAST]  # fmt: skip
    fails(*args, "--compare", match="--compare needs the paper-grade estimators: --pose-estimator mediapipe and --oer-segmenter")
    assert not (report / "generated").exists()
    code, out, err = cli(*args)
    assert code == 0, out + err
    assert "UNTRAINED" in err and "VirtualModel: 3 image(s) generated" in err and "w/o CB: 3 image(s) generated" in err
    tag = "[embedded estimators, not the paper's]"
    assert f"| VirtualModel {tag} | OHG |" in out and f"| w/o CB {tag} |" in out and "(paper)" not in out
    assert "## VirtualModel Table 1 — HoIHuman-5k test set — embedded estimators, not the paper's" in out

    real = sorted(p.stem for p in (report / "real").iterdir())
    assert len(real) == 3
    for variant in ("virtualmodel", "wo-cb"):
        folder = report / "generated" / variant
        assert sorted(p.stem for p in folder.glob("*.png")) == real
        for p in folder.glob("*.png"):
            assert min(Image.open(p).size) == 64  # the tiny run's resolution, the photo's aspect
        gen = json.loads((folder / "generation.json").read_text())
        assert (gen["steps"], gen["cfg"], gen["size"], gen["seed"]) == (2, 7.0, 64, "5 + sample position")
        assert gen["ids"] == [sid for sid, _ in iter_split_samples(vm_out, "test")]  # every test sample, in shard order
        assert sorted(gen["ids"]) == real and gen["product"].startswith("products[0]")

    # Content Backfill: inside m every generated pixel is the product's (the photo at the output size).
    from hoiforge.eval.virtualmodel_eval import condition_at, read_condition

    sid, members = next(iter_split_samples(vm_out, "test"))
    photo = np.asarray(Image.open(io.BytesIO(members["jpg"])).convert("RGB"))
    product, mask, _ = condition_at(read_condition(sid, members), photo, 64)
    generated = np.asarray(Image.open(report / "generated" / "virtualmodel" / f"{sid}.png").convert("RGB"))
    assert generated.shape == product.shape and mask.any() and np.array_equal(generated[mask], product[mask])

    t1 = json.loads((report / "virtualmodel-table1.json").read_text())
    (row,) = t1["rows"]
    assert row["method"] == f"VirtualModel {tag}" and row["task"] == "OHG"
    assert set(row["metrics"]) == {"fid", "kid_x1k", "clip", "ap", "ar", "oer_pct"}
    assert row["metrics"]["fid"] > 0 and 0 <= row["metrics"]["clip"] <= 100 and 0 <= row["metrics"]["ap"] <= 100
    assert row["settings"] == {"sampler": "DDIM", "steps": 2, "cfg": 7.0, "resolution": "short side 64", "seed": 5, "n": 3}
    assert row["details"]["n_real"] == row["details"]["n_fake"] == 3 and "wholebody" in row["details"]["pose"]
    assert row["details"]["oer_n"] == 3  # one product per test sample (products[0]), each scored on its own
    assert any("untrained" in n for n in t1["notes"]) and any("Embedded estimators" in n for n in t1["notes"])
    assert any("one product per sample as in training (products[0]" in n for n in t1["notes"])
    csv_head = (report / "virtualmodel-table1.csv").read_text().splitlines()[0]
    assert "fid" in csv_head and "steps" in csv_head and "seed" in csv_head

    t4 = json.loads((report / "virtualmodel-table4.json").read_text())
    assert [r["variant"] for r in t4["rows"]] == [f"VirtualModel {tag}", f"w/o CB {tag}"]
    assert set(t4["rows"][1]["metrics"]) == {"ap", "ar", "oer_pct"}
    assert any(n.startswith("w/o IB: not evaluated") for n in t4["notes"]) and not any(n.startswith("w/o CB: not") for n in t4["notes"])
    doc = json.loads((report / "report.json").read_text())
    assert [v["variant"] for v in doc["variants"]] == ["VirtualModel", "w/o CB"]
    assert all(v["timing"]["generate_s"] >= 0 and v["timing"]["score_s"] > 0 for v in doc["variants"])

    # The same command again reuses the images generated with the same settings.
    code, out, err = cli(*[a for a in args if a not in ("--ablation-run", vm_runs["wo-cb"])])
    assert code == 0, out + err
    assert "VirtualModel: 0 image(s) generated" in err


@pytest.mark.slow
def test_eval_virtualmodel_without_ablations_writes_table1_only(vm_runs, vm_out, clip, tmp_path):
    report = tmp_path / "report"
    code, out, err = cli("eval", "virtualmodel", "--checkpoint", vm_runs["full"], "--data", vm_out, "--out", report, "--n", "2",
                         "--steps", "1", "--clip-model", clip, "--cache-dir", tmp_path / "cache", *EMBEDDED, *FAST)  # fmt: skip
    assert code == 0, out + err
    assert (report / "virtualmodel-table1.md").is_file() and not (report / "virtualmodel-table4.md").exists()
    assert len(list((report / "generated" / "virtualmodel").glob("*.png"))) == 2
    assert json.loads((report / "virtualmodel-table1.json").read_text())["rows"][0]["settings"]["n"] == 2


@pytest.fixture(scope="module")
def shoe(tmp_path_factory) -> tuple[Path, Path]:
    """A shoe-leg build (the fixture photo through the shoeleg stages; a captioned test split of 2) and a tiny run on it."""
    pytest.importorskip("mediapipe")
    from tests.shoemodel_fixtures import shoeleg_samples
    from tests.shoemodel_fixtures import write_out as write_shoe_out

    tmp = tmp_path_factory.mktemp("shoeleg")
    samples = shoeleg_samples(tmp)
    out = write_shoe_out(tmp / "out", samples)
    write_shoe_out(out, samples, split="test", copies=2, caption="a man in sneakers on a basketball court")
    run = tmp / "run"
    for module in ("wd", "lps1", "lps2", "sw"):
        code, o, e = cli("train", "shoemodel", "--module", module, "--data", out, "--config", "tiny", "--out", run,
                         "--max-steps", "1", "--no-progress")  # fmt: skip
        assert code == 0, o + e
    return out, run


@pytest.mark.slow
def test_eval_shoemodel_loads_a_base_outside_the_run_only_with_allow_outside_run(shoe, clip, tmp_path):
    """The refusal of an outside base names --allow-outside-run; eval has it, as generate does (docs/security.md)."""
    import shutil

    out, shoe_run = shoe
    run, elsewhere = tmp_path / "run", tmp_path / "my-base"
    shutil.copytree(shoe_run, run)
    shutil.move(run / "sw" / "base", elsewhere)
    record = run / "sw" / "shoemodel.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "base_model": {"outside": str(elsewhere)}}))
    args = ["eval", "shoemodel", "--checkpoint", run, "--data", out, "--clip-model", clip, "--cache-dir", tmp_path / "cache",
            "--steps", "2", "--allow-bootstrap", *FAST]  # fmt: skip
    fails(*args, "--out", tmp_path / "refused", match="--allow-outside-run")
    code, stdout, err = cli(*args, "--out", tmp_path / "allowed", "--allow-outside-run")
    assert code == 0, stdout + err
    assert len(list((tmp_path / "allowed" / "generated" / "shoemodel").glob("*.png"))) == 2


@pytest.mark.slow
def test_eval_shoemodel_worn_shoe_mode_is_labelled_and_not_compared(shoe, clip, tmp_path):
    out, run = shoe
    report = tmp_path / "report"
    args = ["eval", "shoemodel", "--checkpoint", run, "--data", out, "--out", report, "--clip-model", clip,
            "--cache-dir", tmp_path / "cache", "--steps", "2", *FAST]  # fmt: skip
    fails(*args, "--compare", match="--compare needs --shoes DIR: without it the shoes are cut from the very test photos")
    assert not (report / "generated").exists()
    code, stdout, err = cli(*args)
    assert code == 0, stdout + err
    assert "tiny random modules" in err and "ShoeModel: 2 image(s) generated" in err
    assert "## ShoeModel Table 3 — worn-shoe input, not the paper's protocol" in stdout
    assert "| ShoeModel (worn-shoe input, not the paper's protocol) |" in stdout and "| WD (3 classes) |" in stdout

    generated = sorted((report / "generated" / "shoemodel").glob("*.png"))
    assert len(generated) == 2
    photo = np.asarray(Image.open(next((report / "real").iterdir())).convert("RGB"))
    for p in generated:
        assert np.asarray(Image.open(p)).shape == photo.shape  # at the photo's size

    t3 = json.loads((report / "shoemodel-table3.json").read_text())
    (row,) = t3["rows"]
    assert t3["title"].endswith("worn-shoe input, not the paper's protocol")
    assert row["method"] == "ShoeModel (worn-shoe input, not the paper's protocol)" and set(row["metrics"]) == {"fid", "kid_x1k", "clip"}
    assert row["metrics"]["fid"] > 0 and row["settings"]["steps"] == 2 and row["settings"]["n"] == 2
    assert "ShoeModel (worn-shoe input" in (report / "shoemodel-table3.csv").read_text()  # the CSV row says it too
    t5 = json.loads((report / "shoemodel-table5.json").read_text())
    (wd_row,) = t5["rows"]
    assert wd_row["model"] == "WD (3 classes)" and wd_row["settings"]["n"] == 2
    m = wd_row["metrics"]
    assert all(0 <= m[k] <= 100 for k in ("aacc", "macc", "bg_acc"))
    assert any("label sources: annotation 2" in n for n in t5["notes"])
    doc = json.loads((report / "report.json").read_text())
    assert doc["protocol"] == "worn"
    cm = np.asarray(doc["wd"]["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == doc["wd"]["pixels"] and np.trace(cm) / cm.sum() * 100 == pytest.approx(m["aacc"])


@pytest.mark.slow
def test_eval_shoemodel_with_shoes_writes_table3_from_shoe_only_images(shoe, clip, tmp_path):
    out, run = shoe
    shots = tmp_path / "shots"
    code, stdout, err = cli("eval", "product-shots", "--data", out, "--out", shots)
    assert code == 0, stdout + err
    files = sorted(shots.glob("*.png"))
    assert len(files) == 2 and "2 product shot(s)" in stdout
    prompts = [json.loads(line) for line in (shots / "prompts.jsonl").read_text().splitlines()]
    assert [p["file"] for p in prompts] == [f.name for f in files]
    (shots / "prompts.jsonl").write_text("".join(json.dumps({"file": f.name, "caption": f"a runner in shoe {i}"}) + "\n"
                                                for i, f in enumerate(files)))  # fmt: skip

    report = tmp_path / "report"
    code, stdout, err = cli("eval", "shoemodel", "--checkpoint", run, "--data", out, "--shoes", shots, "--prompts",
                            shots / "prompts.jsonl", "--out", report, "--clip-model", clip, "--cache-dir", tmp_path / "cache",
                            "--steps", "2", "--compare", *FAST)  # fmt: skip
    assert code == 0, stdout + err
    assert "## ShoeModel Table 3 — 2k shoe test set" in stdout and "| ShoeModel |" in stdout
    assert "| ShoeModel (paper) | 22.54 |" in stdout and "worn-shoe" not in stdout

    gen = json.loads((report / "generated" / "shoemodel" / "generation.json").read_text())
    assert gen["protocol"] == "shoes" and gen["ids"] == [f.stem for f in files]
    assert gen["prompts"] == ["a runner in shoe 0", "a runner in shoe 1"]
    for f in files:
        shot = np.asarray(Image.open(f))
        made = np.asarray(Image.open(report / "generated" / "shoemodel" / f.name).convert("RGB"))
        assert made.shape[:2] == shot.shape[:2] and shot.shape[0] == shot.shape[1]  # at the product shot's (square) size
        shoe_px = shot[..., 3] >= 128
        assert shoe_px.any() and (shot[~shoe_px, :3] == 255).all()  # a shoe on white
        # Backfill keeps the visible shoe pixels: most shoe pixels of the product shot are in the output unchanged.
        assert (made[shoe_px] == shot[shoe_px, :3]).all(axis=1).mean() > 0.5
    t3 = json.loads((report / "shoemodel-table3.json").read_text())
    (row,) = t3["rows"]
    assert row["method"] == "ShoeModel" and row["settings"]["n"] == 2 and row["details"]["n_real"] == 2
    assert any("shoe-only images" in n for n in t3["notes"])
    assert json.loads((report / "report.json").read_text())["protocol"] == "shoes"

    # Prompts must name the images there; a folder of one image is too few for FID.
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"file": "nope.png", "caption": "x"}) + "\n")
    base = ("eval", "shoemodel", "--checkpoint", run, "--data", out, "--out", tmp_path / "r2", "--clip-model", clip)
    fails(*base, "--shoes", shots, "--prompts", bad, match="image(s) in")
    one = tmp_path / "one"
    one.mkdir()
    (one / files[0].name).write_bytes(files[0].read_bytes())
    fails(*base, "--shoes", one, match="FID and KID need at least 2 shoe images")
    fails(*base, "--prompts", bad, match="--prompts gives the prompts of the --shoes images")


def with_wear_source(out: Path, dest: Path, source: str) -> Path:
    """A copy of ``out``'s test split whose wear labels claim to come from ``source``."""
    from hoiforge.eval.scoring import iter_split_samples

    (dest / "shards").mkdir(parents=True)
    with tarfile.open(dest / "shards" / "test-000000.tar", "w") as tar:
        for key, members in iter_split_samples(out, "test"):
            ann = json.loads(members["json"])
            ann["wear"]["source"] = source
            for ext, data in {**members, "json": json.dumps(ann).encode()}.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (dest / "index.test.json").write_text((out / "index.test.json").read_text())
    return dest


@pytest.mark.slow
def test_eval_shoemodel_table5_refuses_bootstrap_labels(shoe, clip, tmp_path):
    out, run = shoe
    boot = with_wear_source(out, tmp_path / "boot", "bootstrap")
    report = tmp_path / "report"
    args = ["eval", "shoemodel", "--checkpoint", run, "--data", boot, "--out", report, "--clip-model", clip,
            "--cache-dir", tmp_path / "cache", "--steps", "1", *FAST]  # fmt: skip
    fails(*args, match="Table 5: 2 of 2 test samples carry bootstrap wear labels")
    err = fails(*args, match="`hoiforge wear check`")
    assert "--allow-bootstrap" in err and not (report / "generated").exists()
    code, stdout, err = cli(*args, "--allow-bootstrap")
    assert code == 0, stdout + err
    t5 = json.loads((report / "shoemodel-table5.json").read_text())
    assert "bootstrap wear labels" in t5["title"] and "not the paper's measure" in t5["title"]
    assert t5["rows"][0]["model"] == "WD (3 classes, bootstrap wear labels)"
    assert "## ShoeModel Table 5 — WD module against bootstrap wear labels" in stdout


def test_product_shot_puts_the_shoe_pair_on_white(tmp_path):
    from hoiforge.eval.product_shots import product_shot

    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[10:20, 5:25] = (200, 30, 30, 255)  # a 20 x 10 shoe pair
    rgba[10, 5, 3] = 100  # a faint edge pixel: not shoe
    shot = product_shot(rgba, margin=0.25)
    assert shot.shape == (30, 30, 4)  # the longer side 20 grown by 25 % on each side
    shoe_px = shot[..., 3] == 255
    assert shoe_px.sum() == 20 * 10 - 1 and (shot[shoe_px, :3] == (200, 30, 30)).all()
    assert (shot[~shoe_px] == (255, 255, 255, 0)).all()
    ys, xs = np.nonzero(shoe_px)
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == (10, 19, 5, 24)  # centred: (30 - 10) / 2, (30 - 20) / 2
    assert product_shot(np.zeros((8, 8, 4), np.uint8)) is None


def test_generation_batches_hold_conditions_of_one_output_size(tmp_path):
    from hoiforge.eval.virtualmodel_eval import Condition, batches

    def cond(sid: str, h: int, w: int) -> Condition:
        return Condition(sid, "jpg", "c", [], np.zeros((h, w), bool), ())

    conds = [cond("a", 64, 96), cond("b", 128, 192), cond("c", 64, 64), cond("d", 32, 48), cond("e", 64, 96)]
    (tmp_path / "e.png").touch()  # already generated: not again
    got = [[(i, c.id) for i, c in b] for b in batches(conds, tmp_path, 64, 2)]
    assert got == [[(0, "a"), (1, "b")], [(3, "d")], [(2, "c")]]  # 96x64 (three photos of aspect 3:2), 64x64


@pytest.mark.slow
def test_a_batch_starts_each_image_from_its_own_seed(vm_runs, vm_out):
    from hoiforge.eval.scoring import iter_split_samples
    from hoiforge.eval.virtualmodel_eval import condition_at, read_condition
    from hoiforge.training.virtualmodel.generate import load_run

    _, pipe = load_run(vm_runs["full"])
    sid, members = next(iter_split_samples(vm_out, "test"))
    photo = np.asarray(Image.open(io.BytesIO(members["jpg"])).convert("RGB"))
    product, mask, pose = condition_at(read_condition(sid, members), photo, 64)
    h, w = mask.shape
    single = [pipe(p, height=h, width=w, product=product, mask=mask, pose=pose, steps=2, seed=s) for p, s in (("a", 3), ("b", 9))]
    batch = pipe.batch(["a", "b"], height=h, width=w, products=[product] * 2, masks=[mask] * 2, poses=[pose] * 2, steps=2, seeds=[3, 9])
    for one, many in zip(single, batch, strict=True):
        assert np.abs(one.astype(int) - many.astype(int)).max() <= 2  # round-off of batched convolutions only
    assert np.abs(batch[0].astype(int) - batch[1].astype(int)).max() > 10  # other seed, other prompt: another image
