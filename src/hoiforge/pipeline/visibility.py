"""Before a cluster build writes anything: is OUT the same folder on every node?

Shard writers run on any node and commit by rename into OUT, and finalize on the driver reads
what they wrote. If a node sees its own local folder under OUT's path (the shared filesystem is
not mounted there), its shards silently land on that node's disk. So the driver writes a probe
file into OUT and one task per alive node reads it back; a node that cannot is named in one
OutputError before any input is read.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from hoiforge.errors import OutputError

TIMEOUT_S = 120


def nodes_not_seeing(probe: Path, token: str) -> list[str]:
    """Addresses of the alive nodes on which ``probe`` does not hold ``token``."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    @ray.remote(num_cpus=0, max_retries=0)
    def reads(path: str) -> str | None:
        try:
            return Path(path).read_text()
        except OSError:
            return None

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    pending = [reads.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(probe)) for n in nodes]
    seen = ray.get(pending, timeout=TIMEOUT_S)
    return [n.get("NodeManagerAddress", n["NodeID"]) for n, got in zip(nodes, seen, strict=True) if got != token]


def check_out_visible(shards: Path) -> None:
    """OutputError unless every alive node sees ``shards`` (OUT/shards) as the driver does."""
    token = uuid.uuid4().hex
    probe = shards / f".tmp-visible-{token}"  # ".tmp-": a killed run's probe is cleaned like any temp file
    probe.write_text(token)
    try:
        blind = nodes_not_seeing(probe, token)
    finally:
        probe.unlink(missing_ok=True)
    if blind:
        out = shards.parent
        raise OutputError(
            f"{out} is not the same folder on every node: {len(blind)} node(s) ({', '.join(blind[:5])}) do not see what the "
            f"driver wrote there. Mount the shared filesystem at {out} on every node (ray_cluster.yaml mounts /mnt/shared) "
            "or choose an --out under it"
        )
