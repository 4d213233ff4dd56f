"""Camera-appearance augmentations: hue/saturation shifts and JPEG compression artefacts (at any scale).

Both act on a channel-first RGB image with intensities in ``[0, 1]`` (after ``ScaleIntensityRanged``) and
return a float tensor of the same shape; they are meant to run before any standardisation.
"""

from __future__ import annotations

import io
import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type
from PIL import Image as PILImage

__all__ = ["RandHueSaturationd", "RandJPEGd"]

# RGB <-> YIQ (NTSC): Y carries luminance, the I/Q plane carries chroma; a rotation of that plane shifts hue
# and a scaling of it changes saturation, leaving luminance alone.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)


class _RandImageTransformd(RandomizableTransform, MapTransform):
    """Draws the random parameters once per call, then applies :meth:`_apply` to every key; the result is a
    float32 tensor of the input's type (a ``MetaTensor`` keeps its metadata)."""

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def _apply(self, img: torch.Tensor, key: Hashable) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for key in self.key_iterator(d):
                img = d[key] if isinstance(d[key], torch.Tensor) else torch.as_tensor(np.asarray(d[key]))
                d[key] = convert_to_dst_type(self._apply(img, key), dst=img, dtype=torch.float32)[0]
        return d


class RandHueSaturationd(_RandImageTransformd):
    """Randomly rotate hue by up to ``hue`` radians and scale saturation by a factor in ``saturation``.

    Implemented as one 3x3 colour matrix (RGB -> YIQ, rotate/scale the chroma plane, back), so luminance is
    kept; the result is clipped to ``[0, 1]``.

    Args:
        keys: image keys, each ``(3, H, W)`` in ``[0, 1]``.
        prob: probability of applying the shift.
        hue: maximum absolute hue rotation in radians.
        saturation: ``(min, max)`` saturation factor.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        hue: float = 0.3,
        saturation: Sequence[float] = (0.6, 1.4),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.hue = float(hue)
        self.saturation = (float(saturation[0]), float(saturation[1]))
        self._matrix = torch.eye(3)

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        theta = self.R.uniform(-self.hue, self.hue)
        s = self.R.uniform(*self.saturation)
        c, n = s * math.cos(theta), s * math.sin(theta)
        chroma = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -n], [0.0, n, c]])
        self._matrix = _YIQ2RGB @ chroma @ _RGB2YIQ

    def _apply(self, img: torch.Tensor, key: Hashable) -> torch.Tensor:
        if img.dim() != 3 or img.shape[0] != 3:
            raise ValueError(
                f"RandHueSaturationd: '{key}' must be a channel-first RGB image (3, H, W), got {tuple(img.shape)}."
            )
        return torch.einsum("ij,jhw->ihw", self._matrix.to(img.device), img.float()).clamp_(0.0, 1.0)


class RandJPEGd(_RandImageTransformd):
    """Randomly JPEG-compress an image at a quality drawn from ``quality`` (as saving to JPEG would).

    With ``zoom`` below 1, the image is compressed at a smaller scale drawn from ``zoom``: resized down
    (area averaging), JPEG-compressed, resized back to its size (bicubic) -- a picture published as a smaller
    JPEG and upsampled again (the Massachusetts Roads test tiles exist only as 1024x1024 JPEGs of the 1500x1500
    originals).

    Args:
        keys: image keys, each ``(3, H, W)`` or ``(1, H, W)`` in ``[0, 1]``.
        prob: probability of applying the compression.
        quality: ``(min, max)`` JPEG quality (1..95).
        zoom: ``(min, max)`` scale at which the image is compressed, in ``(0, 1]``; ``(1, 1)``: its own size.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.1,
        quality: Sequence[int] = (20, 90),
        zoom: Sequence[float] = (1.0, 1.0),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        lo, hi = int(quality[0]), int(quality[1])
        if not 1 <= lo <= hi <= 95:
            raise ValueError(f"RandJPEGd: quality range must satisfy 1 <= min <= max <= 95, got {quality}.")
        zlo, zhi = float(zoom[0]), float(zoom[1])
        if not 0.0 < zlo <= zhi <= 1.0:
            raise ValueError(f"RandJPEGd: zoom range must satisfy 0 < min <= max <= 1, got {zoom}.")
        self.quality = (lo, hi)
        self.zoom = (zlo, zhi)
        self._q = hi
        self._z = zhi

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self._q = int(self.R.randint(self.quality[0], self.quality[1] + 1))
            if self.zoom != (1.0, 1.0):  # leaves the random stream of the plain transform as it was
                self._z = float(self.R.uniform(*self.zoom))

    def _apply(self, img: torch.Tensor, key: Hashable) -> torch.Tensor:
        if img.dim() != 3 or img.shape[0] not in (1, 3):
            raise ValueError(f"RandJPEGd: '{key}' must be (1|3, H, W), got {tuple(img.shape)}.")
        x = img.detach().float().cpu()
        size = tuple(x.shape[1:])
        small = tuple(max(8, round(s * self._z)) for s in size)
        if small != size:
            x = F.interpolate(x[None], size=small, mode="area")[0]
        arr = (x.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
        pil = PILImage.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0))
        buf = io.BytesIO()
        pil.save(buf, format="JPEG", quality=self._q)
        buf.seek(0)
        arr = np.asarray(PILImage.open(buf).convert(pil.mode), dtype=np.float32) / 255.0
        back = torch.from_numpy(np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)))
        if small == size:
            return back
        return F.interpolate(back[None], size=size, mode="bicubic", align_corners=False)[0].clamp_(0.0, 1.0)
