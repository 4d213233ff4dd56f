"""Weight averaging (``--ema_decay``) and the clDice term (``--cldice_weight``) in the shared trainer."""

from __future__ import annotations

import pytest
import torch

from monai_rurnet.engines import WeightAverage
from tests.reliability.test_interrupts import _load_ckpt, _network, _train_inprocess, _write_drive


def test_off_by_default_is_the_network_itself():
    net = torch.nn.Linear(2, 1)
    avg = WeightAverage(net)
    assert avg.evaluated is net and avg.averaged is None and avg.state_dict() == {}


def test_average_follows_the_weights_with_decay():
    net = torch.nn.Linear(1, 1, bias=False)
    avg = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(2.0)
        avg.update()  # the first update copies the weights
        net.weight.fill_(4.0)
        avg.update()  # 0.5 * 2 + 0.5 * 4
    assert avg.evaluated is not net
    assert avg.evaluated.weight.item() == pytest.approx(3.0)
    restored = WeightAverage(torch.nn.Linear(1, 1, bias=False), decay=0.5)
    restored.load_state_dict(avg.state_dict())
    assert restored.evaluated.weight.item() == pytest.approx(3.0)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_bad_decay_says_what_is_allowed(decay):
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        WeightAverage(torch.nn.Linear(1, 1), decay=decay)


def test_training_validates_and_saves_the_average_and_resumes_it(tmp_path):
    """A run with ``ema_decay`` and ``cldice_weight``: the best model is the average (not the raw weights), the
    checkpoint holds both, and a resumed run continues the average from the checkpoint."""
    data = _write_drive(tmp_path / "DRIVE")
    options = {"ema_decay": 0.9, "cldice_weight": 0.3}
    _train_inprocess(data, tmp_path, max_epochs=2, val_interval=1, **options)
    ckpt = _load_ckpt(tmp_path / "models" / "checkpoint.pt")
    averaged = {k.removeprefix("module."): v for k, v in ckpt["averaged"].items() if k.startswith("module.")}
    assert int(ckpt["averaged"]["n_averaged"]) == ckpt["iteration"]
    best = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    _network().load_state_dict(best)  # a plain state_dict of the network
    raw = ckpt["network"]
    assert any(not torch.equal(averaged[k], raw[k]) for k in raw if raw[k].is_floating_point())
    if ckpt["best_metric_epoch"] == ckpt["epoch"]:  # saved at the last epoch: exactly the average of then
        assert all(torch.equal(best[k], averaged[k]) for k in best)

    _train_inprocess(data, tmp_path, max_epochs=3, val_interval=1, **options)
    resumed = _load_ckpt(tmp_path / "models" / "checkpoint.pt")
    assert int(resumed["averaged"]["n_averaged"]) == resumed["iteration"] > ckpt["iteration"]
