"""Performance plumbing (#19): decode once and reduced, stage chains, plan segments, --profile.

No timings are asserted here (bench/ measures them); these tests pin what the speed-ups must not
change: the same annotations, boxes in full-resolution pixels, one decode per chain.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hoiforge.datasets import images as images_mod
from hoiforge.datasets.images import decode_rgb
from hoiforge.models.mediapipe_person import MediapipePersonDetector
from hoiforge.pipeline.adapter import ChainAdapter, batch_to_samples, chain_class, run_stage, samples_to_batch
from hoiforge.pipeline.cluster import group_stages, plan_segments
from hoiforge.pipeline.recipe import load_recipe, parse_recipe
from hoiforge.pipeline.runner import instantiate
from hoiforge.stages import sample as sample_mod  # Sample decodes its pixels there
from hoiforge.stages.testing import decoded, sample_from_file

DATA = Path(__file__).parent / "data"


def big_jpeg(tmp_path: Path, name: str = "astronaut.png", scale: int = 4) -> Path:
    """A large JPEG of a fixture photo (2048 px for the astronaut): where draft decoding pays."""
    img = Image.open(DATA / name).convert("RGB")
    path = tmp_path / f"{Path(name).stem}-x{scale}.jpg"
    img.resize((img.width * scale, img.height * scale), Image.LANCZOS).save(path, quality=92)
    return path


# ------------------------------------------------------------------------------ reduced decode


def test_reduced_decode_of_a_jpeg_is_smaller_but_big_enough(tmp_path):
    data = big_jpeg(tmp_path).read_bytes()
    full = decode_rgb(data)
    assert full.shape == (2048, 2048, 3)
    for size in (640, 384, 96, 2048, 5000):
        small = decode_rgb(data, size)
        assert max(small.shape[:2]) >= min(size, 2048)  # never below what the caller asked for
        assert small.shape[0] <= full.shape[0]
    assert decode_rgb(data, 640).shape == (1024, 1024, 3)  # DCT scaling 1/2: 1/4 would be 512 < 640
    assert decode_rgb(data, 256).shape == (256, 256, 3)  # 1/8
    # The reduced decode is the image, smaller: its means match a resize of the full decode.
    small = decode_rgb(data, 256).astype(np.float32)
    resized = np.asarray(Image.fromarray(full).resize((256, 256), Image.BOX)).astype(np.float32)
    assert np.abs(small - resized).mean() < 4.0


def test_png_and_small_images_decode_in_full():
    png = (DATA / "astronaut.png").read_bytes()
    assert decode_rgb(png, 96).shape == decode_rgb(png).shape  # no draft for PNG
    jpg = (DATA / "scenetext01.jpg").read_bytes()
    assert decode_rgb(jpg, 100_000).shape == decode_rgb(jpg).shape


def test_sample_rgb_caches_and_never_decodes_full_pixels_twice(tmp_path, monkeypatch):
    s = decoded(big_jpeg(tmp_path))
    # The decode stage kept the bytes as they came, so it handed its pixels on: no decode at all.
    calls = []
    monkeypatch.setattr(sample_mod, "decode_rgb", lambda *a, **k: calls.append(a[1:] or k) or decode_rgb(*a, **k))
    assert s.rgb().shape == (2048, 2048, 3) and s.rgb(256) is s.rgb()
    assert calls == []
    assert np.array_equal(s.rgb(), decode_rgb(s.image))

    fresh = sample_from_file(big_jpeg(tmp_path))
    fresh.ann["image"] = {"width": 2048, "height": 2048}
    small = fresh.rgb(256)
    assert small.shape == (256, 256, 3) and fresh.rgb(256) is small and len(calls) == 1  # reduced, once
    assert fresh.to_full(small) == (8.0, 8.0)
    assert fresh.rgb().shape == (2048, 2048, 3) and len(calls) == 2  # full when asked
    assert fresh.rgb(256) is fresh.rgb()  # and from then on the full pixels serve every size
    fresh.set_image(b"other")
    assert fresh._rgb is None and fresh._reduced == {}


def test_decode_stage_hands_on_pixels_only_for_unchanged_bytes(tmp_path):
    kept = decoded(DATA / "astronaut.png")
    assert kept.ann["image"]["reencoded"] is None and kept._rgb is not None
    assert np.array_equal(kept._rgb, decode_rgb(kept.image))
    # An RGBA PNG is composited and re-encoded: later stages must decode the stored bytes.
    buf = io.BytesIO()
    Image.open(DATA / "astronaut.png").convert("RGBA").save(buf, "PNG")
    path = tmp_path / "rgba.png"
    path.write_bytes(buf.getvalue())
    changed = decoded(path)
    assert changed.ann["image"]["reencoded"] and changed._rgb is None


def test_person_boxes_from_a_reduced_decode_are_full_resolution(tmp_path):
    recipe = load_recipe("demo")
    person = next(s for s in instantiate(recipe) if s.name == "person")
    assert MediapipePersonDetector.input_size < 1024  # a 2048 px JPEG is decoded at 1/2
    path = big_jpeg(tmp_path)
    full = decoded(path)  # full pixels cached by decode: the detector sees 2048 px
    reduced = decoded(path)
    reduced.set_image(reduced.image)  # forget the pixels: the detector gets a 1024 px draft decode
    full, reduced = run_stage(person, [full])[0], run_stage(person, [reduced])[0]
    assert full.live and reduced.live
    a, b = full.ann["persons"][0]["box"], reduced.ann["persons"][0]["box"]
    assert max(b) > 1100  # full-resolution pixels, not the 1024 px decode's
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix
    assert ix / union > 0.9
    person.teardown()


def test_template_caption_is_the_same_from_a_reduced_decode(tmp_path):
    stages = {s.name: s for s in instantiate(load_recipe("demo"))}
    caption = stages["caption"]
    for name in ("astronaut.png", "basketball1.png"):
        path = big_jpeg(tmp_path, name)
        full = decoded(path)
        full.ann["persons"] = [{"box": [400.0, 300.0, 1600.0, 2000.0], "score": 0.9}]
        reduced = decoded(path)
        reduced.ann = json.loads(json.dumps(full.ann))
        reduced.set_image(reduced.image)
        full, reduced = run_stage(caption, [full])[0], run_stage(caption, [reduced])[0]
        assert reduced.ann["caption"]["text"] == full.ann["caption"]["text"]


# ------------------------------------------------------------------------------ stage chains


def test_chain_decodes_once_and_equals_stage_by_stage(photo_dir, monkeypatch):
    recipe = load_recipe("demo")
    paths = sorted(p for p in photo_dir.rglob("*") if p.suffix == ".png")  # PNG: no reduced decodes anywhere
    calls = []
    real = images_mod.decode_rgb
    monkeypatch.setattr(sample_mod, "decode_rgb", lambda *a, **k: calls.append(1) or real(*a, **k))

    one_by_one = [sample_from_file(p, i) for i, p in enumerate(paths)]
    stages = instantiate(recipe)
    for stage in stages:
        one_by_one = run_stage(stage, one_by_one)
    per_stage_decodes = len(calls)

    calls.clear()
    chain = ChainAdapter(instantiate(recipe))
    chained = batch_to_samples(chain(samples_to_batch([sample_from_file(p, i) for i, p in enumerate(paths)])))
    # Every decode of the chain happened in the decode stage, which hands its pixels on.
    assert calls == [] and per_stage_decodes >= 3
    for a, b in zip(one_by_one, chained, strict=True):
        assert (a.status, a.reason_code) == (b.status, b.reason_code)
        assert a.ann == b.ann
        assert a.members == b.members
        assert set(a.metrics) == set(b.metrics)
    for stage in stages + chain.stages:
        stage.teardown()


def test_chain_class_names_the_operator():
    cls = chain_class("decode+person")
    assert cls.__name__ == "decode+person" and issubclass(cls, ChainAdapter)


def test_chain_records_waits_and_setup_when_profiling():
    recipe = parse_recipe({"name": "t", "stages": [{"stage": "decode"}, {"stage": "resolution", "min_short_side": 8}]})
    first = ChainAdapter(instantiate(recipe)[:1], profile=True, last=False)
    second = ChainAdapter(instantiate(recipe)[1:], profile=True, last=True)
    batch = samples_to_batch([sample_from_file(DATA / "coffee.png"), sample_from_file(DATA / "astronaut.png", 1)])
    out = batch_to_samples(second(first(batch)))
    assert all("wait.resolution" in s.metrics and "_left" not in s.metrics for s in out)
    assert {"setup.decode", "setup.resolution"} <= set(out[0].metrics)  # once per worker, on its first sample
    assert not {"setup.decode", "setup.resolution"} & set(out[1].metrics)
    again = batch_to_samples(second(first(batch)))  # the same workers again: set up already, nothing to report
    assert not any(k.startswith("setup.") for s in again for k in s.metrics)


# ------------------------------------------------------------------------------ plan


def test_demo_plan_is_one_actor_pool_using_both_cpus():
    task_cpus, segments = plan_segments(instantiate(load_recipe("demo")), cpus=2, gpus=0)
    assert len(segments) == 1 and segments[0].name == "decode+resolution+person+pose+edges+caption"
    run = segments[0].run
    assert run.concurrency == 2 and run.num_cpus == 0.75 and run.batch_size == 8
    assert 2 * run.num_cpus + 2 * task_cpus <= 2  # read/write tasks still find CPU (ray#44687)
    _, segments = plan_segments(instantiate(load_recipe("demo")), cpus=16, gpus=0)
    assert segments[0].run.concurrency == 16 and segments[0].run.num_cpus <= 1


def test_gpu_and_pinned_stages_get_their_own_operator():
    recipe = parse_recipe(
        {
            "name": "t",
            "stages": [
                {"stage": "decode"},
                {"stage": "resolution"},
                {"stage": "person", "resources": {"num_gpus": 1}},
                {"stage": "pose", "resources": {"concurrency": 3}},
                {"stage": "edges", "region": "image"},
                {"stage": "caption"},
            ],
        }
    )
    stages = instantiate(recipe)
    assert [[s.name for s in g] for g in group_stages(stages)] == [["decode", "resolution"], ["person"], ["pose"], ["edges", "caption"]]
    _, segments = plan_segments(stages, cpus=4, gpus=1)
    kinds = [(s.execution, s.run.concurrency, s.run.num_gpus) for s in segments]
    assert kinds == [("tasks", None, 0), ("actors", 1, 1), ("actors", 3, 0), ("tasks", None, 0)]


# ------------------------------------------------------------------------------ --profile


@pytest.mark.slow
def test_build_profile_into_stats_and_report(ray_local, photo_dir, tmp_path):
    from typer.testing import CliRunner

    from hoiforge.cli import app
    from hoiforge.report.html import build_report

    shutil.rmtree(photo_dir / "nested")  # two photos: a tiny build
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["build", str(photo_dir), "--out", str(out), "--profile", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "profile" in result.output and "set-up" in result.output
    profile = json.loads((out / "stats.json").read_text())["profile"]
    assert profile["segments"][0]["stages"][:2] == ["decode", "resolution"]
    ops = {o["operator"]: o for o in profile["operators"]}
    chain = ops["MapBatches(decode+resolution+person+pose+edges+caption)"]
    assert (
        0 <= chain["start_delay_s"] < chain["end_s"]
        and chain["rows"] == 2
        and chain["busy_s"] > 0
        and chain["actors"] == 2
        and chain["actor_idle_s"] >= 0
    )
    assert "Write" in ops
    assert set(profile["stage_seconds_per_image"]) == {"decode", "resolution", "person", "pose", "edges", "caption"}
    assert profile["setup_s"]["person"]["workers"] >= 1 and profile["setup_s"]["person"]["total"] > 0
    page = build_report(out)
    assert page["figures"]["profile"]["segments"] == profile["segments"]
    html = page["html"].read_text()
    assert 'id="profile"' in html and "actor idle" in html


def test_profile_figures_from_stats_and_manifest_without_ray():
    from types import SimpleNamespace as NS

    import pyarrow as pa

    from hoiforge.pipeline.profile import manifest_profile, operator_stats

    def op(name, start, end, walls, cpu):
        stat = NS(sum=sum(walls), count=len(walls), mean=sum(walls) / len(walls))
        return NS(
            operator_name=name,
            is_sub_operator=False,
            earliest_start_time=start,
            latest_end_time=end,
            wall_time=stat,
            cpu_time=NS(sum=cpu),
            output_num_rows=NS(sum=8),
        )

    read = NS(operators_stats=[op("FromArrow", 100.0, 100.5, [0.1], 0.1)], parents=[], extra_metrics={})
    chain = NS(
        operators_stats=[op("MapBatches(decode+person)", 101.0, 111.0, [4.0, 5.0, 6.0, 3.0], 12.0)],
        parents=[read],
        extra_metrics={"task_scheduling_time_s": 1.5},
    )
    rows = operator_stats(chain, {"(decode+person)": 2}, started=100.0)
    assert [r["operator"] for r in rows] == ["FromArrow", "MapBatches(decode+person)"]
    pool = rows[1]
    assert pool["start_delay_s"] == 1.0 and pool["span_s"] == 10.0 and pool["busy_s"] == 18.0 and pool["scheduling_s"] == 1.5
    assert pool["actors"] == 2 and pool["actor_idle_s"] == 2.0 and pool["actor_utilisation"] == 0.9
    assert "actors" not in rows[0]

    manifest = pa.table(
        {
            "m.time.person": [0.1, 0.3, None],
            "m.wait.pose": [0.0, 2.0, 1.0],
            "m.setup.person": [1.5, None, 0.5],
        }
    )
    prof = manifest_profile(manifest)
    assert prof["stage_seconds_per_image"]["person"]["count"] == 2 and prof["stage_seconds_per_image"]["person"]["mean"] == 0.2
    assert prof["queue_wait_s"]["pose"]["max"] == 2.0
    assert prof["setup_s"]["person"] == {"workers": 2, "mean": 1.0, "p50": 1.0, "p95": 1.45, "max": 1.5, "total": 2.0}
