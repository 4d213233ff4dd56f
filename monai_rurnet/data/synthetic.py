"""Fast synthetic images for tests and demos: fundus-like vessel trees and aerial-like road grids."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = ["synthetic_vessel_image", "synthetic_roads", "smooth_noise"]


def smooth_noise(rng: np.random.Generator, size: tuple[int, int], cell: int = 32) -> np.ndarray:
    """Low-frequency noise in ``[0, 1]`` of shape ``size`` (bilinear upsampling of a coarse random grid)."""
    h, w = size
    gh, gw = max(2, h // cell + 2), max(2, w // cell + 2)
    coarse = Image.fromarray((rng.random((gh, gw)) * 255).astype(np.uint8))
    up = coarse.resize((w, h), Image.BILINEAR)
    return np.asarray(up, dtype=np.float32) / 255.0


def _draw_tree(draw, rng, x, y, angle, width, length, depth, max_depth) -> None:
    """Draw a tapering random branching curve on a PIL ``draw`` (label canvas)."""
    steps = int(rng.integers(6, 12))
    seg = length / steps
    for s in range(steps):
        angle += rng.normal(0.0, 0.18)
        nx, ny = x + seg * np.cos(angle), y + seg * np.sin(angle)
        wdt = max(1, int(round(width * (1.0 - 0.35 * s / steps))))
        draw.line([(x, y), (nx, ny)], fill=1, width=wdt)
        if wdt > 2:
            r = wdt / 2.0
            draw.ellipse([nx - r, ny - r, nx + r, ny + r], fill=1)
        x, y = nx, ny
        if depth < max_depth and s in (steps // 3, 2 * steps // 3) and rng.random() < 0.8:
            side = rng.choice([-1.0, 1.0])
            _draw_tree(
                draw,
                rng,
                x,
                y,
                angle + side * rng.uniform(0.4, 1.0),
                width * 0.7,
                length * 0.6,
                depth + 1,
                max_depth,
            )
    if depth < max_depth:
        _draw_tree(
            draw, rng, x, y, angle + rng.uniform(-0.5, 0.5), width * 0.75, length * 0.7, depth + 1, max_depth
        )


def synthetic_vessel_image(
    size: tuple[int, int] = (584, 565), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fundus-like image with a branching, tapering vessel tree inside a circular FOV.

    Returns ``image`` uint8 ``(3, H, W)`` (black outside the FOV), ``label`` uint8 ``(H, W)`` in {0, 1}
    (zero outside the FOV) and ``fov`` bool ``(H, W)``. ``size`` is ``(H, W)``.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    cy, cx = h / 2.0, w / 2.0
    radius = 0.47 * min(h, w)
    yy, xx = np.ogrid[:h, :w]
    r2 = (yy - cy) ** 2 + (xx - cx) ** 2
    fov = r2 <= radius**2

    # optic disc on one side; vessel arcades leave from it
    side = rng.choice([-1.0, 1.0])
    dx, dy = cx + side * radius * rng.uniform(0.35, 0.5), cy + rng.uniform(-0.1, 0.1) * radius
    lab_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(lab_img)
    scale = min(h, w) / 584.0
    base = 0.0 if side < 0 else np.pi
    for a in (-1.1, -0.45, 0.45, 1.1):
        ang = base + a + rng.normal(0, 0.1)
        _draw_tree(draw, rng, dx, dy, ang, rng.uniform(7, 10) * scale, radius * 0.55, 0, 3)
    label = (np.asarray(lab_img) > 0) & fov

    # background: reddish with vignetting, low-frequency texture, bright optic disc, dark fovea
    vign = 1.0 - 0.45 * (r2 / radius**2)
    tex = smooth_noise(rng, (h, w), cell=48)
    disc = np.exp(-(((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * (0.09 * radius) ** 2)))
    fx, fy = cx - side * radius * 0.1, cy
    fovea = np.exp(-(((yy - fy) ** 2 + (xx - fx) ** 2) / (2 * (0.12 * radius) ** 2)))
    lum = np.clip(vign * (0.85 + 0.15 * tex) + 0.5 * disc - 0.2 * fovea, 0, 1.3)
    soft = ndimage.uniform_filter(label.astype(np.float32), size=3)
    contrast = rng.uniform(0.3, 0.45)
    lum = lum * (1.0 - contrast * soft)
    colour = np.array([0.85, 0.42, 0.2], dtype=np.float32) * 255
    img = lum[None] * colour[:, None, None] + rng.normal(0, 3.0, (3, h, w))
    img = np.clip(img, 0, 255) * fov[None]
    return img.astype(np.uint8), label.astype(np.uint8), fov


def synthetic_roads(
    size: tuple[int, int] = (512, 512), seed: int = 0, void_corner: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Aerial-like textured image with a grid-ish road network (widths ~6-12 px).

    Returns ``image`` uint8 ``(3, H, W)`` and ``label`` uint8 ``(H, W)`` in {0, 1}. With
    ``void_corner`` a white (255, 255, 255) triangle marks a void corner (label 0 there).
    """
    rng = np.random.default_rng(seed)
    h, w = size
    lab_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(lab_img)
    for horizontal in (True, False):
        n = int(rng.integers(2, 5))
        span = h if horizontal else w
        pos = np.sort(rng.uniform(0.1, 0.9, n)) * span
        for p in pos:
            slope = rng.normal(0, 0.12)
            wdt = int(rng.integers(6, 13))
            if horizontal:
                pts = [(0, p), (w / 2, p + slope * w / 2 + rng.normal(0, 8)), (w, p + slope * w)]
            else:
                pts = [(p, 0), (p + slope * h / 2 + rng.normal(0, 8), h / 2), (p + slope * h, h)]
            draw.line(pts, fill=1, width=wdt, joint="curve")
    label = np.asarray(lab_img) > 0

    # background: green/brown fields, colour blobs, buildings, noise
    tex = smooth_noise(rng, (h, w), cell=64)
    fine = smooth_noise(rng, (h, w), cell=6)
    g1 = np.array([70, 95, 55], np.float32)
    g2 = np.array([130, 120, 90], np.float32)
    t = (0.6 * tex + 0.4 * fine)[None]
    img = g1[:, None, None] * (1 - t) + g2[:, None, None] * t
    bimg = Image.new("RGB", (w, h), 0)
    bd = ImageDraw.Draw(bimg)
    for _ in range(int(rng.integers(10, 30))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(5, 20)
        col = tuple(int(c) for c in rng.integers(60, 200, 3))
        bd.rectangle([x0, y0, x0 + s, y0 + s * rng.uniform(0.6, 1.6)], fill=col)
    b = np.asarray(bimg).transpose(2, 0, 1).astype(np.float32)
    has_b = b.sum(0, keepdims=True) > 0
    img = np.where(has_b, b, img)
    road_col = rng.uniform(90, 140) + rng.normal(0, 4, (3, 1, 1))
    img = np.where(label[None], road_col + 10 * fine[None], img)
    img = img + rng.normal(0, 4.0, (3, h, w))
    img = np.clip(img, 0, 254)
    if void_corner:
        yy, xx = np.ogrid[:h, :w]
        void = (xx / w + yy / h) > 1.6
        img = np.where(void[None], 255.0, img)
        label = label & ~void
    return img.astype(np.uint8), label.astype(np.uint8)
