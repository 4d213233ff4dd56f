"""Input discovery, pixel limits, output checks and temp-file cleanup: hostile folders are named, never guessed."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from PIL import Image

from monai_rurnet.data.files import check_pixel_limit, image_size, output_is_complete, scan_inputs
from monai_rurnet.utils import atomic_path, atomic_write, clean_stale_temp_files


def _png(path, shape=(20, 24, 3)):
    Image.fromarray(np.zeros(shape, np.uint8)).save(path)
    return path


def test_same_stem_files_are_refused_naming_both(tmp_path):
    a, b, c = _png(tmp_path / "a.png"), _png(tmp_path / "a.tif"), _png(tmp_path / "c.png")
    scan = scan_inputs(tmp_path)
    assert scan.files == [c]
    assert set(scan.refused) == {a, b}
    assert all("a.png" in why and "a.tif" in why for why in scan.refused.values())


def test_broken_links_are_named(tmp_path):
    good = _png(tmp_path / "good.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "gone.png")
    (tmp_path / "loop1.png").symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(tmp_path / "loop1.png")
    (tmp_path / "link.png").symlink_to(good)
    scan = scan_inputs(tmp_path)
    assert scan.files == [good, tmp_path / "link.png"]
    assert "dangling" in scan.refused[tmp_path / "dangling.png"]
    assert "loop" in scan.refused[tmp_path / "loop1.png"]


def test_missing_or_empty_folder_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "none")):
        scan_inputs(tmp_path / "none")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match="no input images"):
        scan_inputs(tmp_path)


def test_pixel_limit_reads_the_header_only(tmp_path):
    # a tiny file that decodes to 9000x9000: refused by its header, with size and limit
    p = tmp_path / "bomb.png"
    Image.new("L", (9000, 9000)).save(p, optimize=True)
    assert p.stat().st_size < 200_000
    assert image_size(p) == (9000, 9000)
    with pytest.raises(
        ValueError, match=r"bomb\.png: image of 9000x9000 = 81\.0 megapixels .* limit of 40\.0"
    ):
        check_pixel_limit(p, 40_000_000)
    check_pixel_limit(p, 100_000_000)
    check_pixel_limit(p, None)


def test_pixel_limit_of_a_declared_huge_geotiff(tmp_path):
    p = tmp_path / "huge.tif"
    with rasterio.open(
        p,
        "w",
        driver="GTiff",
        width=100000,
        height=100000,
        count=1,
        dtype="uint8",
        tiled=True,
        sparse_ok=True,
    ):
        pass
    with pytest.raises(ValueError, match=r"huge\.tif: image of 100000x100000"):
        check_pixel_limit(p, 1_000_000_000, "--max_pixels")


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_zero_byte_or_truncated_outputs_are_not_complete(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(good)
    assert output_is_complete(good)
    empty = tmp_path / f"empty{suffix}"
    empty.write_bytes(b"")
    assert not output_is_complete(empty)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert not output_is_complete(cut)
    assert not output_is_complete(tmp_path / f"missing{suffix}")


def test_temp_files_are_ours_and_only_dead_runs_are_cleaned(tmp_path):
    user_files = [tmp_path / ".thesis.tmp.docx", tmp_path / ".a.png.tmp", tmp_path / "b.tmp.png"]
    for f in user_files:
        f.write_text("user data")
    # a temp file of a process that is gone, and one of a process that still runs
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with atomic_path(tmp_path / "x.png") as mine:
            name = os.path.basename(mine)
            stale = tmp_path / name.replace(f"-{os.getpid()}-", f"-{dead_pid}-")
            running = tmp_path / name.replace(f"-{os.getpid()}-", f"-{alive.pid}-")
            stale.write_text("partial")
            running.write_text("being written")
            removed = clean_stale_temp_files(tmp_path)
            assert removed == [stale]
            assert os.path.exists(mine) and running.exists()
            open(mine, "w").write("done")
    finally:
        alive.kill()
    assert all(f.read_text() == "user data" for f in user_files)
    assert (tmp_path / "x.png").read_text() == "done"


def test_failed_write_leaves_nothing(tmp_path):
    def fail(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.png", fail)
    assert list(tmp_path.iterdir()) == []
