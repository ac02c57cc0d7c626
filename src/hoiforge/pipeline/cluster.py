"""Connecting to Ray and sizing stages from the cluster's resources.

Actor pools are sized from ``ray.cluster_resources()`` so that task stages always keep CPU: on
2 cores, two pools of ``num_cpus=1`` actors starve the read/decode/write tasks and the plan hangs
(ray-project/ray#44687; seen here, MODELS.md).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from hoiforge.stages.base import Stage


def connect(address: str | None = None, verbose: bool = False) -> bool:
    """Start or join Ray; returns True when this call started it (and so should stop it).

    Workers' own output (mediapipe/TFLite C++ warnings, library prints) stays in Ray's log files
    unless ``verbose``: those libraries log before any Python logging setup could silence them.
    """
    import ray

    from hoiforge.models.weights import runtime_env_vars

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    # Every worker resolves weights under the same root as the driver.
    runtime_env = {"env_vars": runtime_env_vars()}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env, log_to_driver=verbose)
    else:
        ray.init(include_dashboard=False, logging_level=logging.WARNING, runtime_env=runtime_env, log_to_driver=verbose)
    return True


@dataclass
class StageRun:
    """How one stage runs: as tasks (``concurrency`` None) or an actor pool."""

    num_cpus: float
    num_gpus: float
    batch_size: int
    concurrency: int | None
    custom: dict[str, float]


def size_stages(stages: list[Stage], cpus: float, gpus: float) -> tuple[float, list[StageRun]]:
    """(CPUs per task, one StageRun per stage) for a cluster with ``cpus`` and ``gpus``."""
    task_cpus = 1.0 if cpus >= 2 else max(cpus / 2, 0.1)
    actors = [s.execution == "actors" for s in stages]
    cpu_pools = [s for s, a in zip(stages, actors, strict=True) if a and not s.params.resources.num_gpus]
    gpu_pools = [s for s, a in zip(stages, actors, strict=True) if a and s.params.resources.num_gpus]
    # Half the CPUs go to actor pools, shared evenly; the rest stays with tasks.
    actor_cpus = min(1.0, cpus / (2 * max(1, len(cpu_pools))))
    pool_size = max(1, int((cpus / 2) / (max(1, len(cpu_pools)) * actor_cpus)))
    runs = []
    for s, actor in zip(stages, actors, strict=True):
        r = s.params.resources
        batch = r.batch_size if "batch_size" in r.model_fields_set else s.default_batch_size
        if not actor:
            runs.append(StageRun(r.num_cpus or task_cpus, 0, batch, None, r.custom))
        elif r.num_gpus:
            fit = max(1, int(gpus / r.num_gpus / max(1, len(gpu_pools)))) if gpus else 1
            runs.append(StageRun(r.num_cpus or min(1.0, actor_cpus), r.num_gpus, batch, r.concurrency or fit, r.custom))
        else:
            runs.append(StageRun(r.num_cpus or actor_cpus, 0, batch, r.concurrency or pool_size, r.custom))
    return task_cpus, runs
