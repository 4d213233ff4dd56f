"""What every runner shares: the inputs of a folder as a MONAI dataset, and a robust, resumable run loop."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import Dataset
from tqdm import tqdm

from monai_rurnet.data.files import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_pixel_limit,
    output_is_complete,
    scan_inputs,
)
from monai_rurnet.data.guidance_io import GuidanceFiles
from monai_rurnet.engines.distributed import (
    init_distributed_from_env,
    rank_and_world,
    shard_spec,
    sum_across_ranks,
    take_shard,
)
from monai_rurnet.errors import root_cause
from monai_rurnet.inferers.memory import reuse_freed_memory
from monai_rurnet.networks.export import recurrent_info
from monai_rurnet.networks.guidance import check_binary
from monai_rurnet.utils import as_bool, clean_stale_temp_files, load_state_dict_file

__all__ = ["ImageFolderDataset", "SegmentationRunner"]

logger = logging.getLogger(__name__)


class ImageFolderDataset(Dataset):
    """The images of ``folder`` as ``{"image": path}`` items, through ``transform``.

    The folder is listed on first use (so a bundle config builds it without touching the disk) and again by
    :meth:`refresh`, which every runner's ``run()`` calls (:func:`~monai_rurnet.data.files.scan_inputs`).
    ``data`` is the list of untransformed items; ``refused`` maps the files that cannot be used (broken links,
    two files sharing a stem) to the reason, so that a runner reports them by name instead of dropping them.
    """

    def __init__(
        self, folder: str | Path, transform: Callable | None = None, suffixes: Sequence[str] = IMAGE_SUFFIXES
    ) -> None:
        self.folder = Path(folder)
        self.suffixes = tuple(s.lower() for s in suffixes)
        self.transform = transform
        self._data: list[dict[str, str]] | None = None
        self._refused: dict[Path, str] = {}

    def refresh(self) -> None:
        """List the folder (again: a runner kept in memory, e.g. by MONAI Label, sees new files)."""
        scan = scan_inputs(self.folder, self.suffixes)
        self._data = [{"image": str(p)} for p in scan.files]
        self._refused = scan.refused

    @property
    def data(self) -> list[dict[str, str]]:  # type: ignore[override]
        if self._data is None:
            self.refresh()
        return self._data

    @property
    def refused(self) -> dict[Path, str]:
        """Files of the folder that cannot be segmented, with the reason."""
        if self._data is None:
            self.refresh()
        return self._refused


class SegmentationRunner:
    """Segment every item of ``dataset`` into ``output_dir``; one bad input never stops the others.

    Subclasses implement :meth:`process` (one input, outputs written atomically by ``writer``, whose
    ``outputs(src, out_dir)`` names them). Inputs whose outputs all exist and read back as complete images are
    skipped unless ``overwrite`` (an interrupted run resumes); files the dataset refused (broken links, shared
    stems) and inputs over ``max_pixels`` fail by name while the others are segmented; a summary line is printed;
    ``SystemExit(1)`` at the end when any input failed and ``exit_on_failure``. Temp files of killed runs are
    cleaned only when their process is gone (:func:`~monai_rurnet.utils.clean_stale_temp_files`).

    Interactive refinement: with ``prior_dir`` and/or ``strokes_dir`` (attributes that may change between runs),
    an input that has a prior (``<stem>_prob.*`` or ``<stem>_seg.*``) or strokes (``<stem>_strokes.*``) there is
    segmented from that prior with the strokes enforced and honoured in its outputs
    (:mod:`monai_rurnet.data.guidance_io` lists the formats); the others run exactly as without. A missing
    folder, or a model that cannot be refined, stops the run before any work; a bad guidance file fails its
    input by name; guidance files of stems with no input are reported (a warning). An input whose outputs
    exist is redone, also without ``overwrite``, when one of its guidance files is newer than its ``_seg``
    output (new strokes).

    Sharding: ``num_parts``/``part_id`` and/or ``torchrun`` (``RANK``/``WORLD_SIZE``) give each process a disjoint,
    deterministic share of the inputs (:func:`~monai_rurnet.engines.shard_spec`); under ``torchrun`` the counts
    of every rank are summed and rank 0 prints the one summary line; every rank exits with 1 when any failed.

    Args:
        network: the segmentation network, put in eval mode on ``device`` with ``weights`` loaded
            (``torch.load(weights_only=True)``, strict).
        dataset: the inputs, ``{"image": path}`` items (e.g. :class:`ImageFolderDataset`).
        inferer: MONAI-style inferer called as ``inferer(batch, network)``, returning logits ``(B, K, *S)``.
        overwrite, progress: booleans, also as command-line text (true/false, yes/no, 1/0).
        max_pixels: inputs with more pixels are refused by name before they are decoded (``None``/0: no limit).
        num_parts, part_id: this process's share of the inputs (``None``: all, or the torchrun rank's share).
        reuse_memory: keep freed CPU memory for reuse for the whole run
            (:func:`~monai_rurnet.inferers.reuse_freed_memory`, process-wide, glibc only: 20-26% faster on large
            images on a 2-core CPU; the process keeps its peak working set).
        prior_dir, strokes_dir: folders of the priors and strokes of interactive refinement (``None``: none).
    """

    def __init__(
        self,
        network: torch.nn.Module,
        dataset: Dataset,
        inferer: Callable[..., torch.Tensor],
        output_dir: str | Path,
        writer: Any,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        overwrite: bool | str = False,
        foreground: int = 1,
        progress: bool | str = True,
        exit_on_failure: bool = True,
        reuse_memory: bool | str = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        num_parts: int | None = None,
        part_id: int | None = None,
        prior_dir: str | os.PathLike | None = None,
        strokes_dir: str | os.PathLike | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        if weights is not None:
            load_state_dict_file(weights, self.network)
        self.dataset = dataset
        self.inferer = inferer
        self.output_dir = Path(output_dir)
        self.writer = writer
        self.overwrite = as_bool(overwrite, "overwrite")
        self.foreground = foreground
        self.progress = as_bool(progress, "progress")
        self.exit_on_failure = exit_on_failure
        self.reuse_memory = as_bool(reuse_memory, "reuse_memory")
        self.max_pixels = int(max_pixels) if max_pixels else None
        self.num_parts, self.part_id = num_parts, part_id
        self.together = False  # set by run(): torchrun ranks work on each input together
        self.prior_dir, self.strokes_dir = prior_dir, strokes_dir
        shard_spec(num_parts, part_id)  # bad values fail before any work

    def guidance_files(self) -> GuidanceFiles:
        """The prior and stroke files of the current ``prior_dir`` / ``strokes_dir`` (missing folders raise)."""
        return GuidanceFiles(self.prior_dir, self.strokes_dir)

    def _check_guidance(self, guidance: GuidanceFiles) -> None:
        """Refinement needs a binary recurrent network with mask recurrence; warn of guidance without an input."""
        info = recurrent_info(self.network)
        if not info["recurrent"] or not info["mask_recurrence"]:
            raise ValueError(
                f"--prior_dir/--strokes_dir: interactive refinement steers the mask recurrence of a RecurrentUNet; "
                f"this model ({type(self.network).__name__}) has none."
            )
        check_binary(int(info["out_channels"]))
        orphans = guidance.orphans(Path(d["image"]).stem for d in self.dataset.data)
        if orphans and rank_and_world()[0] == 0:
            names = ", ".join(str(p) for p in orphans[:5]) + (" ..." if len(orphans) > 5 else "")
            message = f"{len(orphans)} prior/strokes file(s) match no input image and are ignored: {names}"
            logger.warning(message)
            print(f"WARNING: {message}", file=sys.stderr)

    def process(self, index: int) -> None:
        """Segment item ``index`` of the dataset and write its outputs."""
        raise NotImplementedError

    def _done(self, path: Path, guidance: GuidanceFiles) -> bool:
        outputs = self.writer.outputs(path, self.output_dir)
        if not all(output_is_complete(o) for o in outputs):
            return False
        if not guidance:
            return True
        try:
            newest = max((g.stat().st_mtime for g in guidance.paths(path.stem)), default=None)
        except ValueError:  # two stroke files: processing the input reports it
            return False
        return newest is None or newest <= outputs[0].stat().st_mtime

    def _todo(self, indices: Sequence[int]) -> tuple[list[int], int]:
        """Which of ``indices`` to process, and how many are skipped because their outputs are complete."""
        paths = [Path(d["image"]) for d in self.dataset.data]
        ours = {o.name for p in paths for o in self.writer.outputs(p, self.output_dir)}
        same_dir = {p.parent.resolve() for p in paths} == {self.output_dir.resolve()}
        guidance = self.guidance_files()
        guides = guidance.files_of(p.stem for p in paths) if guidance else set()
        todo, skipped = [], 0
        for i in indices:
            p = paths[i]
            if same_dir and p.name in ours:  # our own outputs in an output folder that is the input folder
                continue
            if p.resolve() in guides:  # another input's prior or strokes, in the input folder
                continue
            if not self.overwrite and self._done(p, guidance):
                skipped += 1
                continue
            todo.append(i)
        return todo, skipped

    def ranks_share_inputs(self, n_inputs: int, world: int) -> bool:
        """Whether all ``world`` torchrun ranks work on each input together (a runner that splits one input, such
        as the GeoTIFF runner for a few huge rasters) instead of sharing the inputs out; the base never does."""
        return False

    def _fail(self, path: Any, cause: BaseException | str) -> None:
        why = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        logger.error(f"FAILED {path}: {why}")
        if not self.together or rank_and_world()[0] == 0:
            print(f"FAILED {path}: {why}", file=sys.stderr)

    def run(self) -> dict[str, Any]:
        """Process this process's share of the inputs; returns ``{"done", "skipped", "failed", "seconds"}`` summed
        over every rank under torchrun."""
        if self.reuse_memory:
            reuse_freed_memory()
        if hasattr(self.dataset, "refresh"):
            self.dataset.refresh()
        distributed = init_distributed_from_env()
        guidance = self.guidance_files()
        if guidance:
            self._check_guidance(guidance)
        rank, world = rank_and_world()
        n_part = len(
            take_shard(range(len(self.dataset.data)), *shard_spec(self.num_parts, self.part_id, False))
        )
        self.together = distributed and world > 1 and self.ranks_share_inputs(n_part, world)
        part, parts = shard_spec(self.num_parts, self.part_id, use_ranks=not self.together)
        todo, skipped = self._todo(take_shard(range(len(self.dataset.data)), part, parts))
        refused = take_shard(sorted(getattr(self.dataset, "refused", {}).items()), part, parts)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        clean_stale_temp_files(self.output_dir)
        for path, why in refused:
            self._fail(path, why)
        done, failed = 0, len(refused)
        start = time.perf_counter()
        bar = self.progress and (not self.together or rank == 0)
        for i in tqdm(todo, desc="segmenting", unit="img", disable=not bar, file=sys.stderr):
            path = self.dataset.data[i]["image"]
            try:
                check_pixel_limit(path, self.max_pixels, "--max_pixels")
                self.process(i)
                done += 1
            except Exception as e:  # one bad file must not stop the others
                failed += 1
                self._fail(path, root_cause(e))
        seconds = time.perf_counter() - start
        counts = {"done": done, "skipped": skipped, "failed": failed}
        if not self.together:  # together, every rank saw every input: its own counts are the run's
            counts = sum_across_ranks(counts)
        summary = {**counts, "seconds": round(seconds, 2)}
        if rank == 0:
            share = f" (share {part + 1} of {parts})" if parts > 1 and not distributed else ""
            print(
                f"Summary: {counts['done']} images segmented, {counts['skipped']} skipped (outputs exist), "
                f"{counts['failed']} failed, {seconds:.1f} s -> {self.output_dir}{share}",
                flush=True,
            )
        if distributed:
            torch.distributed.barrier()
        if counts["failed"] and self.exit_on_failure:
            raise SystemExit(1)
        return summary
