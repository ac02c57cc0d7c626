"""``hoiforge build``: list inputs, check everything, stream them through the stages, finalize.

Order matters for the invariants: every check that can fail (recipe, backends, output dir,
inputs) runs before Ray starts; inputs already committed by an earlier run are skipped; and
finalize derives the manifest, index and stats from what was committed, so a killed and resumed
run ends with exactly the accounting of an uninterrupted one.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hoiforge import __version__
from hoiforge.datasets.layout import OutLayout, write_atomic
from hoiforge.datasets.schema import build_template
from hoiforge.errors import OutputError
from hoiforge.pipeline.inputs import conform_listing, list_inputs, refs_to_table
from hoiforge.pipeline.manifest import clean_uncommitted, committed_keys, finalize, next_shard_seq
from hoiforge.pipeline.outlock import exclusive
from hoiforge.pipeline.recipe import Recipe
from hoiforge.pipeline.stage_set import instantiate, uniform_members
from hoiforge.stages.base import Stage


@dataclass
class BuildResult:
    out: Path
    stats: dict[str, Any]
    processed: int  # inputs processed by this run (the rest were committed before)


def bind_output(stages: list[Stage], layout: OutLayout) -> None:
    """Stages that consult what earlier runs of this output kept (neardup) learn where it is."""
    for stage in stages:
        bind = getattr(stage, "bind_output", None)
        if bind is not None:
            bind(layout.root)


def preflight(stages: list[Stage]) -> None:
    """Every backend says now, on the driver, whether it can run (BackendUnavailable if not)."""
    for stage in stages:
        stage.preflight()


def recipe_fingerprint(document: dict) -> dict:
    """What must not change between a run and its resume: every stage setting that shapes the
    output. How it runs (resources: batch sizes, pools, GPUs) and the description may change."""
    from hoiforge.pipeline.recipe import OutputSpec

    return {
        **{k: v for k, v in document.items() if k not in ("description", "stages")},
        # Output keys added since an output was built compare as their defaults.
        "output": OutputSpec.model_validate(document.get("output", {})).model_dump(mode="json"),
        "stages": [{k: v for k, v in stage.items() if k != "resources"} for stage in document["stages"]],
    }


def prepare_output(layout: OutLayout, recipe: Recipe) -> None:
    """Create the output dir, prove it writable, and refuse one built by a different recipe."""
    try:
        layout.make()
        probe = layout.work / ".tmp-probe"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise OutputError(f"output directory {layout.root} is not writable: {e.strerror or e}") from None
    # serialize_as_any: each stage's own keys, not only the StageParams base fields.
    document = recipe.model_dump(mode="json", serialize_as_any=True)
    if layout.recipe.exists():
        previous = recipe_fingerprint(json.loads(layout.recipe.read_text()))
        current = recipe_fingerprint(document)
        if previous != current:
            changed = sorted(k for k in set(previous) | set(current) if previous.get(k) != current.get(k))
            stages = [
                f"stages[{i}] ({b.get('stage')})"
                for i, (a, b) in enumerate(zip(previous.get("stages", []), current.get("stages", [])))
                if a != b
            ]
            raise OutputError(
                f"{layout.root} was built with a different recipe ({', '.join(stages or changed)} changed); "
                "resume needs the same recipe and --test-size: use a new --out"
            )
    else:
        write_atomic(layout.recipe, json.dumps(document, indent=2).encode())


def update_listing(layout: OutLayout, fresh: pa.Table) -> pa.Table:
    """The run's listing: previous rows keep their index, new inputs are appended (incremental).

    Everything else about an input (tar byte range, size, listing verdict) comes from this run's
    listing: a tar rewritten since the last run has its members at other offsets.
    """
    if layout.listing.exists():
        previous = conform_listing(pq.read_table(layout.listing))
        again = previous.select(["key", "index"]).join(fresh, "key", join_type="inner").select(previous.column_names)
        gone = previous.filter(pc.invert(pc.is_in(previous.column("key"), fresh.column("key"))))
        new = fresh.filter(pc.invert(pc.is_in(fresh.column("key"), previous.column("key"))))
        start = previous.num_rows
    else:
        again, gone, new, start = None, None, fresh, 0
    new = new.append_column("index", pa.array(range(start, start + new.num_rows), pa.int64()))
    listing = new if again is None else pa.concat_tables([gone, again, new]).sort_by("index")
    buf = io.BytesIO()
    pq.write_table(listing, buf)
    write_atomic(layout.listing, buf.getvalue())
    # This run's work is what these inputs name (not what an earlier command listed).
    return listing.filter(pc.is_in(listing.column("key"), fresh.column("key")))


def build(
    inputs: list[str],
    out: str | Path,
    recipe: Recipe,
    address: str | None = None,
    progress: bool = True,
    allow_outside_lists: bool = False,
    verbose: bool = False,
    profile: bool = False,
) -> BuildResult:
    """``profile``: record where the time went (pipeline/profile.py) into stats.json's "profile"."""
    from hoiforge.pipeline.weights_plan import with_weights

    started = time.time()
    layout = OutLayout(out)
    # Weights first: one message lists every missing file and the command that fetches them.
    stages = instantiate(with_weights(recipe))
    preflight(stages)
    fresh = refs_to_table(list_inputs(inputs, allow_outside_lists))  # a typo in an input fails before OUT is touched
    with exclusive(layout.root):  # one writer per OUT, from the start-up cleanup to the last finalize file
        prepare_output(layout, recipe)  # the recipe as written: another weights root is the same recipe
        listing = update_listing(layout, fresh)
        clean_uncommitted(layout)
        bind_output(stages, layout)
        done = committed_keys(layout)
        todo = listing.filter(pc.invert(pc.is_in(listing.column("key"), pa.array(sorted(done), pa.string()))))

        profiled: dict[str, Any] | None = {} if profile else None
        if todo.num_rows:
            run_plan(todo, layout, recipe, stages, address, progress, verbose, profile=profiled)
        # Writers may leave tars behind when Ray retried them; finalize sees only committed work.
        clean_uncommitted(layout)
        run_info = {
            "recipe": recipe.name,
            "hoiforge_version": __version__,
            "last_run_seconds": round(time.time() - started, 2),
            "last_run_processed": todo.num_rows,
        }
        if profiled is not None:
            run_info["profile"] = profiled
        stats = finalize_output(layout, listing, run_info)
    return BuildResult(layout.root, stats, todo.num_rows)


def finalize_output(layout: OutLayout, listing: pa.Table, run_info: dict[str, Any]) -> dict[str, Any]:
    """finalize, with a full or read-only disk turned into an OutputError that says what to do."""
    try:
        return finalize(layout, listing, run_info)
    except OSError as e:
        if e.errno not in OUTPUT_ERRNOS:
            raise
        parts = sum(p.stat().st_size for p in layout.parts.glob("part-*.parquet")) if layout.parts.exists() else 0
        need = max(1, math.ceil(2 * parts / 1e6))
        raise OutputError(
            f"finishing {layout.root} failed: {e.strerror or e}. Free at least {need} MB on the filesystem of {layout.root} "
            "(finalize writes manifest.parquet, index.json and stats.json beside the shards), then rerun the same command: "
            "every committed shard is kept and the rerun only finalizes"
        ) from None


def run_plan(
    todo: pa.Table,
    layout: OutLayout,
    recipe: Recipe,
    stages: list[Stage],
    address: str | None,
    progress: bool,
    verbose: bool = False,
    profile: dict[str, Any] | None = None,
) -> None:
    """Stream ``todo`` through the stages into shards. ``profile``: a dict to fill with how the
    plan ran (segments, Ray Data's per-operator stats), and per-image waits recorded meanwhile."""
    import functools

    import ray

    from hoiforge.pipeline.adapter import chain_class
    from hoiforge.pipeline.cluster import check_pools, connect, plan_segments, without_false_alarms
    from hoiforge.pipeline.read import read_batch
    from hoiforge.pipeline.visibility import check_out_visible
    from hoiforge.pipeline.writer import ShardSink, shard_counter

    started_here = connect(address, verbose)
    if not verbose:  # Ray Data's own INFO lines (plan, "execution finished") repeat what the summary says
        logging.getLogger("ray.data").setLevel(logging.ERROR)
    try:
        ctx = ray.data.DataContext.get_current()
        # Without a terminal Ray prints its bars as a fresh dump every few seconds: the summary's
        # per-stage lines are the progress report there.
        ctx.enable_progress_bars = progress and sys.stderr.isatty()
        ctx.print_on_execution_start = False
        check_out_visible(layout.shards)
        resources = ray.cluster_resources()
        task_cpus, segments = plan_segments(stages, resources.get("CPU", 1), resources.get("GPU", 0))
        check_pools(segments, resources)  # a pool the cluster cannot hold would wait forever, silently

        # Blocks of listing rows: enough of them to keep every CPU busy, few enough to stay cheap,
        # and no larger than an actor pool's batch: Ray hands an actor whole blocks, and blocks
        # larger than the batch leave one actor working on the last big block while the others
        # sit idle at the end of the run.
        rows_per_block = max(1, min(256, math.ceil(todo.num_rows / (4 * max(1, resources.get("CPU", 1))))))
        pool_batches = [seg.run.batch_size for seg in segments if seg.run.concurrency is not None]
        if pool_batches:
            rows_per_block = min(rows_per_block, min(pool_batches))
        blocks = [todo.slice(i, rows_per_block) for i in range(0, todo.num_rows, rows_per_block)]
        # from_blocks, not from_arrow: from_arrow runs one remote task per block for its metadata
        # (1.3 s before the first batch at 240 images, hours of tasks at millions); the driver
        # holds the blocks and knows it.
        ds = ray.data.from_blocks(blocks)
        # The read step stops at the decode stage's byte limit: a huge file is never read whole.
        max_bytes = next((getattr(s.params, "max_bytes", None) for s in stages if s.name == "decode"), None)
        read = functools.partial(read_batch, max_bytes=max_bytes)
        first_on_cpu = not segments[0].run.num_gpus
        if not first_on_cpu:
            ds = ds.map_batches(read, batch_format="pyarrow", batch_size=None, num_cpus=task_cpus)
        for i, seg in enumerate(segments):
            run = seg.run
            common = dict(batch_format="pyarrow", num_cpus=run.num_cpus, udf_modifying_row_count=False)
            if run.custom:
                common["resources"] = run.custom
            chain = dict(read=read if i == 0 and first_on_cpu else None, profile=profile is not None, last=i == len(segments) - 1)
            if run.concurrency is None:
                # Task segments work sample by sample: one batch per block keeps blocks small and
                # streaming (a batch size would make Ray bundle blocks, up to the whole input).
                ds = ds.map_batches(chain_class(seg.name)(seg.stages, **chain), batch_size=None, **common)
            else:
                pool = ray.data.ActorPoolStrategy(size=run.concurrency)
                ds = ds.map_batches(
                    chain_class(seg.name),
                    fn_constructor_args=([(type(s), s.params) for s in seg.stages],),
                    fn_constructor_kwargs=chain,
                    compute=pool,
                    batch_size=run.batch_size,
                    num_gpus=run.num_gpus or None,
                    **common,
                )
        counter, run_id = shard_counter(), uuid.uuid4().hex
        ray.get(counter.begin.remote(run_id, next_shard_seq(layout)))
        plan_started = time.perf_counter()  # Ray Data stamps task starts with perf_counter (one clock per node)
        # Writers get other remote args than the task stages on purpose: with equal ones Ray fuses
        # the last task stages into the write, which first bundles a whole shard's rows, so those
        # stages would run once per shard, serially, instead of streaming. Writing is mostly I/O.
        write_args = {"num_cpus": task_cpus / 2}
        # A worker with the writer imported, ready when the first shard's rows are: started now,
        # while the actors load their models, instead of after the last batch (cluster.py).
        ray.remote(warm_writer).options(**write_args).remote()
        try:
            sink = ShardSink(str(layout.root), recipe.output, counter, run_id, uniform_members(stages), build_template(stages))
            with without_false_alarms():
                ds.write_datasink(sink, ray_remote_args=write_args)
            if profile is not None:
                profile.update(plan_profile(ds, segments, plan_started))
        except Exception as e:
            os_error = find_output_error(e)
            if os_error is None:
                raise
            raise OutputError(
                f"writing to {layout.root} failed: {os_error.strerror or os_error}. Shards committed so far are intact; "
                "fix the output (free space, permissions) and rerun the same command to resume"
            ) from None
        finally:
            counter.end.remote(run_id)
    finally:
        if started_here and not os.environ.get("HOIFORGE_KEEP_RAY"):
            ray.shutdown()


def warm_writer() -> None:
    import hoiforge.pipeline.writer  # noqa: F401 - the import is the point


def plan_profile(ds, segments, started: float) -> dict[str, Any]:
    """How the plan ran: its segments (which stages share an operator, tasks or actors, how many)
    and Ray Data's per-operator stats (pipeline/profile.py). ``started``: time.perf_counter()."""
    from hoiforge.pipeline.profile import operator_stats

    described = []
    for seg in segments:
        described.append(
            {
                "stages": [s.name for s in seg.stages],
                "execution": seg.execution,
                "actors": seg.run.concurrency,
                "num_cpus": round(seg.run.num_cpus, 3),
                "num_gpus": seg.run.num_gpus,
                "batch_size": seg.run.batch_size,
            }
        )
    try:
        summary = ds.get_stats_summary()
    except Exception as e:  # noqa: BLE001 - a Ray version without the summary still gets the rest
        return {"plan_seconds": round(time.perf_counter() - started, 3), "segments": described, "operators_error": repr(e)}
    # Operators are named after their chain class, "MapBatches(decode+resolution+...)".
    pools = {f"({seg.name})": seg.run.concurrency for seg in segments if seg.run.concurrency is not None}
    return {
        "plan_seconds": round(time.perf_counter() - started, 3),
        "segments": described,
        "operators": operator_stats(summary, pools, started),
    }


OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def find_output_error(exc: BaseException) -> OSError | None:
    """The OSError about the output behind a (Ray-wrapped) exception, if that is what it is."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in OUTPUT_ERRNOS:
            return e
        stack += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return None
