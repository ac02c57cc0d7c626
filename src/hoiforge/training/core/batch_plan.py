"""A global batch split over devices: per-device batch x world size x gradient accumulation.

The papers state global batches (VirtualModel 256/128 and SW 128 on 8 GPUs, WD 16 on 4, LpS 240
and 4096), so every hoiforge config's ``batch_size`` is the global batch. How it is reached
depends on how many processes ``accelerate launch`` started and how many samples one device
holds (``per_device_batch``, sized with ``hoiforge train ... --dry-run``): the per-device batch
is the largest divisor of the per-process share that fits the limit, and gradient accumulation
makes up the rest. A global batch that no split reaches exactly is refused before training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from hoiforge.errors import HoiforgeError


class BatchPlanError(HoiforgeError):
    """A global batch that cannot be split over the devices."""


@dataclass(frozen=True)
class BatchPlan:
    global_batch: int
    world_size: int
    per_device_batch: int
    accumulation_steps: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"global batch {self.global_batch} = {self.per_device_batch} per device x {self.world_size} device(s) "
            f"x {self.accumulation_steps} accumulation step(s)"
        )


def plan_batch(global_batch: int, world_size: int, per_device_limit: int | None = None) -> BatchPlan:
    """The per-device batch and accumulation steps that make ``global_batch`` on ``world_size`` processes,
    each device holding at most ``per_device_limit`` samples (None: no limit); BatchPlanError otherwise."""
    if global_batch < 1 or world_size < 1:
        raise BatchPlanError(f"a batch plan needs a global batch and a world size of at least 1 (got {global_batch}, {world_size})")
    if per_device_limit is not None and per_device_limit < 1:
        raise BatchPlanError(f"per_device_batch must be at least 1, not {per_device_limit}")
    if global_batch % world_size:
        raise BatchPlanError(
            f"global batch {global_batch} cannot be split over {world_size} processes (not a multiple); "
            f"choose a batch_size divisible by {world_size} or launch another number of processes"
        )
    share = global_batch // world_size
    limit = share if per_device_limit is None else min(share, per_device_limit)
    per_device = max(d for d in range(1, limit + 1) if share % d == 0)
    return BatchPlan(global_batch, world_size, per_device, share // per_device)


def world_size() -> int:
    """Processes of this run as accelerate sees them (1 without ``accelerate launch``)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return int(PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU")).num_processes)
