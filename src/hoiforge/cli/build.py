"""``hoiforge build``, ``hoiforge inspect`` and ``hoiforge validate``: make a build, read one sample, check one.

Plain functions; cli/main.py registers them on the app.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hoiforge.cli.output import check_failed, warn
from hoiforge.cli.output import fail as _fail
from hoiforge.errors import HoiforgeError

console = Console(stderr=True)
stdout = Console()


def build(
    inputs: Annotated[
        list[str], typer.Argument(help="image files, directories, globs, tars, or .parquet/.csv lists (local or s3://, gs://)")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="output directory; rerunning the same command resumes")],
    recipe: Annotated[str, typer.Option("--recipe", "-r", help="bundled recipe name (demo, hoihuman, shoeleg) or a YAML path")] = "demo",
    address: Annotated[str | None, typer.Option("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")] = None,
    test_size: Annotated[float | None, typer.Option("--test-size", help="fraction of ids held out for test (overrides the recipe)")] = None,
    shard_size: Annotated[int | None, typer.Option("--shard-size", help="samples per shard at most (overrides the recipe)")] = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Ray Data progress bars (on a terminal)")] = True,
    allow_outside_lists: Annotated[
        bool,
        typer.Option("--allow-outside-lists", help="let .csv/.parquet lists name files outside their own folder/bucket or filesystem"),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="show the workers' library output (mediapipe/TFLite warnings, prints)")
    ] = False,
    weights: Annotated[
        Path | None,
        typer.Option(
            "--weights", help="weights root of the paper-grade backends (default $HOIFORGE_WEIGHTS, else ~/.cache/hoiforge/weights)"
        ),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="record where the time went (per-stage time, queue waits, actor idle, set-up) into stats.json and the report"
        ),
    ] = False,
) -> None:
    """Run a recipe over INPUTs into sharded WebDataset tars + manifest + wids index + stats."""
    from pydantic import ValidationError

    from hoiforge.models.weights.registry import WEIGHTS_ENV
    from hoiforge.pipeline.recipe import OutputSpec, load_recipe
    from hoiforge.pipeline.runner import build as run_build
    from hoiforge.stages.base import RecipeDeprecation

    if weights is not None:
        os.environ[WEIGHTS_ENV] = str(weights.expanduser().resolve())
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RecipeDeprecation)
            r = load_recipe(recipe)
        for w in caught:
            warn(str(w.message))
        overrides = {k: v for k, v in {"test_size": test_size, "shard_max_count": shard_size}.items() if v is not None}
        if overrides:
            r = r.model_copy(update={"output": OutputSpec.model_validate({**r.output.model_dump(), **overrides})})
        console.print(
            f"[bold]hoiforge build[/] recipe [cyan]{escape(r.name)}[/] ({' → '.join(r.stage_names())}) → {escape(str(out))}",
            highlight=False,
        )
        result = run_build(
            inputs, out, r, address=address, progress=progress, allow_outside_lists=allow_outside_lists, verbose=verbose, profile=profile
        )
    except HoiforgeError as e:
        _fail(str(e))
    except ValidationError as e:  # --test-size / --shard-size out of bounds
        _fail(f"{', '.join(str(err['loc'][0]) for err in e.errors())}: {e.errors()[0]['msg']}")
    _print_summary(result.stats, result.processed, out, r.stage_names())


def _params_summary(reason: dict) -> str:
    """One short line of a reason code's parameters: numbers as a range, values as the commonest."""
    parts = []
    for name, dist in reason.get("params", {}).items():
        if "median" in dist:
            parts.append(f"{name} {dist['min']:g}..{dist['max']:g} (median {dist['median']:g})")
        else:
            top = next(iter(dist["top"]), "")
            parts.append(f"{name} {top[:40]}" + (f" (+{dist['distinct'] - 1} more)" if dist["distinct"] > 1 else ""))
    return "; ".join(parts) or reason.get("example", "")[:80]


def _print_summary(stats: dict, processed: int, out: Path, stage_order: list[str]) -> None:
    # Every text here can hold user data (paths, tar member names, reasons): escaped for rich markup.
    table = Table(title=escape(str(out)), show_header=False, title_justify="left")
    table.add_row("inputs", str(stats["inputs"]))
    table.add_row("kept", f"[green]{stats['kept']}[/]")
    table.add_row("dropped", str(stats["dropped"]))
    table.add_row("failed", f"[red]{stats['failed']}[/]" if stats["failed"] else "0")
    not_images = sum(stats["by_stage"].get("dropped:list", {}).values())
    if not_images:
        table.add_row("not images", f"{not_images} file(s) skipped unread by extension (manifest: dropped at list)")
    for code, r in stats.get("by_code", {}).items():
        table.add_row(f"  {r['status']}", f"{r['count']} × {escape(code)}  [dim]{escape(_params_summary(r))}[/]")
    for name, line in stage_lines(stats, stage_order):
        table.add_row(f"  {escape(name)}", line)
    table.add_row("shards", f"{stats['shards']} ({stats['shard_bytes'] / 1e6:.1f} MB)")
    per_stage = stats.get("seconds_per_image", {})
    if per_stage:
        ordered = [n for n in stage_order if n in per_stage] + [n for n in per_stage if n not in stage_order]
        table.add_row("ms per image", " · ".join(f"{escape(name)} {1000 * per_stage[name]:.0f}" for name in ordered))
    table.add_row("this run", f"{processed} inputs in {stats['last_run_seconds']} s")
    for name, line in profile_lines(stats.get("profile")):
        table.add_row(name, line)
    console.print(table)


def profile_lines(profile: dict | None) -> list[tuple[str, str]]:
    """--profile's summary rows: each operator's busy share, actor idle, waits, and model set-up."""
    if not profile:
        return []
    lines = []
    for op in profile.get("operators", []):
        parts = [f"{op['tasks']} tasks, busy {op['busy_s'] or 0:.1f} s of {op['span_s'] or 0:.1f} s"]
        if "actor_idle_s" in op:
            parts.append(f"{op['actors']} actors idle {op['actor_idle_s']:.1f} s")
        lines.append((f"  {escape(op['operator'])}", ", ".join(parts)))
    waits = profile.get("queue_wait_s", {})
    if waits:
        lines.append(("queue wait", " · ".join(f"{escape(k)} mean {v['mean']:.2f} s, max {v['max']:.2f} s" for k, v in waits.items())))
    setup = profile.get("setup_s", {})
    if any(v["total"] for v in setup.values()):
        lines.append(
            ("set-up", " · ".join(f"{escape(k)} {v['total']:.1f} s over {v['workers']} workers" for k, v in setup.items() if v["total"]))
        )
    return [("profile", 'stats.json "profile"'), *lines]


def stage_lines(stats: dict, stage_order: list[str]) -> list[tuple[str, str]]:
    """One line per stage, in run order: how many inputs reached it and how many it passed on."""
    removed: dict[str, int] = {}
    for group, reasons in stats["by_stage"].items():
        stage = group.partition(":")[2]
        removed[stage] = removed.get(stage, 0) + sum(reasons.values())
    order = ["list", "read", *stage_order, *sorted(set(removed) - {"list", "read", *stage_order})]
    lines, left = [], stats["inputs"]
    for stage in order:
        if stage in ("list", "read") and not removed.get(stage):
            continue
        out = left - removed.get(stage, 0)
        lines.append((stage, f"{left} in → {out} on"))
        left = out
    return lines


def inspect(
    out: Annotated[Path, typer.Argument(help="output directory of a build")],
    ident: Annotated[str, typer.Argument(metavar="ID", help="sample id (or any unique prefix), or the input path as given to build")],
    extract: Annotated[Path | None, typer.Option("--extract", help="also write the sample's members into this folder")] = None,
) -> None:
    """Print one sample's annotations (and its manifest row)."""
    from hoiforge.datasets.reader import AmbiguousId, NotAShard, find_row, read_sample
    from hoiforge.pipeline.inputs import key_of

    if not (out / "manifest.parquet").exists():
        _fail(f"{out}: no manifest.parquet (not a finished build)")
    try:
        # A path is looked up as the build spelled it (made absolute), so a relative path works.
        row = find_row(out, ident, keys=(key_of(ident),))
    except AmbiguousId as e:
        _fail(str(e))
    except HoiforgeError:
        row = find_row(out, ident)
    if row is None:
        _fail(f"{ident}: no such sample id or input in {out}/manifest.parquet")
    doc = {"manifest": row}
    if row["status"] == "kept":
        try:
            members = read_sample(out, row["shard"], row["id"])
        except NotAShard as e:
            _fail(f"{out}: the manifest row names a shard it may not: {e}")
        doc["members"] = {ext: len(data) for ext, data in members.items()}
        doc["annotation"] = json.loads(members["json"]) if "json" in members else None
        if extract:
            skipped = _extract(extract, row["id"], members)
            if skipped:
                doc["not_extracted"] = skipped
    stdout.print_json(json.dumps(doc, default=str))


def _extract(folder: Path, sample_id: str, members: dict[str, bytes]) -> list[str]:
    """Write members named by the sample contract into ``folder`` (nothing else, nowhere else); returns what was refused."""
    from hoiforge.datasets.contract import split_member_name

    folder.mkdir(parents=True, exist_ok=True)
    root = folder.resolve()
    refused = []
    for ext, data in members.items():
        name = f"{sample_id}.{ext}"
        try:
            split_member_name(name)
        except ValueError:
            refused.append(name)
            continue
        target = root / name
        if target.resolve().parent != root:
            refused.append(name)
            continue
        try:  # O_NOFOLLOW: a symlink already sitting at the name is not followed out of the folder
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError:
            refused.append(name)
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    return refused


def validate(out: Annotated[Path, typer.Argument(help="output directory of a build")]) -> None:
    """Check shards, index and manifest against the sample contract; exit 1 on any violation."""
    from hoiforge.datasets.validate import validate as run_validate
    from hoiforge.pipeline.outlock import check_not_busy
    from hoiforge.pipeline.stage_set import declared_template

    if not out.is_dir():
        _fail(f"{out}: no such folder")
    try:
        check_not_busy(out, "validate")
    except HoiforgeError as e:
        _fail(str(e))
    problems = run_validate(out, declared=declared_template)
    for p in problems[:200]:
        stdout.print(f"[red]✗[/] {escape(p)}", highlight=False)
    if problems:
        stdout.print(f"[bold red]{len(problems)} violation(s)[/]")
        check_failed()
    stdout.print(f"[green]✓[/] {escape(str(out))} follows the sample contract", highlight=False)
