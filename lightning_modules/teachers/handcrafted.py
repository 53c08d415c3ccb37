"""The hand-crafted picture and motion statistics of the supervised weak teacher (`regressor`).

11 numbers from one decode, each a mean over frames: the classical teachers' signals (blur, noise,
blockiness, luma entropy, frozen transitions; imported from `classical`) plus sharpness (log
variance of the Laplacian), spatial information (mean Sobel magnitude), RMS contrast, brightness,
colourfulness and temporal information (mean absolute luma difference of consecutive frames).
NIQE is left out: its features cost more than all the others together and did not raise SRCC on
the sample corpus. Also the pooling of per-frame features over time, shared with deep features.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from skimage.measure import blur_effect

from lightning_modules.teachers.classical import (
    _at_most,
    blockiness,
    frozen_fraction,
    luma,
    luma_entropy,
    noise_sigma,
)

HANDCRAFTED = (
    "blur",  # Crete-Roffet blur annoyance, as the `blur` teacher
    "noise",  # Immerkaer noise sigma, as the `noise` teacher
    "blockiness",  # 8-px grid step ratio, as the `blockiness` teacher
    "entropy",  # luma histogram entropy, as the `exposure` teacher
    "sharpness",  # log(1 + variance of the Laplacian) (Pech-Pacheco et al., ICPR 2000)
    "spatial_info",  # mean Sobel gradient magnitude (P.910's SI uses its std)
    "contrast",  # RMS contrast: std of luma
    "brightness",  # mean luma
    "colourfulness",  # Hasler & Suesstrunk, Proc. SPIE 5007, 2003
    "temporal_info",  # mean |luma difference| of consecutive frames
    "frozen",  # fraction of frozen transitions, as the `stutter` teacher
)
TEMPORAL_HEIGHT = 90  # rows the consecutive run is downscaled to: motion survives, codec noise not
BLUR_MAX_HEIGHT = 720


def colourfulness(frame: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness of one uint8 RGB frame `(H, W, 3)` (0: grey)."""
    rgb = frame.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _blur(y: np.ndarray) -> float:
    # as the `blur` teacher: h_size 11, taller frames downscaled first for speed
    return blur_effect(_at_most(y, BLUR_MAX_HEIGHT) / np.float32(255), h_size=11)


def _spatial_features(frame: np.ndarray, y: np.ndarray) -> list[float]:
    """HANDCRAFTED features 2-9 of one frame and its float32 luma."""
    gradient = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    return [
        noise_sigma(y),  # noise and blockiness at the stored resolution, as their teachers
        blockiness(y),
        luma_entropy(y),
        math.log1p(float(cv2.Laplacian(y, cv2.CV_32F).var())),
        float(gradient.mean()),
        float(y.std()),
        float(y.mean()),
        colourfulness(frame),
    ]


def handcrafted_features(spread: np.ndarray, run: np.ndarray) -> np.ndarray:
    """HANDCRAFTED features `(11,)` of uint8 frames spread over a video `(T, H, W, 3)` and a run
    of consecutive ones `(R, H, W, 3)`."""
    ys = luma(spread)  # (T, H, W)
    # Blur on every other frame: the costliest feature (5 ms a 320x180 frame, half the total)
    # and the steadiest along a clip.
    blur = float(np.mean([_blur(y) for y in ys[::2]]))
    spatial = np.mean([_spatial_features(f, y) for f, y in zip(spread, ys, strict=True)], axis=0)
    h, w = run.shape[1:3]
    if h > TEMPORAL_HEIGHT:  # area-downscale RGB first: 4x less luma to compute at 180 rows
        size = (max(1, round(w * TEMPORAL_HEIGHT / h)), TEMPORAL_HEIGHT)
        run = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in run])
    moving = luma(run)  # (R, h, w)
    ti = float(np.abs(np.diff(moving, axis=0)).mean()) if len(moving) > 1 else 0.0
    return np.array([blur, *spatial, ti, frozen_fraction(moving)], dtype=np.float64)


def pooled(per_frame: np.ndarray) -> np.ndarray | Exception:
    """Frame features `(T, D)` -> their mean and std over time `(2D,)`."""
    try:
        return finite(np.concatenate([per_frame.mean(0), per_frame.std(0)]).astype(np.float64))
    except Exception as err:  # e.g. a cache file of another shape: this video fails, not all
        return err


def finite(x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise ValueError(f"features are not all finite: {np.round(x, 4).tolist()[:12]}")
    return x
