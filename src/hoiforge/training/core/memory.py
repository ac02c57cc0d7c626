"""Per-device memory of a training stage, from models built on the meta device (``hoiforge train ... --dry-run``).

Shapes only, no weights and no accelerator: parameters are counted, and the activations are
MEASURED by running one forward at the per-device batch on the meta device and summing every
tensor autograd saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``), in the
dtype the stage computes in. Under gradient checkpointing the checkpointed blocks save only their
inputs, so the count drops the way it does on a GPU. What the count does not see, and is added as
stated constants (ours): the CUDA context and library workspaces, the recomputed block and
allocator fragmentation (``MARGIN``), and attention: on the meta device torch's scaled-dot-product
attention takes its math path, which saves the attention matrix; the flash / memory-efficient
kernels a GPU runs do not, so the figure is an upper bound for attention-heavy models.

Per device, with an Adam/AdamW optimizer and mixed precision by autocast (trainable weights stay
fp32 masters): trainable weights 4 B + gradients 4 B + optimizer state 8 B per parameter, DDP's
gradient buckets 4 B more when several processes train, frozen weights in the compute dtype.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from hoiforge.training.core.batch_plan import BatchPlan
from hoiforge.training.core.config import ConfigError

GIB = 2**30
CONTEXT_BYTES = int(1.5 * GIB)  # (ours) CUDA context + cuBLAS/cuDNN workspaces, as nvidia-smi shows for an idle torch process
MARGIN = 0.10  # (ours) allocator fragmentation and the one block recomputed at a time under checkpointing
COMPUTE_DTYPE = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_memory(text: str) -> int:
    """'80GB', '80 GiB', '141G', '24576MB' -> bytes (GB and GiB both read as 2^30: what GPU spec sheets mean)."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([GgMmTt])(?:i?[Bb])?\s*", str(text))
    if not m:
        raise ConfigError(f"--gpu-memory {text!r} is not a size such as 80GB or 40960MB")
    return int(float(m.group(1)) * {"m": 2**20, "g": GIB, "t": 2**40}[m.group(2).lower()])


def count(modules: Iterable[nn.Module], trainable: bool | None = None) -> int:
    """Parameters of ``modules`` (shared ones once); only those with requires_grad == ``trainable`` unless None."""
    seen: dict[int, int] = {}
    for module in modules:
        for p in module.parameters():
            if trainable is None or p.requires_grad == trainable:
                seen[id(p)] = p.numel()
    return sum(seen.values())


def saved_activation_bytes(forward: Callable[[], object], modules: Iterable[nn.Module]) -> int:
    """Bytes of the tensors autograd saves while ``forward()`` runs (parameters excluded: they are counted as weights)."""
    params = {id(p) for m in modules for p in m.parameters()}
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        base = t._base if t._base is not None else t
        if id(base) not in params and id(t) not in params:
            saved[id(base)] = max(saved.get(id(base), 0), base.numel() * base.element_size())
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(saved.values())


@dataclass
class StagePlan:
    """One stage's memory on one device (bytes)."""

    name: str
    plan: BatchPlan
    params_total: int
    params_trainable: int
    weights: int
    grads: int
    optimizer: int
    ddp_buckets: int
    activations: int
    mixed_precision: str
    gradient_checkpointing: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        counted = self.weights + self.grads + self.optimizer + self.ddp_buckets + self.activations
        return int(counted * (1 + MARGIN)) + CONTEXT_BYTES

    def fits(self, gpu_bytes: int) -> bool:
        return self.total <= gpu_bytes

    def lines(self, gpu_bytes: int, gpu_label: str) -> list[str]:
        p = self.plan
        verdict = f"fits {gpu_label}" if self.fits(gpu_bytes) else f"does NOT fit {gpu_label}"
        out = [
            f"{self.name}: {p.describe()}",
            f"  parameters: {self.params_total / 1e6:.1f}M total, {self.params_trainable / 1e6:.1f}M trainable",
            f"  weights {gib(self.weights)} + grads {gib(self.grads)} + optimizer state {gib(self.optimizer)}"
            + (f" + DDP buckets {gib(self.ddp_buckets)}" if self.ddp_buckets else ""),
            f"  activations {gib(self.activations)} at {p.per_device_batch} per device "
            "(measured: tensors saved for backward by one meta-device forward; attention by the math path, an upper bound)",
            f"  gradient checkpointing {'on' if self.gradient_checkpointing else 'off'}, mixed precision {self.mixed_precision}",
            f"  per device: {gib(self.total)} (incl. {MARGIN:.0%} margin + {gib(CONTEXT_BYTES)} CUDA context) -> {verdict}",
        ]
        return out + [f"  note: {n}" for n in self.notes]


def gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB"


def stage_plan(
    name: str,
    plan: BatchPlan,
    trainable: Mapping[str, nn.Module],
    frozen: Mapping[str, nn.Module],
    forward: Callable[[], object],
    mixed_precision: str,
    gradient_checkpointing: bool,
    notes: list[str] | None = None,
) -> StagePlan:
    """The plan of one stage whose modules were built on the meta device; ``forward()`` runs one per-device batch.

    The trainable modules must already have ``requires_grad`` set as the trainer sets it; the frozen
    ones are cast to the compute dtype here, as the training core casts them.
    """
    dtype = COMPUTE_DTYPE[mixed_precision]
    n_train = count(trainable.values(), trainable=True)
    n_total = count([*trainable.values(), *frozen.values()])
    n_frozen = n_total - n_train
    if gradient_checkpointing:
        for module in (*trainable.values(), *frozen.values()):
            if hasattr(module, "enable_gradient_checkpointing"):
                module.enable_gradient_checkpointing()
    for module in trainable.values():
        module.train()
    for module in frozen.values():
        module.eval().requires_grad_(False)
    modules = [*trainable.values(), *frozen.values()]
    if dtype != torch.float32:
        # Autocast computes in the low dtype; on the meta device the modules are cast instead (the saved tensors' dtype).
        for module in modules:
            module.to(dtype)
    activations = saved_activation_bytes(forward, modules)
    return StagePlan(
        name=name,
        plan=plan,
        params_total=n_total,
        params_trainable=n_train,
        weights=4 * n_train + dtype.itemsize * n_frozen,
        grads=4 * n_train,
        optimizer=8 * n_train,
        ddp_buckets=4 * n_train if plan.world_size > 1 else 0,
        activations=activations,
        mixed_precision=mixed_precision,
        gradient_checkpointing=gradient_checkpointing,
        notes=list(notes or []),
    )
