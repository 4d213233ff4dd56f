"""Fast synthetic images for tests and demos: fundus-like vessel trees, aerial-like road grids and hands."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

__all__ = ["synthetic_vessel_image", "synthetic_roads", "synthetic_hand_image", "smooth_noise"]


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


# ----------------------------------------------------------------------------------------------------
# synthetic hands
# ----------------------------------------------------------------------------------------------------

_SKIN_DARK = np.array([62.0, 40.0, 30.0], np.float32)
_SKIN_LIGHT = np.array([242.0, 204.0, 180.0], np.float32)


def _skin_tone(rng: np.random.Generator) -> np.ndarray:
    """An RGB skin colour from very dark to very light (uniform along the range), with hue jitter."""
    t = rng.uniform(0.0, 1.0)
    col = _SKIN_DARK * (1 - t) + _SKIN_LIGHT * t
    col = col * np.array([1.0, rng.uniform(0.9, 1.05), rng.uniform(0.85, 1.1)], np.float32)
    return col + rng.normal(0, 6.0, 3).astype(np.float32)


def _rand_colour(rng: np.random.Generator, skin_prob: float = 0.0) -> tuple[int, int, int]:
    col = _skin_tone(rng) if rng.random() < skin_prob else rng.uniform(15, 240, 3)
    return tuple(int(c) for c in np.clip(col, 0, 255))


def _capsule(draw: ImageDraw.ImageDraw, p0, p1, w0: float, w1: float | None = None, fill=1) -> None:
    """A tapered capsule from ``p0`` (width ``w0``) to ``p1`` (width ``w1``) drawn as a polygon plus round caps."""
    w1 = w0 if w1 is None else w1
    (x0, y0), (x1, y1) = p0, p1
    d = np.hypot(x1 - x0, y1 - y0) + 1e-6
    nx, ny = -(y1 - y0) / d, (x1 - x0) / d
    poly = [
        (x0 + nx * w0 / 2, y0 + ny * w0 / 2),
        (x1 + nx * w1 / 2, y1 + ny * w1 / 2),
        (x1 - nx * w1 / 2, y1 - ny * w1 / 2),
        (x0 - nx * w0 / 2, y0 - ny * w0 / 2),
    ]
    draw.polygon(poly, fill=fill)
    for (x, y), r in (((x0, y0), w0 / 2), ((x1, y1), w1 / 2)):
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)


def _draw_hand(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int, s: int) -> tuple:
    """Draw one arm + hand (palm, four jointed fingers, thumb) entering from an image border.

    Returns ``(arm_start, wrist, direction, palm_radius)`` so that a sleeve can be drawn over the arm.
    """
    side = rng.choice(4, p=[0.55, 0.2, 0.2, 0.05])  # bottom, left, right, top
    u = rng.uniform(0.15, 0.85)
    start, inward = {
        0: ((u * w, h + 0.05 * s), -np.pi / 2),
        1: ((-0.05 * s, u * h), 0.0),
        2: ((w + 0.05 * s, u * h), np.pi),
        3: ((u * w, -0.05 * s), np.pi / 2),
    }[int(side)]
    ang = inward + rng.uniform(-0.6, 0.6)
    pr = rng.uniform(0.06, 0.12) * s  # palm half-width
    reach = rng.uniform(0.3, 0.75) * s
    wrist = (start[0] + np.cos(ang) * reach, start[1] + np.sin(ang) * reach)
    _capsule(draw, start, wrist, 1.9 * pr, 1.45 * pr)
    ang += rng.uniform(-0.5, 0.5)  # wrist bend
    ca, sa = np.cos(ang), np.sin(ang)
    centre = (wrist[0] + ca * 0.9 * pr, wrist[1] + sa * 0.9 * pr)
    t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
    a, b = 1.1 * pr * np.cos(t), pr * np.sin(t) * (1 + 0.15 * np.cos(t))  # along, across
    draw.polygon([(centre[0] + ca * x - sa * y, centre[1] + sa * x + ca * y) for x, y in zip(a, b)], fill=1)
    mirror = rng.choice([-1.0, 1.0])
    fist = rng.random() < 0.15
    spread = rng.uniform(0.05, 0.3)
    for k, (rel_len, off) in enumerate(zip((0.85, 1.0, 0.95, 0.72), (0.66, 0.22, -0.22, -0.62))):
        fa = ang + mirror * (1.5 - k) * spread + rng.normal(0, 0.06)
        bx = centre[0] + ca * 0.95 * pr - sa * mirror * off * pr
        by = centre[1] + sa * 0.95 * pr + ca * mirror * off * pr
        length = rel_len * pr * rng.uniform(1.5, 1.9) * (0.35 if fist else 1.0)
        width = 0.42 * pr * (0.85 if k == 3 else 1.0)
        curl = rng.uniform(-0.1, 0.6) * rng.choice([-1.0, 1.0])
        p = (bx, by)
        for seg, frac in enumerate((0.45, 0.3, 0.25)):
            q = (p[0] + np.cos(fa) * length * frac, p[1] + np.sin(fa) * length * frac)
            _capsule(draw, p, q, width * (1 - 0.08 * seg), width * (0.92 - 0.08 * seg))
            p, fa = q, fa + curl
    # thumb from the side of the palm, pointing outwards
    ta = ang + mirror * rng.uniform(0.6, 1.3)
    p = (
        centre[0] - ca * 0.3 * pr - sa * mirror * 0.8 * pr,
        centre[1] - sa * 0.3 * pr + ca * mirror * 0.8 * pr,
    )
    tl = pr * rng.uniform(1.1, 1.6) * (0.6 if fist else 1.0)
    for seg, frac in enumerate((0.55, 0.45)):
        q = (p[0] + np.cos(ta) * tl * frac, p[1] + np.sin(ta) * tl * frac)
        _capsule(draw, p, q, 0.55 * pr * (1 - 0.1 * seg), 0.48 * pr)
        p, ta = q, ta - mirror * rng.uniform(0.0, 0.4)
    return start, wrist, ang, pr


def _scene(rng: np.random.Generator, h: int, w: int, s: int) -> np.ndarray:
    """Background ``(H, W, 3)`` float: texture (noise, wood grain, stripes, keyboard) plus clutter objects."""
    kind = int(rng.integers(0, 4))
    c1, c2 = np.array(_rand_colour(rng, 0.3), np.float32), np.array(_rand_colour(rng, 0.2), np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if kind == 0:  # smooth two-colour texture
        t = smooth_noise(rng, (h, w), cell=int(rng.integers(6, 64)))
    elif kind == 1:  # wood grain / fabric stripes, distorted by noise
        ang, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        warp = smooth_noise(rng, (h, w), cell=48) * rng.uniform(0, 30)
        t = 0.5 + 0.5 * np.sin((xx * np.cos(ang) + yy * np.sin(ang) + warp) * 2 * np.pi / period)
    elif kind == 2:  # keyboard-like grid of keys
        pitch = rng.uniform(0.05, 0.1) * s
        gx, gy = (xx % pitch) / pitch, ((yy + (xx // pitch % 2) * pitch * 0.3) % pitch) / pitch
        t = ((gx > 0.12) & (gx < 0.88) & (gy > 0.12) & (gy < 0.88)).astype(np.float32)
    else:  # flat surface with a lighting falloff
        t = np.clip((xx / w) * rng.uniform(-1, 1) + (yy / h) * rng.uniform(-1, 1) + 0.5, 0, 1)
    img = c1 * (1 - t[..., None]) + c2 * t[..., None]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 9))):
        x, y = rng.uniform(-0.1, 1.0) * w, rng.uniform(-0.1, 1.0) * h
        sx, sy = rng.uniform(0.04, 0.4) * s, rng.uniform(0.04, 0.4) * s
        col = _rand_colour(rng, skin_prob=0.35)
        r = rng.random()
        if r < 0.4:
            d.rectangle([x, y, x + sx, y + sy], fill=col)
        elif r < 0.7:
            d.ellipse([x, y, x + sx, y + sy], fill=col)
        elif r < 0.85:  # sticks, cables, pens
            d.line([(x, y), (x + sx * rng.choice([-1, 1]), y + sy)], fill=col, width=int(rng.integers(2, 12)))
        else:
            pts = rng.uniform(0, 1, (int(rng.integers(3, 7)), 2)) * [sx, sy] + [x, y]
            d.polygon([tuple(p) for p in pts], fill=col)
    if rng.random() < 0.3:  # a face (skin, but not hand): hand-over-face scenes
        fx, fy, fr = rng.uniform(0.2, 0.8) * w, rng.uniform(0.15, 0.6) * h, rng.uniform(0.12, 0.25) * s
        skin = _rand_colour(rng, skin_prob=1.0)
        hair = _rand_colour(rng)
        d.ellipse([fx - 1.05 * fr, fy - 1.5 * fr, fx + 1.05 * fr, fy + 0.6 * fr], fill=hair)
        d.rectangle([fx - 0.4 * fr, fy + 0.8 * fr, fx + 0.4 * fr, fy + 2.5 * fr], fill=skin)  # neck
        d.ellipse([fx - 0.85 * fr, fy - 1.1 * fr, fx + 0.85 * fr, fy + 1.2 * fr], fill=skin)
        dark = tuple(int(c * 0.35) for c in skin)
        for ex in (-0.35, 0.35):
            d.ellipse(
                [fx + (ex - 0.12) * fr, fy - 0.25 * fr, fx + (ex + 0.12) * fr, fy - 0.1 * fr], fill=dark
            )
        d.line(
            [(fx - 0.3 * fr, fy + 0.6 * fr), (fx + 0.3 * fr, fy + 0.6 * fr)],
            fill=dark,
            width=max(1, int(fr / 10)),
        )
    return np.asarray(canvas, np.float32)


def _shade_skin(rng: np.random.Generator, mask: np.ndarray, skin: np.ndarray, s: int) -> np.ndarray:
    """Skin ``(H, W, 3)`` with texture, rounded-body Lambertian shading from ``mask`` and specular highlights."""
    h, w = mask.shape
    blur = ndimage.gaussian_filter(mask.astype(np.float32), sigma=0.03 * s)
    gy, gx = np.gradient(blur)
    norm = np.hypot(gx, gy) + 1e-3
    la = rng.uniform(0, 2 * np.pi)
    facing = -(gx * np.cos(la) + gy * np.sin(la)) / norm * np.clip(norm * 0.06 * s, 0, 1)  # in [-1, 1]
    rim = 0.6 + 0.4 * np.clip(
        ndimage.distance_transform_edt(mask) / (0.02 * s), 0, 1
    )  # darker at the outline
    diffuse = rim * (1.0 + rng.uniform(0.1, 0.35) * facing)
    tex = 0.9 + 0.2 * smooth_noise(rng, (h, w), cell=int(rng.integers(4, 16)))
    out = skin[None, None] * (diffuse * tex)[..., None]
    spec = np.clip(facing - 0.5, 0, 1) * blur * rng.uniform(0, 160)
    return out + spec[..., None]


def _degrade(rng: np.random.Generator, img: np.ndarray, s: int) -> np.ndarray:
    """Global lighting, colour cast, motion / defocus blur, camera noise and JPEG artefacts (uint8 out)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    ramp = 1.0 + rng.uniform(-0.35, 0.35) * (xx / w - 0.5) + rng.uniform(-0.35, 0.35) * (yy / h - 0.5)
    img = img * ramp[..., None] * rng.uniform(0.55, 1.25) * rng.uniform(0.85, 1.15, 3)
    if rng.random() < 0.35:  # motion blur along a random direction
        n = int(rng.integers(3, max(4, s // 25)))
        k = np.zeros((n, n), np.float32)
        a = rng.uniform(0, np.pi)
        for i in range(n):
            o = i - (n - 1) / 2
            k[int(round((n - 1) / 2 + o * np.sin(a))), int(round((n - 1) / 2 + o * np.cos(a)))] = 1
        img = np.stack([ndimage.convolve(img[..., c], k / k.sum(), mode="nearest") for c in range(3)], -1)
    elif rng.random() < 0.2:
        img = ndimage.gaussian_filter(img, sigma=(rng.uniform(0.5, 1.5),) * 2 + (0,))
    img = img + rng.normal(0, rng.uniform(1, 10), img.shape) * (1 + (img / 255.0 < 0.3))
    img = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(15, 90)))
        img = np.asarray(Image.open(buf).convert("RGB"))
    return img


def synthetic_hand_image(size: tuple[int, int] = (256, 256), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic scene with 1-3 arms and hands: ``image`` uint8 ``(H, W, 3)``, ``mask`` uint8 ``(H, W)`` in {0, 1}.

    Varies what makes real hands hard: skin tones from very dark to very light, lighting gradients, colour
    casts, cast shadows and specular highlights; arms entering from the border, sleeves, several hands,
    faces and skin-coloured clutter, objects occluding the hand; motion blur, JPEG artefacts and noise.
    The mask is visible skin of hands and forearms. ``size`` is ``(H, W)``; deterministic per ``seed``.
    """
    rng = np.random.default_rng(seed)
    h, w = size
    s = min(h, w)
    ss = 2  # supersampling for anti-aliased edges
    img = _scene(rng, h, w, s)
    layer = Image.new("L", (w * ss, h * ss), 0)
    draw = ImageDraw.Draw(layer)
    arms = [
        _draw_hand(draw, rng, h * ss, w * ss, s * ss)
        for _ in range(int(rng.choice(3, p=[0.6, 0.3, 0.1])) + 1)
    ]
    layer = layer.point(lambda v: 255 if v else 0)
    cover = Image.new("RGB", (w * ss, h * ss), 0)
    cover_mask = Image.new("L", (w * ss, h * ss), 0)
    cd, cm = ImageDraw.Draw(cover), ImageDraw.Draw(cover_mask)
    for start, wrist, _, pr in arms:
        if rng.random() < 0.6:  # sleeve from the border to part-way along the forearm
            f = rng.uniform(0.3, 0.85)
            end = (start[0] + (wrist[0] - start[0]) * f, start[1] + (wrist[1] - start[1]) * f)
            col = _rand_colour(rng, skin_prob=0.15)
            _capsule(cd, start, end, 2.4 * pr, 2.2 * pr, fill=col)
            _capsule(cm, start, end, 2.4 * pr, 2.2 * pr, fill=255)
    if rng.random() < 0.35:  # objects in front of the hand
        for _ in range(int(rng.integers(1, 3))):
            _, wrist, ang, pr = arms[int(rng.integers(len(arms)))]
            cx = wrist[0] + np.cos(ang) * pr * rng.uniform(0, 3) + rng.normal(0, pr)
            cy = wrist[1] + np.sin(ang) * pr * rng.uniform(0, 3) + rng.normal(0, pr)
            r = pr * rng.uniform(0.4, 1.2)
            col = _rand_colour(rng, skin_prob=0.1)
            box = [cx - r, cy - r * rng.uniform(0.3, 2), cx + r, cy + r * rng.uniform(0.3, 2)]
            rect = rng.random() < 0.5
            for d, fill in ((cd, col), (cm, 255)):
                (d.rectangle if rect else d.ellipse)(box, fill=fill)
    to = lambda im, mode=Image.BOX: np.asarray(im.resize((w, h), mode), np.float32)  # noqa: E731
    hand_a = to(layer) / 255.0
    cover_a = to(cover_mask) / 255.0
    hand_a = hand_a * (1 - cover_a)
    mask = hand_a > 0.5
    # cast shadow of hands and covers on the background
    if rng.random() < 0.6:
        dx, dy = rng.normal(0, 0.04 * s, 2)
        occ = np.clip(hand_a + cover_a, 0, 1)
        sh = ndimage.gaussian_filter(
            ndimage.shift(occ, (dy, dx), order=1), sigma=rng.uniform(1, 0.03 * s + 1)
        )
        img = img * (1 - rng.uniform(0.2, 0.6) * sh)[..., None]
    skin = _skin_tone(rng)
    img = img * (1 - hand_a[..., None]) + _shade_skin(rng, mask, skin, s) * hand_a[..., None]
    img = img * (1 - cover_a[..., None]) + to(cover) * cover_a[..., None]
    return _degrade(rng, img, s), mask.astype(np.uint8)
