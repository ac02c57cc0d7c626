"""Connecting to Ray and sizing stages from the cluster's resources.

Actor pools are sized from ``ray.cluster_resources()`` so that task stages always keep CPU: on
2 cores, two pools of ``num_cpus=1`` actors starve the read/decode/write tasks and the plan hangs
(ray-project/ray#44687; seen here, MODELS.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
from dataclasses import dataclass

from hoiforge.stages.base import Stage


def connect(address: str | None = None, verbose: bool = False) -> bool:
    """Start or join Ray; returns True when this call started it (and so should stop it).

    Workers' own output (mediapipe/TFLite C++ warnings, library prints) stays in Ray's log files
    unless ``verbose``: those libraries log before any Python logging setup could silence them.
    """
    import ray

    from hoiforge.models.weights.registry import runtime_env_vars

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    # Every worker resolves weights under the same root as the driver.
    runtime_env = {"env_vars": runtime_env_vars()}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env, log_to_driver=verbose)
    else:
        # A local start turns Ray's token authentication on by default and says so at WARNING on
        # every build: it stays on, unannounced.
        with _silenced(AUTH_NOTICE_LOGGER):
            ray.init(
                include_dashboard=False,
                logging_level=logging.WARNING,
                runtime_env=runtime_env,
                log_to_driver=verbose,
                _system_config=LOCAL_SYSTEM_CONFIG,
            )
        warm_ray_data()  # a cluster joined by address has had its helpers since its first dataset
    start_shard_counter()
    return True


AUTH_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"

# Ray Data 2.60 passes every actor pool a constructor argument in the object store while asking
# for restarts, and the driver's core worker says so at ERROR level for each pool, on every build
# (ray-project/ray#57733: a false alarm for Ray Data's own argument; fixed upstream after 2.60).
RAY_FALSE_ALARMS = (b"has constructor arguments in the object store and max_restarts > 0",)


@contextlib.contextmanager
def without_false_alarms(patterns: tuple[bytes, ...] = RAY_FALSE_ALARMS):
    """This process's fd 2 through a filter for the block: whole lines holding one of ``patterns``
    are dropped, everything else passes on at once (a partial line too, unless it may be the start
    of a C++ log line, ``[``, which is held until its end). Ray's C++ code writes to fd 2 itself,
    so Python's logging cannot filter it."""
    import threading

    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)

    def send(data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(saved, data)

    def pump() -> None:
        held = b""
        with os.fdopen(read_end, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                *lines, held = (held + chunk).split(b"\n")
                out = b"".join(line + b"\n" for line in lines if not any(p in line for p in patterns))
                if held and not held.startswith(b"["):
                    out, held = out + held, b""
                if out:
                    send(out)
        if held and not any(p in held for p in patterns):
            send(held)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # the pipe's last write end closes: the pump reads to its end and stops
        thread.join(timeout=5)
        os.close(saved)


@contextlib.contextmanager
def _silenced(logger_name: str):
    """The logger's WARNING notices dropped for the block (errors still shown)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def start_shard_counter() -> None:
    """The cluster's shard counter (pipeline/writer.py), started with Ray rather than inside the
    first plan, for the reason warm_ray_data gives."""
    import ray

    from hoiforge.pipeline.writer import shard_counter

    ray.get(shard_counter().__ray_ready__.remote())


def warm_ray_data() -> None:
    """Run a one-row dataset, so Ray Data's per-cluster helper actors (its stats actor, the
    autoscaling coordinator, the actor location tracker) exist before the build's plan starts.
    Each is a Python process that costs about a CPU-second to start: paid once per cluster (a
    cluster joined with ``--address`` has them already), it belongs to Ray's start-up, not inside
    the first plan, where on a small machine it competes with the actors loading their models."""
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    bars, ctx.enable_progress_bars = ctx.enable_progress_bars, False
    logger = logging.getLogger("ray.data")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "execution finished" of a dataset the user never asked for
    try:
        ray.data.range(1).materialize()
        try:  # and the actor pools' location tracker (internal API: best effort)
            from ray.data._internal.execution.node_trackers.actor_location import get_or_create_actor_location_tracker

            ray.get(get_or_create_actor_location_tracker().__ray_ready__.remote())
        except Exception:  # noqa: BLE001 - another Ray version: the plan creates it itself
            pass
    finally:
        ctx.enable_progress_bars = bars
        logger.setLevel(level)


# Idle worker processes Ray keeps beyond one per CPU. Actor pools take processes of their own, and
# without headroom Ray kills the idle task workers a second after they finish, so the shard write
# at the end of a run waits for a fresh Python process and its imports (seconds on a small
# machine) while every actor sits idle. Only settable when this process starts Ray.
LOCAL_SYSTEM_CONFIG = {"num_workers_soft_limit": (os.cpu_count() or 1) + 8}


@dataclass
class StageRun:
    """How one segment of the plan runs: as tasks (``concurrency`` None) or an actor pool."""

    num_cpus: float
    num_gpus: float
    batch_size: int
    concurrency: int | None
    custom: dict[str, float]


@dataclass
class Segment:
    """Consecutive stages that run in one Ray operator (pipeline/adapter.py ChainAdapter)."""

    stages: list[Stage]
    run: StageRun

    @property
    def execution(self) -> str:
        return "actors" if self.run.concurrency is not None else "tasks"

    @property
    def name(self) -> str:
        return "+".join(s.name for s in self.stages)


def _fusable(stage: Stage) -> bool:
    """A stage joins its neighbours' operator unless the recipe gave it its own GPU or pool size."""
    r = stage.params.resources
    return not r.num_gpus and not ({"concurrency", "num_cpus"} & r.model_fields_set)


def group_stages(stages: list[Stage]) -> list[list[Stage]]:
    """Consecutive fusable CPU stages with the same custom resources form one group; every other
    stage (a GPU stage, a stage with its own concurrency or num_cpus) is a group of its own.

    One group per operator: a chain decodes its image once, converts Arrow once, and an actor
    pool that loads two models starts half as many actors as two pools would (each start-up is
    seconds of model loading, idle time of the whole pipeline on a small run).
    """
    groups: list[list[Stage]] = []
    for s in stages:
        prev = groups[-1][-1] if groups else None
        if prev is not None and _fusable(s) and _fusable(prev) and prev.params.resources.custom == s.params.resources.custom:
            groups[-1].append(s)
        else:
            groups.append([s])
    return groups


def plan_segments(stages: list[Stage], cpus: float, gpus: float) -> tuple[float, list[Segment]]:
    """(CPUs of each I/O task (read, write), the segments) for a cluster with ``cpus`` and ``gpus``.

    Actor pools always leave CPU to the tasks, or the plan hangs (ray-project/ray#44687, module
    docstring). When every CPU stage runs inside actor pools, the tasks left are the read and write
    steps (I/O), so the pools get all but a quarter of the CPUs (at most half a CPU is kept back);
    when task segments do compute too, the pools get half. The pools' share is split into actors
    of at most one CPU each, so a 2-CPU machine runs two actors side by side, not one.
    """
    groups = group_stages(stages)
    kinds = ["actors" if any(s.execution == "actors" for s in g) else "tasks" for g in groups]
    gpu_groups = [g for g in groups if any(s.params.resources.num_gpus for s in g)]
    cpu_pools = [g for g, k in zip(groups, kinds, strict=True) if k == "actors" and g not in gpu_groups]
    compute_tasks = any(k == "tasks" for k in kinds)
    task_cpus = 1.0 if cpus >= 2 else max(cpus / 2, 0.1)
    if compute_tasks:
        share = (cpus / 2) / max(1, len(cpu_pools))
    else:
        reserve = min(0.5, cpus / 4)
        task_cpus = reserve / 2
        share = (cpus - reserve) / max(1, len(cpu_pools))
    pool_size = max(1, math.ceil(share - 1e-9))
    actor_cpus = share / pool_size
    segments = []
    for g, kind in zip(groups, kinds, strict=True):
        r = g[0].params.resources if len(g) == 1 else None
        model_stages = [s for s in g if s.execution == "actors"] or g
        batch = max(_batch_size(s) for s in model_stages)
        custom = g[0].params.resources.custom
        if kind == "tasks":
            run = StageRun(r.num_cpus if r and r.num_cpus else task_cpus, 0, batch, None, custom)
        elif g in gpu_groups:
            num_gpus = max(s.params.resources.num_gpus for s in g)
            fit = max(1, int(gpus / num_gpus / max(1, len(gpu_groups)))) if gpus else 1
            run = StageRun(
                (r.num_cpus if r else None) or min(1.0, actor_cpus), num_gpus, batch, (r.concurrency if r else None) or fit, custom
            )
        else:
            run = StageRun((r.num_cpus if r else None) or actor_cpus, 0, batch, (r.concurrency if r else None) or pool_size, custom)
        segments.append(Segment(g, run))
    return task_cpus, segments


def check_pools(segments: list[Segment], resources: dict[str, float]) -> None:
    """RecipeError, before the plan runs, for a recipe's own ``concurrency`` that this cluster cannot hold.

    An actor pool larger than the cluster never starts its last actors: Ray Data waits for them
    without a word (``concurrency: 1000000`` hung the build). Pools sized by ``plan_segments`` fit by
    construction; a recipe's number is checked here against ``ray.cluster_resources()`` as it is now
    (ours: an autoscaling cluster is sized by its running nodes, as the default pools are).
    """
    from hoiforge.errors import RecipeError

    have = ", ".join(f"{resources.get(k, 0):g} {k}" for k in ("CPU", "GPU"))
    for seg in segments:
        run = seg.run
        if run.concurrency is None or not any("concurrency" in s.params.resources.model_fields_set for s in seg.stages):
            continue
        for name, per in {"CPU": run.num_cpus, "GPU": run.num_gpus, **run.custom}.items():
            total = resources.get(name, 0.0)
            if per and run.concurrency * per > total + 1e-9:
                most = int(total / per + 1e-9)
                fix = f"set its resources.concurrency to at most {most}" if most else f"lower its {name} per actor"
                raise RecipeError(
                    f"stage {seg.name}: concurrency {run.concurrency} asks for {run.concurrency} actors of {per:g} {name} "
                    f"({run.concurrency * per:g} {name}), but this Ray cluster has {total:g} {name} ({have}); {fix}, "
                    "or leave concurrency out to size the pool from the cluster"
                )


def _batch_size(stage: Stage) -> int:
    r = stage.params.resources
    return r.batch_size if "batch_size" in r.model_fields_set else stage.default_batch_size
