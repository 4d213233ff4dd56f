"""reuse_freed_memory: an explicit option of the runners (building a predictor leaves malloc alone); freed tensor
memory is then reused without page faults; opt-out leaves malloc alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from monai_rurnet.inferers.memory import _glibc, reuse_freed_memory

pytestmark = pytest.mark.skipif(_glibc() is None, reason="allocator tuning applies to glibc only")

_FAULTS = """
import resource, sys, tempfile, numpy as np, torch
from PIL import Image
from monai_rurnet.inferers import TorchFastPredictor, freed_memory_reused
from monai_rurnet.networks import build_network
from monai_rurnet.runners import FolderSegmentationRunner, ImageFolderDataset

TorchFastPredictor(build_network("dru"))
assert not freed_memory_reused(), "building a predictor must not tune the allocator"
folder = tempfile.mkdtemp()
Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder + "/a.png")
dataset = ImageFolderDataset(folder, lambda d: {"image": torch.zeros(3, 32, 32)})
FolderSegmentationRunner(
    build_network("dru"), dataset, lambda x, net: torch.zeros(1, 2, 32, 32), folder + "/out", progress=False,
    reuse_memory=sys.argv[1] == "reuse",
).run()
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
    ).stdout.split()[-3:]  # after the runner's summary line
    return out[0] == "True", int(out[1]), int(out[2])


def test_runner_reuses_freed_memory():
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
