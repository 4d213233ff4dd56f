"""Flags and numbers of the shared trainer (on the command line ``--flag false`` arrives as a string)."""

from __future__ import annotations

from pathlib import Path

import pytest
from ignite.handlers import ProgressBar
from monai.bundle import ConfigParser

ROOT = Path(__file__).resolve().parents[2]


def _progress_bar(show_progress):
    parser = ConfigParser()
    parser.read_config(
        [
            str(ROOT / "bundles" / "retina_drive" / "configs" / "inference.json"),
            str(ROOT / "configs" / "train_base.json"),
            str(ROOT / "bundles" / "retina_drive" / "configs" / "train.json"),
        ]
    )
    parser.update({"bundle_root": str(ROOT / "bundles" / "retina_drive"), "show_progress": show_progress})
    index = next(
        i for i, h in enumerate(parser["train"]["handlers"]) if h["_target_"].endswith("ProgressBar")
    )
    return parser.get_parsed_content(f"train#handlers#{index}")


@pytest.mark.parametrize(
    "value,shown", [(True, True), (False, False), ("false", False), ("True", True), (0, False)]
)
def test_show_progress(value, shown):
    bar = _progress_bar(value)
    assert isinstance(bar, ProgressBar) if shown else bar is None


def test_show_progress_rejects_other_values():
    with pytest.raises(RuntimeError) as info:  # MONAI's config error, caused by ours
        _progress_bar("sometimes")
    assert "show_progress" in str(info.value.__cause__)


@pytest.mark.parametrize("workers,persistent", [(0, False), (3, True)])
def test_loader_workers_persist_between_epochs(workers, persistent):
    """Worker processes are started once, not at every (short) epoch; none without workers (PyTorch's rule)."""
    parser = ConfigParser()
    parser.read_config([str(ROOT / "configs" / "train_base.json")])
    parser["num_workers"] = workers
    assert parser.get_parsed_content("train#dataloader#persistent_workers") is persistent


@pytest.mark.parametrize("precision,dtype", [("float32", None), ("bfloat16", "bfloat16")])
def test_train_precision(precision, dtype):
    """``--train_precision bfloat16`` runs the training forward passes under autocast; float32 by default."""
    from monai_rurnet.inferers import AutocastInferer

    parser = ConfigParser()
    parser.read_config([str(ROOT / "configs" / "train_base.json")])
    assert parser["train_precision"] == "float32"
    parser["train_precision"] = precision
    inferer = parser.get_parsed_content("train#inferer")
    assert isinstance(inferer, AutocastInferer)
    assert (inferer.dtype is None) if dtype is None else str(inferer.dtype) == f"torch.{dtype}"


def test_interaction_options_reach_the_simulation():
    """The ``--interaction_*`` options configure ``StrokeInteraction``."""
    parser = ConfigParser()
    parser.read_config([str(ROOT / "configs" / "train_base.json")])
    assert parser["interaction_prior_modes"] == ["constant", "prediction", "corrupted"]
    parser.update(
        {
            "interaction_prob": 0.7,
            "interaction_max_strokes": 4,
            "interaction_degrade_prob": 0.8,
            "interaction_prior_modes": ["prediction"],
            "interaction_focus_weight": 2.0,
        }
    )
    sim = parser.get_parsed_content("train#interaction")
    assert (sim.prob, sim.max_strokes, sim.degrade_prob, sim.prior_modes) == (0.7, 4, 0.8, ("prediction",))
    assert sim.focus_weight == 2.0
