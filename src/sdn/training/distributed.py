"""Data-parallel training across processes started by torchrun (or any launcher that sets the
usual RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT variables).

Every process holds the whole generator and the whole data set, walks the same fixed per-epoch
permutation and trains on its own slice of each global batch; after the backward pass the gradients
(and the loss terms, for logging) are summed across processes, so each process takes the same
optimiser step as one process with the whole batch would. Gradients are reduced here by hand rather
than by DistributedDataParallel so that a process whose slice is empty (the short last batch of an
epoch) can still take part, and so that the divergence guard sees the same global loss everywhere.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from sdn.errors import UserError
from sdn.utils import default_device


@dataclass(frozen=True)
class World:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and images."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def world_size_from_env() -> int:
    """The world size a launcher asked for, read before any process group exists (so that bad
    settings fail at once instead of after waiting for peers)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device: torch.device) -> World:
    """Join the process group the launcher described (gloo on CPU, NCCL on CUDA); a single process
    without launcher variables gets World() and touches nothing."""
    if dist.is_available() and dist.is_initialized():  # the caller (e.g. a test) made the group
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    if world_size_from_env() <= 1:
        return World()
    if not dist.is_available():
        raise UserError("this PyTorch build has no torch.distributed: train with one process")
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend)
    atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def local_device(device: str | None, world: World) -> torch.device:
    """Each process of a node on its own GPU (cuda:LOCAL_RANK) unless a device index was given."""
    dev = default_device(device)
    if dev.type == "cuda" and dev.index is None and world.distributed:
        dev = torch.device("cuda", world.local_rank)
    if dev.type == "cuda" and dev.index is not None:
        torch.cuda.set_device(dev)  # NCCL and all_gather_object use the current device
    return dev


def check_same_settings(settings: dict, world: World) -> None:
    """Every process must train the same thing: compare each one's settings with rank 0's and fail
    on all of them, with the keys that differ, if any process disagrees."""
    if not world.distributed:
        return
    gathered: list = [None] * world.world_size
    dist.all_gather_object(gathered, settings)
    reference = gathered[0]
    for rank, other in enumerate(gathered[1:], 1):
        differ = sorted(k for k in reference.keys() | other.keys() if reference.get(k) != other.get(k))
        if differ:
            shown = ", ".join(f"{k}={reference.get(k)!r} on rank 0 but {other.get(k)!r} on rank {rank}" for k in differ)
            raise UserError(f"the torchrun processes were started with different arguments: {shown}")


def shard(indices: torch.Tensor, global_batch: int, world: World) -> torch.Tensor:
    """This process's contiguous slice of one global batch. Slices are global_batch / world_size
    long, so a short last batch leaves the later ranks with fewer (possibly no) images."""
    per_rank = global_batch // world.world_size
    return indices[world.rank * per_rank : (world.rank + 1) * per_rank]


def sum_gradients(parameters, values: torch.Tensor) -> torch.Tensor:
    """Sum every parameter's gradient and `values` (a small vector of loss terms) over processes,
    in one flat buffer; missing gradients (an empty slice) count as zeros. Returns the summed values."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return values
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([values.float().flatten().to(params[0].device)] + [p.grad.flatten().float() for p in params])
    dist.all_reduce(flat)
    values = flat[: values.numel()].to(values.device)
    offset = values.numel()
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
        offset += n
    return values


def broadcast_parameters(module: torch.nn.Module, world: World) -> None:
    """Start every process from rank 0's weights and buffers (they agree already when the seeds do;
    this makes sure of it)."""
    if not world.distributed:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        buffer = t.data.contiguous()  # channels-last weights are not contiguous; the backends want them so
        dist.broadcast(buffer, 0)
        if buffer.data_ptr() != t.data.data_ptr():
            t.data.copy_(buffer)


def gather_objects(obj, world: World) -> list:
    """obj of every rank, in rank order (on every rank)."""
    if not world.distributed:
        return [obj]
    out: list = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
