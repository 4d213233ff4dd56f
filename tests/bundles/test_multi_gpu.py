"""multi_gpu_train: torchrun + DDP + DistributedSampler runs on a CPU-only machine with the gloo backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_rurnet.utils import load_state_dict_file
from tests.reliability.test_interrupts import ENV, ROOT, _network, _train_cmd, _write_drive

MULTI = (
    f"['{ROOT / 'bundles' / 'retina_drive' / 'configs' / 'inference.json'}','{ROOT / 'configs' / 'train_base.json'}','{ROOT / 'bundles' / 'retina_drive' / 'configs' / 'train.json'}',"
    + (
        f"'{ROOT / 'configs' / 'multi_gpu_train_base.json'}','{ROOT / 'bundles' / 'retina_drive' / 'configs' / 'multi_gpu_train.json'}']"
    )
)


@pytest.mark.timeout(300)
def test_two_process_gloo_training(tmp_path: Path):
    data = _write_drive(tmp_path / "DRIVE")
    cmd = _train_cmd(data, tmp_path / "work", max_epochs=2, val_interval=1)
    cmd[cmd.index("--config_file") + 1] = MULTI
    cmd[cmd.index("--train_ids") + 1] = "[21, 22]"
    cmd[cmd.index("--val_ids") + 1] = "[23, 24]"  # the validation sampler splits images over the 2 ranks
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(torchrun + cmd[1:], env=ENV, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "work" / "models" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2, proc.stdout[-2000:]
    # rank 0 writes weights without the DistributedDataParallel "module." prefix
    load_state_dict_file(tmp_path / "work" / "models" / "model.pt", _network())


def test_shutdown_distributed_releases_the_group(monkeypatch: pytest.MonkeyPatch):
    import torch.distributed as dist

    from monai_rurnet.engines import shutdown_distributed
    from monai_rurnet.label import free_port

    shutdown_distributed(torch.nn.Linear(2, 2))  # no process group: a no-op
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 4))
        net(torch.randn(2, 4)).sum().backward()
        shutdown_distributed(net)
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():  # do not leave a group behind for the other tests if the call failed
            dist.destroy_process_group()
    assert not any(hasattr(net, name) for name in ("reducer", "logger", "process_group"))
    assert net.module.weight.grad is not None  # the wrapped model is untouched
