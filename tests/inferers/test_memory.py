"""reuse_freed_memory: freed tensor memory is reused without page faults; opt-out leaves malloc alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from monai_rurnet.inferers.memory import _glibc, reuse_freed_memory

pytestmark = pytest.mark.skipif(_glibc() is None, reason="allocator tuning applies to glibc only")

_FAULTS = """
import resource, sys, torch
from monai_rurnet.inferers import freed_memory_reused, optimize_for_inference
from monai_rurnet.networks import build_network

optimize_for_inference(build_network("dru"), reuse_memory=sys.argv[1] == "reuse")
n = 25 * 2**18  # per round: three 25 MiB tensors allocated, touched and freed (75 MiB: above glibc's
faults = []     # largest automatic trim threshold, 64 MiB, so stock malloc hands them back every round)
for _ in range(6):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    tensors = [torch.empty(n).fill_(1.0) for _ in range(3)]
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    del tensors
print(freed_memory_reused(), sum(faults[3:]), 3 * 3 * n * 4 // 4096)
"""


def _run(mode: str) -> tuple[bool, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_FAULTS), mode], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1]), int(out[2])


def test_fast_predictor_reuses_freed_memory():
    reused, faults, pages = _run("reuse")
    assert reused
    # the last 3 rounds find the memory freed by the earlier ones in the heap: (almost) no page faults
    assert faults < pages // 10, f"{faults} page faults for {pages} pages re-allocated"


def test_opt_out_leaves_allocator_alone():
    reused, _, _ = _run("default")
    assert not reused


def test_reuse_freed_memory_validates():
    with pytest.raises(ValueError, match="keep_bytes"):
        reuse_freed_memory(-1)
