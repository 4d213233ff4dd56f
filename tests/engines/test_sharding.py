"""Sharding of inference inputs: --num_parts/--part_id and torchrun ranks give disjoint shares that cover all."""

from __future__ import annotations

import os
import socket

import pytest
import torch.multiprocessing as mp

from monai_rurnet.engines import init_distributed_from_env, shard_spec, sum_across_ranks, take_shard


@pytest.fixture
def no_torchrun(monkeypatch):
    for k in ("RANK", "WORLD_SIZE"):
        monkeypatch.delenv(k, raising=False)


@pytest.mark.parametrize("n_items, parts", [(10, 3), (2, 5), (7, 1), (0, 2)])
def test_num_parts_shares_are_disjoint_and_cover(no_torchrun, n_items, parts):
    items = [f"img{i:03d}.png" for i in range(n_items)]
    shares = [take_shard(items, *shard_spec(parts, i)) for i in range(parts)]
    flat = [x for s in shares for x in s]
    assert sorted(flat) == items and len(flat) == len(set(flat))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    assert shares == [take_shard(items, *shard_spec(str(parts), str(i))) for i in range(parts)]  # CLI strings


def test_torchrun_ranks_split_each_part(monkeypatch):
    items = list(range(23))
    seen = []
    for part in range(2):
        for rank in range(3):
            monkeypatch.setenv("WORLD_SIZE", "3")
            monkeypatch.setenv("RANK", str(rank))
            seen += take_shard(items, *shard_spec(2, part))
    assert sorted(seen) == items


@pytest.mark.parametrize(
    "num_parts, part_id, match",
    [(0, 0, "at least 1"), (2, 2, r"0\.\.1"), (2, -1, r"0\.\.1"), ("two", 0, "integers")],
)
def test_bad_shard_options_are_named(no_torchrun, num_parts, part_id, match):
    with pytest.raises(ValueError, match=match):
        shard_spec(num_parts, part_id)


def test_single_process_counts_unchanged(no_torchrun):
    assert not init_distributed_from_env()
    assert sum_across_ranks({"done": 2, "failed": 1}) == {"done": 2, "failed": 1}


def _rank_main(rank: int, port: int, out) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist

    assert init_distributed_from_env()
    out.put(sum_across_ranks({"done": rank + 1, "failed": rank}))
    dist.barrier()
    dist.destroy_process_group()


def test_counts_summed_over_two_gloo_ranks():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    mp.start_processes(_rank_main, args=(port, out), nprocs=2, join=True, start_method="spawn")
    results = [out.get(timeout=30) for _ in range(2)]
    assert results == [{"done": 3, "failed": 1}] * 2
