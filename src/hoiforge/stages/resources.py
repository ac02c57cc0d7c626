"""How a stage runs on Ray (batch size, pool size, GPUs, CPUs, custom resources): the recipe's ``resources:`` key."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Resources(BaseModel):
    """How a stage runs on Ray. Model stages are actor pools; cheap stages are tasks."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(16, ge=1)
    concurrency: int | None = Field(None, ge=1, description="actors in the pool; default: sized from the cluster")
    num_gpus: float = Field(0, ge=0)
    num_cpus: float | None = Field(None, gt=0, description="per task/actor; default: sized from the cluster")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources, e.g. {gpu_node: 1} to pin a stage to nodes")
