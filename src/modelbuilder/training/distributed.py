"""Data-parallel training: the few collective operations the loop needs, and nothing when alone.

Launched by `torch.distributed.run` (torchrun: RANK, WORLD_SIZE, LOCAL_RANK in the environment) or
by Ray Train, every process runs the same engine. Rank 0 is the one that reports, evaluates,
checkpoints and exports; the others train their share of each batch and follow its decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

# Codes rank 0 broadcasts each step: go on, or why every rank stops now.
CONTINUE, CANCEL, PREEMPT, BUDGET = 0, 1, 2, 3
STOP_CODES = {CANCEL: "cancel", PREEMPT: "preempt", BUDGET: "time_budget"}
STOP_NAMES = {name: code for code, name in STOP_CODES.items()}


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    def shard(self, items: Any) -> Any:
        """This rank's share of a global batch (the same global batch as a single process would use)."""
        return items[self.rank :: self.world] if self.enabled else items

    def sum(self, values: list[float]) -> list[float]:
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def decide(self, code: int) -> int:
        """Rank 0's stop code, known to every rank (one tiny collective per step)."""
        if not self.enabled:
            return code
        tensor = torch.tensor([code if self.main else 0], dtype=torch.int64)
        dist.broadcast(tensor, src=0)
        return int(tensor.item())

    def share(self, value: Any) -> Any:
        """A Python object of rank 0, given to every rank."""
        if not self.enabled:
            return value
        box = [value if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


def from_environment() -> Dist:
    """The process group of a torchrun/Ray launch, set up on first use; a single process otherwise."""
    if dist.is_available() and dist.is_initialized():  # set up by the launcher (Ray Train does this)
        return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend)
    return Dist(rank, world, local_rank)


def shutdown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
