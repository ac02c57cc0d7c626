"""One writer per OUT; a received OUT cannot make inspect write or read outside; user text is
escaped; a full disk at finalize says what to do; inspect finds what the user typed."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import shutil
import socket
import tarfile
from itertools import count
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console
from typer.testing import CliRunner

from hoiforge.cli import app
from hoiforge.cli import build as cli
from hoiforge.datasets.layout import OutLayout
from hoiforge.errors import OutputError
from hoiforge.pipeline.inputs import list_inputs, refs_to_table
from hoiforge.pipeline.manifest import finalize
from hoiforge.pipeline.outlock import check_not_busy, exclusive
from hoiforge.pipeline.recipe import OutputSpec
from hoiforge.pipeline.runner import finalize_output
from hoiforge.pipeline.writer import write_part
from hoiforge.stages.testing import decoded
from tests.conftest import DATA

runner = CliRunner()


def finished_out(root: Path, names=("astronaut.png", "coffee.png", "scenetext01.jpg")) -> tuple[Path, pa.Table]:
    """A real finished OUT made without Ray: decoded samples committed by the writer, then finalize."""
    photos = root / "photos"
    photos.mkdir(parents=True)
    for n in names:
        shutil.copy(DATA / n, photos / n)
    layout = OutLayout(root / "out")
    layout.make()
    refs = list_inputs([str(photos / n) for n in names])
    listing = refs_to_table(refs).append_column("index", pa.array(range(len(refs)), pa.int64()))
    seq = count()
    write_part(layout, OutputSpec(), [decoded(photos / n, index=i) for i, n in enumerate(names)], lambda split: next(seq))
    finalize(layout, listing, {"recipe": "t", "last_run_seconds": 0, "last_run_processed": len(names)})
    return layout.root, listing


# -- one writer per OUT ------------------------------------------------------------------------


def _hold_lock(out: str, ready, release) -> None:
    with exclusive(out):
        ready.set()
        release.wait(30)


def test_a_second_writer_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(OutputError) as e, exclusive(out):
            pass
        message = str(e.value)
        assert f"{out} is being written by pid {holder.pid} on {socket.gethostname()} since 20" in message
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            check_not_busy(out, "validate")
        result = runner.invoke(app, ["validate", str(out)])
        assert result.exit_code == 2 and f"pid {holder.pid}" in result.output
    finally:
        release.set()
        holder.join(20)
    with exclusive(out):  # released with its process: no stale lock
        pass
    check_not_busy(out, "validate")


def test_stats_takes_the_lock_while_it_writes_the_report(tmp_path):
    out, _ = finished_out(tmp_path)
    with exclusive(out):
        result = runner.invoke(app, ["stats", str(out)])
    assert result.exit_code == 2 and "is being written by pid" in result.output
    assert not (out / "report" / "index.html").exists()


# -- inspect on a received OUT ----------------------------------------------------------------


def test_inspect_finds_relative_paths_and_any_unique_id_prefix(tmp_path, monkeypatch):
    out, _ = finished_out(tmp_path)
    rows = pq.read_table(out / "manifest.parquet").to_pylist()
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["inspect", str(out), "photos/coffee.png"])  # as typed at build time
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["manifest"]["key"] == str(tmp_path / "photos" / "coffee.png")
    ids = sorted(r["id"] for r in rows)
    for row in rows:  # the shortest prefix that is unique, however short
        n = next(k for k in range(1, 21) if sum(i.startswith(row["id"][:k]) for i in ids) == 1)
        result = runner.invoke(app, ["inspect", str(out), row["id"][:n]])
        assert result.exit_code == 0 and json.loads(result.output)["manifest"]["id"] == row["id"]
    # A prefix several ids share is refused, naming them.
    table = pq.read_table(out / "manifest.parquet")
    shared = [dict(r, id="abcde" + r["id"][5:]) for r in table.to_pylist()]
    pq.write_table(pa.Table.from_pylist(shared, schema=table.schema), out / "manifest.parquet")
    result = runner.invoke(app, ["inspect", str(out), "abcd"])
    assert result.exit_code == 2 and "'abcd' is the start of 3 sample ids (abcde" in result.output


def _tamper_shard(out: Path, add: dict[str, bytes]) -> None:
    """Add members of one sample to the OUT's shard, as someone crafting an OUT would."""
    index = json.loads((out / "index.json").read_text())
    path = out / index["shardlist"][0]["url"]
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    key = next(iter(add)).partition(".")[0]
    last = max(i for i, (m, _) in enumerate(members) if m.name.startswith(key + "."))
    extra = []
    for name, data in add.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        extra.append((info, data))
    with tarfile.open(path, "w") as tar:  # right after the sample's own members: they stay contiguous
        for m, data in members[: last + 1] + extra + members[last + 1 :]:
            tar.addfile(m, io.BytesIO(data))


def test_extract_writes_only_contract_names_inside_the_folder(tmp_path):
    out, _ = finished_out(tmp_path)
    row = pq.read_table(out / "manifest.parquet").to_pylist()[0]
    sid = row["id"]
    _tamper_shard(out, {f"{sid}.x/../../../escaped.txt": b"owned", f"{sid}.Evil": b"x"})
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(tmp_path / "target.txt", dest / f"{sid}.json")  # a planted link is not followed
    result = runner.invoke(app, ["inspect", str(out), sid, "--extract", str(dest)])
    assert result.exit_code == 0, result.output
    refused = json.loads(result.output)["not_extracted"]
    assert sorted(refused) == sorted([f"{sid}.x/../../../escaped.txt", f"{sid}.Evil", f"{sid}.json"])
    assert not (tmp_path / "escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))
    assert not (tmp_path / "target.txt").exists()
    written = sorted(p.name for p in dest.iterdir() if not p.is_symlink())
    assert written and all(name.startswith(sid + ".") and "/" not in name for name in written)
    assert f"{sid}.Evil" not in written


def test_extract_refuses_a_manifest_id_or_shard_that_leaves_out(tmp_path):
    out, _ = finished_out(tmp_path)
    table = pq.read_table(out / "manifest.parquet")
    rows = table.to_pylist()
    rows[0]["shard"] = "../../outside.tar"
    rows[1]["id"] = "../../../../tmp/pwn"
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), out / "manifest.parquet")
    shutil.copy(next((out / "shards").glob("*.tar")), tmp_path / "outside.tar")
    result = runner.invoke(app, ["inspect", str(out), rows[0]["id"]])
    assert result.exit_code == 2 and "is not a shard listed in" in result.output
    dest = tmp_path / "dest"
    result = runner.invoke(app, ["inspect", str(out), rows[1]["key"], "--extract", str(dest)])
    assert not list(tmp_path.rglob("pwn*")) and not (dest.exists() and list(dest.iterdir()))


# -- user text through rich -------------------------------------------------------------------


def test_summary_and_errors_print_user_text_literally(monkeypatch):
    stats = {
        "inputs": 2,
        "kept": 1,
        "dropped": 0,
        "failed": 1,
        "by_stage": {"failed:read": {"read.unsafe_member": 1, "decode.[bold red]x[/]": 1}},
        "by_code": {
            "read.unsafe_member": {
                "status": "failed",
                "stage": "read",
                "count": 1,
                "example": "unsafe tar member path (..): '../[/]x.jpg'",
            },
            "decode.[bold red]x[/]": {
                "status": "failed",
                "stage": "decode",
                "count": 1,
                "example": "",
                "params": {"name": {"top": {"[bold red]not bold[/]": 1}, "distinct": 1}},
            },
        },
        "shards": 1,
        "shard_bytes": 10,
        "last_run_seconds": 1,
    }
    buf = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=buf, width=200, color_system=None))
    cli._print_summary(stats, 2, Path("/out/[/]weird"), ["decode"])
    text = buf.getvalue()
    assert "'../[/]x.jpg'" in text and "[bold red]not bold[/]" in text and "decode.[bold red]x[/]" in text and "/out/[/]weird" in text
    from hoiforge.cli import output

    monkeypatch.setattr(output, "err", Console(file=buf, width=200, color_system=None))
    with pytest.raises(Exception) as e:
        output.fail("cannot read /in/[/]x.jpg")
    assert "cannot read /in/[/]x.jpg" in buf.getvalue() and type(e.value).__name__ == "Exit" and e.value.exit_code == 2


# -- a full disk at finalize ------------------------------------------------------------------


def test_disk_full_during_finalize_says_what_to_free_and_that_a_rerun_resumes(tmp_path, monkeypatch):
    out, listing = finished_out(tmp_path)
    import hoiforge.pipeline.manifest as manifest

    def full(path, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(manifest, "write_atomic", full)
    with pytest.raises(OutputError) as e:
        finalize_output(OutLayout(out), listing, {"recipe": "t", "last_run_seconds": 0, "last_run_processed": 0})
    message = str(e.value)
    assert "No space left on device" in message and "Free at least" in message and "MB on the filesystem of" in message
    assert "rerun the same command" in message
    monkeypatch.undo()
    finalize_output(OutLayout(out), listing, {"recipe": "t", "last_run_seconds": 0, "last_run_processed": 0})
