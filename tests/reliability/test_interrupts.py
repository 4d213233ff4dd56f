"""Interrupted and failing runs: SIGKILLed training resumes, NaN stops cleanly, killed inference resumes, and
training is deterministic for a fixed seed. Each test runs the real bundle configs: the
runs that are killed in a subprocess, the others in this process (an interpreter start-up costs 5-10 s)."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from monai_rurnet.data import synthetic_vessel_image
from monai_rurnet.networks import RecurrentUNet

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "retina_drive"
TRAIN_CONFIG = f"['{BUNDLE / 'configs' / 'inference.json'}','{ROOT / 'configs' / 'train_base.json'}','{BUNDLE / 'configs' / 'train.json'}']"
INFERENCE_CONFIG = str(BUNDLE / "configs" / "inference.json")
NETWORK_ARGS = {"features": [4, 8, 16, 32, 64], "steps": 2}
#: the retina bundle's network (cell, level, ...) as its inference.json defines it
BUNDLE_NETWORK = {
    k: v for k, v in ConfigParser.load_config_file(INFERENCE_CONFIG)["network_def"].items() if k != "_target_"
}
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
TIMEOUT = 120


def _write_drive(root: Path, ids=(21, 22, 23, 24), size=(64, 64)) -> Path:
    """A DRIVE-like tree: training/images/NN_training.tif, 1st_manual/NN_manual1.gif, mask/NN_training_mask.gif."""
    for sub in ("images", "1st_manual", "mask"):
        (root / "training" / sub).mkdir(parents=True, exist_ok=True)
    for i in ids:
        img, lab, fov = synthetic_vessel_image(size, seed=i)
        Image.fromarray(img.transpose(1, 2, 0)).save(root / "training" / "images" / f"{i}_training.tif")
        # optimize=False keeps the grey palette, so the GIFs read back as mode L with 0/255 like the real DRIVE ones
        # (an optimized 2-colour GIF reads back as palette indices 0/1: see test_bad_inputs.py)
        Image.fromarray(lab * 255).save(root / "training" / "1st_manual" / f"{i}_manual1.gif", optimize=False)
        Image.fromarray(fov.astype(np.uint8) * 255).save(
            root / "training" / "mask" / f"{i}_training_mask.gif", optimize=False
        )
    return root


def _train_cmd(data: Path, work: Path, *extra: str, max_epochs: int = 6, val_interval: int = 2) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", TRAIN_CONFIG,
        "--bundle_root", str(BUNDLE),
        "--dataset_dir", str(data),
        "--train_ids", "[21, 22, 23]",
        "--val_ids", "[24]",
        "--max_epochs", str(max_epochs),
        "--val_interval", str(val_interval),
        "--patch_size", "[32, 32]",
        "--roi_size", "[32, 32]",
        "--num_samples", "2",
        "--network_def#features", repr(NETWORK_ARGS["features"]),
        "--network_def#steps", str(NETWORK_ARGS["steps"]),
        "--device", "$torch.device('cpu')",
        "--amp", "False",
        "--ckpt_dir", str(work / "models"),
        "--output_dir", str(work / "runs"),
        "--show_progress", "False",
        *extra,
    ]  # fmt: skip


def _train_inprocess(data: Path, work: Path, max_epochs: int, val_interval: int, **extra) -> None:
    """The same run as :func:`_train_cmd`, in this process (saves the ~5-10 s start-up of a subprocess)."""
    from monai.bundle import run

    run(
        config_file=[
            str(BUNDLE / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(BUNDLE / "configs" / "train.json"),
        ],
        bundle_root=str(BUNDLE),
        dataset_dir=str(data),
        train_ids=[21, 22, 23],
        val_ids=[24],
        max_epochs=max_epochs,
        val_interval=val_interval,
        patch_size=[32, 32],
        roi_size=[32, 32],
        num_samples=2,
        **{f"network_def#{k}": v for k, v in NETWORK_ARGS.items()},
        device="$torch.device('cpu')",
        amp=False,
        ckpt_dir=str(work / "models"),
        output_dir=str(work / "runs"),
        show_progress=False,
        **extra,
    )


def _kill_when(cmd: list[str], ready) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` is true; fail if it ends first."""
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + TIMEOUT
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(
                    f"run ended (rc {proc.returncode}) before it could be killed:\n{proc.stderr.read()[-3000:]}"
                )
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for the run to make progress")
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def _network() -> torch.nn.Module:
    """The bundle's network with the tests' small ``NETWORK_ARGS``."""
    return RecurrentUNet(**{**BUNDLE_NETWORK, **NETWORK_ARGS})


def _load_ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def drive(tmp_path_factory) -> Path:
    return _write_drive(tmp_path_factory.mktemp("data") / "DRIVE")


# ---------------------------------------------------------------------------------------------- training


def test_training_resumes_after_sigkill(drive, tmp_path, caplog, capsys):
    cmd = _train_cmd(drive, tmp_path)
    ckpt = tmp_path / "models" / "checkpoint.pt"
    _kill_when(cmd, ckpt.exists)
    killed_at = _load_ckpt(ckpt)  # the atomic write means the file is complete even though we killed the run
    assert 1 <= killed_at["epoch"] < 6, (
        f"killed too late (epoch {killed_at['epoch']}), the test proves nothing"
    )

    # rerun the same configuration (in this process, to save a second interpreter start-up)
    with caplog.at_level(logging.INFO, logger="monai_rurnet"):
        _train_inprocess(drive, tmp_path, max_epochs=6, val_interval=2)
    resumed = f"Resumed from {ckpt} at epoch {killed_at['epoch']}, iteration {killed_at['iteration']} "
    # the bundle's logging.conf (fileConfig) replaces the root handlers, so the line reaches stdout, not caplog
    assert resumed in caplog.text + capsys.readouterr().out
    final = _load_ckpt(ckpt)
    assert final["epoch"] == 6
    iters_per_epoch = killed_at["iteration"] // killed_at["epoch"]
    assert final["iteration"] == 6 * iters_per_epoch  # no epoch run twice, none skipped
    net = _network()
    net.load_state_dict(final["network"])  # still a loadable checkpoint of the configured network
    # the LR schedule continued from the saved state, not from scratch
    assert final["lr_scheduler"]["last_epoch"] == 6


NAN_AFTER_CALLS = 12  # 2 iterations/epoch x 2 recurrent steps: NaN from epoch 4 on
NAN_LOSS = (
    "$(lambda base, n=[0]: (lambda p, y: (n.__setitem__(0, n[0] + 1), "
    f"base(p, y) * (float('nan') if n[0] > {NAN_AFTER_CALLS} else 1.0))[1]))"
    "(monai.losses.DiceCELoss(to_onehot_y=True, softmax=True))"
)


def test_nan_loss_stops_with_clear_error_and_keeps_checkpoint(drive, tmp_path):
    with pytest.raises(RuntimeError) as e:  # the bundle's ConfigExpression wraps the handler's error
        _train_inprocess(drive, tmp_path, max_epochs=6, val_interval=100, step_loss=NAN_LOSS)
    root = e.value
    while root.__cause__ is not None:
        root = root.__cause__
    assert isinstance(root, FloatingPointError), repr(root)
    msg = str(root)
    m = re.match(r"Training loss became nan at epoch (\d+), iteration (\d+); stopping\.", msg)
    assert m, msg
    ckpt = tmp_path / "models" / "checkpoint.pt"
    assert f"The last good checkpoint is kept at {ckpt}." in msg
    state = _load_ckpt(ckpt)
    assert state["epoch"] == int(m.group(1)) - 1 >= 1  # the last completed epoch before the NaN
    assert int(m.group(2)) > state["iteration"]
    net = _network()
    net.load_state_dict(state["network"])
    assert all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point())


def test_training_is_deterministic_for_a_seed(drive, tmp_path):
    states = []
    for run in ("a", "b"):
        _train_inprocess(drive, tmp_path / run, max_epochs=2, val_interval=100)
        states.append(_load_ckpt(tmp_path / run / "models" / "checkpoint.pt")["network"])
    a, b = states
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"weights differ between two runs with the same seed: {different[:5]}"
    init = _network().state_dict()
    assert any(not torch.equal(a[k], init[k]) for k in a)  # and the runs actually trained


# ---------------------------------------------------------------------------------------------- inference


def _summary(log: str) -> tuple[int, int, int]:
    m = re.search(r"Summary: (\d+) images segmented, (\d+) skipped \(outputs exist\), (\d+) failed", log)
    assert m, log[-3000:]
    return int(m.group(1)), int(m.group(2)), int(m.group(3))


def test_inference_killed_mid_folder_resumes(tmp_path, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    n = 6
    for i in range(n):
        img, _, _ = synthetic_vessel_image((80, 88), seed=100 + i)
        Image.fromarray(img.transpose(1, 2, 0)).save(src / f"img{i}.png")
    parser_net = RecurrentUNet(**BUNDLE_NETWORK)
    weights = tmp_path / "model.pt"
    torch.save(parser_net.state_dict(), weights)  # matches inference.json's network_def
    cmd = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", INFERENCE_CONFIG,
        "--bundle_root", str(BUNDLE),
        "--dataset_dir", str(src),
        "--output_dir", str(out),
        "--model_file", str(weights),
        "--device", "$torch.device('cpu')",
        "--progress", "False",
    ]  # fmt: skip

    _kill_when(cmd, lambda: out.is_dir() and any(out.glob("*_seg.png")))
    finished = sorted(out.glob("*_seg.png"))
    assert 1 <= len(finished) < n, f"killed too late ({len(finished)} of {n} done), the test proves nothing"
    for p in out.iterdir():
        if not p.name.startswith("."):  # temp files are hidden; every visible output is complete
            with Image.open(p) as im:
                im.load()
                assert im.size == (88, 80), p

    from monai.bundle import run

    kwargs = dict(
        config_file=INFERENCE_CONFIG,
        bundle_root=str(BUNDLE),
        dataset_dir=str(src),
        output_dir=str(out),
        model_file=str(weights),
        device="$torch.device('cpu')",
        progress=False,
    )
    run(**kwargs)  # the same run again, in this process
    done, skipped, failed = _summary(capsys.readouterr().out)
    assert (done, skipped, failed) == (n - len(finished), len(finished), 0)
    for i in range(n):
        for kind in ("seg", "prob", "overlay"):
            with Image.open(out / f"img{i}_{kind}.png") as im:
                im.load()
                assert im.size == (88, 80)
    seg = np.asarray(Image.open(out / "img0_seg.png"))
    assert seg.dtype == np.uint8 and set(np.unique(seg)) <= {0, 255}

    run(**kwargs, overwrite=True)
    assert _summary(capsys.readouterr().out) == (n, 0, 0)
