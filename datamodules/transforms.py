"""Frame transforms between the reader's uint8 `(T, H, W, 3)` and a model's float `(T, C, H, W)`.

Resize, crop and normalise are separate steps so that a caller can cache any stage;
`VideoTransform` chains them from config values, and `siglip_preprocess` reproduces the SigLIP-384
image processor of LLaVA-OneVision's vision tower (384x384 bicubic; [0, 1]; mean = std = .5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
SIGLIP_SIZE = 384  # siglip-so400m-patch14-384: 27x27 patches of 14 px


def to_float(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 `(T, H, W, 3)` -> float32 `(T, 3, H, W)` in [0, 1]."""
    x = torch.as_tensor(frames)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {x.dtype} {tuple(x.shape)}")
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def resize(x: torch.Tensor, size: int | tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize float `(T, C, H, W)`; an int `size` sets the short side and keeps the aspect ratio.

    Antialiased like PIL, so that downscaling matches the image processors models were trained with;
    bicubic overshoot is clamped back to [0, 1]."""
    h, w = x.shape[-2:]
    if isinstance(size, int):
        scale = size / min(h, w)
        size = (max(round(h * scale), 1), max(round(w * scale), 1))
    if tuple(size) == (h, w):
        return x
    antialias = mode in ("bilinear", "bicubic")
    out = F.interpolate(x, size=tuple(size), mode=mode, antialias=antialias, align_corners=None)
    return out.clamp_(0.0, 1.0)


def center_crop(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Central `size` crop of `(..., H, W)`; raises if the frame is smaller than the crop."""
    ch, cw = (size, size) if isinstance(size, int) else size
    h, w = x.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"crop {ch}x{cw} is larger than the {h}x{w} frame")
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top : top + ch, left : left + cw]


def normalize(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(x - mean) / std per channel of `(T, C, H, W)`."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class VideoTransform:
    """uint8 `(T, H, W, 3)` frames -> normalised float `(T, 3, H, W)`: resize, crop, normalise."""

    resize: int | tuple[int, int] | None = 256  # int: short side; (h, w): exact size
    crop: int | tuple[int, int] | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def __call__(self, frames: np.ndarray | torch.Tensor, path: str | None = None) -> torch.Tensor:
        """`path` is accepted (and ignored) so a transform can serve as a loader's `prepare`."""
        x = to_float(frames)
        if self.resize is not None:
            x = resize(x, self.resize, self.interpolation)
        if self.crop is not None:
            x = center_crop(x, self.crop)
        return normalize(x, self.mean, self.std)


SIGLIP_TRANSFORM = VideoTransform(
    resize=(SIGLIP_SIZE, SIGLIP_SIZE), crop=None, mean=SIGLIP_MEAN, std=SIGLIP_STD
)


def siglip_preprocess(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """SigLIP-384 pixel values `(T, 3, 384, 384)` for the LLaVA-OneVision student's vision tower."""
    return SIGLIP_TRANSFORM(frames)
