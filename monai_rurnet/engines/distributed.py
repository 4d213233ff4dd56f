"""Distributed helpers: orderly shutdown of a torchrun training process, and sharding of inference inputs across
``--num_parts`` processes and/or torchrun ranks."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "shutdown_distributed",
    "shard_spec",
    "take_shard",
    "init_distributed_from_env",
    "sum_across_ranks",
]

T = TypeVar("T")

# attributes through which a DistributedDataParallel wrapper keeps its process group alive
_DDP_COMM_STATE = ("reducer", "logger", "process_group")


def shutdown_distributed(network: torch.nn.Module | None = None) -> None:
    """Wait for every rank, release ``network``'s hold on the process group, then destroy the group.

    A ``DistributedDataParallel`` wrapper's reducer keeps a reference to the process group, so
    ``destroy_process_group`` alone leaves the gloo group alive until the interpreter tears the wrapper
    down at exit, where its worker threads abort the process ("terminate called without an active
    exception", SIGABRT) in about one run of ten. Dropping the wrapper's communication state first
    frees the group while the interpreter is still alive. The wrapper cannot train after this call;
    its ``module`` is untouched. A no-op when no process group is initialised.

    Args:
        network: the ``DistributedDataParallel`` model (any other module, or None, is left alone).
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.barrier()
    if isinstance(network, torch.nn.parallel.DistributedDataParallel):
        for name in _DDP_COMM_STATE:
            network.__dict__.pop(name, None)
        gc.collect()
    dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer") from None


def shard_spec(
    num_parts: int | str | None = None, part_id: int | str | None = None, use_ranks: bool = True
) -> tuple[int, int]:
    """``(part, parts)``: which share of the inputs this process takes.

    ``--num_parts N --part_id i`` split the inputs into N shares (as nnU-Net does); under ``torchrun`` each
    rank takes its own share of that part (``RANK``/``WORLD_SIZE`` from the environment), so the global share
    is ``part_id * world_size + rank`` of ``num_parts * world_size``. Without both, ``(0, 1)``: everything.
    ``use_ranks=False`` ignores torchrun (every rank takes the part's share, e.g. to split each input further).
    Raises ``ValueError`` naming the option for a bad value.
    """
    parts = 1 if num_parts is None or num_parts == "" else num_parts
    part = 0 if part_id is None or part_id == "" else part_id
    try:
        parts, part = int(parts), int(part)
    except (TypeError, ValueError):
        raise ValueError(
            f"--num_parts and --part_id must be integers, got {num_parts!r} and {part_id!r}"
        ) from None
    if parts < 1:
        raise ValueError(f"--num_parts must be at least 1, got {parts}")
    if not 0 <= part < parts:
        raise ValueError(f"--part_id must lie in 0..{parts - 1} for --num_parts {parts}, got {part}")
    world, rank = (_env_int("WORLD_SIZE", 1), _env_int("RANK", 0)) if use_ranks else (1, 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun environment RANK={rank}, WORLD_SIZE={world} is inconsistent")
    return part * world + rank, parts * world


def take_shard(items: Sequence[T], part: int, parts: int) -> list[T]:
    """Every ``parts``-th item from ``part`` on: disjoint, deterministic shares that cover ``items`` and differ in
    size by at most one (``items`` should be sorted so that every process sees the same order)."""
    return list(items[part::parts])


def init_distributed_from_env() -> bool:
    """Join the torchrun process group (gloo on CPU, NCCL with CUDA) when ``WORLD_SIZE`` > 1 and none is
    initialised yet; returns whether a process group is active."""
    if not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    if _env_int("WORLD_SIZE", 1) <= 1:
        return False
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return True


def sum_across_ranks(counts: Mapping[str, int]) -> dict[str, int]:
    """Integer counts summed over every rank of the process group (unchanged without one)."""
    if not (dist.is_available() and dist.is_initialized()):
        return dict(counts)
    keys = sorted(counts)
    t = torch.tensor([int(counts[k]) for k in keys], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return {k: int(v) for k, v in zip(keys, t.tolist())}


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the process group, ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_ranks_ok(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank (a collective: every rank must call it); ``ok`` without a group."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(ok)
    t = torch.tensor([1 if ok else 0], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
