"""Is there anything in the image under the errors the simulated annotator strokes? (issue 26)

For each image and condition of ``benchmarks/interactive.py`` (DRIVE as is, degraded camera), the retina bundle's
first result (its runner: flips, FOV rescaling) is split into error components as the annotator splits them
(:func:`monai_rurnet.data.strokes.error_components`), and for the ``--largest`` largest *missed* components (what
the first foreground strokes land on) this prints:

- their contrast-to-noise ratio in the green channel, ``(mean(ring) - mean(vessel)) / std(ring)`` with the ring
  the pixels 2-4 px around the component inside the FOV that are not vessel in the label (vessels are darker than
  their surround: > 0);
- the same for the vessels the model found (true positives), as the reference of a visible vessel;
- the median vessel probability of the first result on them.

A component with a CNR near 0 has no vessel contrast that a model (or a person) could follow from a stroke:
a stroke there can fix its own pixels, not bring the vessel back.

    python benchmarks/stroke_evidence.py --model bundles/retina_drive/models/model.pt --ids 37,38,39,40
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from interactive import CONDITIONS
from robustness_drive import BUNDLE, ROOT, build_runner, drive_triple, predict_file
from scipy import ndimage

from monai_rurnet.data.strokes import error_components


def contrast_to_noise(green: np.ndarray, mask: np.ndarray, background: np.ndarray) -> float:
    """Green-channel CNR of ``mask`` against the ``background`` pixels 2-4 px around it; > 0: darker than around."""
    ring = (
        ndimage.binary_dilation(mask, iterations=4)
        & ~ndimage.binary_dilation(mask, iterations=1)
        & background
    )
    if not mask.any() or not ring.any():
        return float("nan")
    return float((green[ring].mean() - green[mask].mean()) / (green[ring].std() + 1e-6))


def image_evidence(
    prob: np.ndarray, label: np.ndarray, fov: np.ndarray, green: np.ndarray, largest: int
) -> dict:
    """CNR of the found vessels, and CNR and median probability of the ``largest`` largest missed components."""
    comps, sizes = error_components(prob >= 0.5, label, None, fov)
    missed = [k + 1 for k in np.argsort(-sizes, kind="stable") if label[comps == k + 1].any()][:largest]
    found = (prob >= 0.5) & label & fov
    background = fov & ~label
    return {
        "found_cnr": contrast_to_noise(green, found, background),
        "missed_cnr": [contrast_to_noise(green, comps == k, background) for k in missed],
        "missed_prob": [float(np.median(prob[comps == k])) for k in missed],
        "missed_px": [int(sizes[k - 1]) for k in missed],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(BUNDLE / "models" / "model.pt"), help="retina_drive state_dict")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "DRIVE"))
    ap.add_argument("--ids", default="37,38,39,40", help="DRIVE training ids")
    ap.add_argument("--largest", type=int, default=5, help="missed components per image (the first strokes)")
    args = ap.parse_args()
    data = Path(args.data) / "training"
    lines = [
        "| condition | CNR of found vessels | CNR of the largest missed components | their median probability |",
        "|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        runner = build_runner(args.model, True, work)
        for cond, fn in CONDITIONS.items():
            rows = []
            for i in (int(v) for v in args.ids.split(",")):
                img, lab, fov = fn(drive_triple(data, i))
                src = work / f"{i}.png"
                img.save(src)
                green = np.asarray(img, dtype=np.float64)[..., 1]
                label, fov_mask = np.asarray(lab) > 127, np.asarray(fov) > 127
                ev = image_evidence(predict_file(runner, src), label, fov_mask, green, args.largest)
                rows.append(ev)
                print(cond, i, {k: np.round(v, 3).tolist() for k, v in ev.items()}, flush=True)
            found = np.nanmean([r["found_cnr"] for r in rows])
            missed = np.nanmean([c for r in rows for c in r["missed_cnr"]])
            prob = np.median([p for r in rows for p in r["missed_prob"]])
            lines.append(f"| {cond} | {found:.2f} | {missed:.2f} | {prob:.3f} |")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
