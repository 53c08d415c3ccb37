"""Per-second motion features for the LLaVA-OneVision student: one 256-d vector per second.

The paper feeds, for every one-second chunk, the 256-d fast-pathway feature of a SlowFast R50
(Kinetics) computed offline, as one extra "motion token" per second. Two sources are offered:

- Files in the paper's format (`load_motion_file`), looked up by the video's file stem
  (`clip.mp4` -> `clip`) in a folder, in either layout:
    * `DIR/STEM.npy`: a float array `(S, 256)`, row s for second s;
    * `DIR/STEM/feature_{s}_fast_feature.npy` for s = 0 .. S-1, each holding 256 values (any shape
      that squeezes to `(256,)`): the layout the released extraction code writes.
- A built-in, parameter-free extractor (`frame_difference_features`) for when no SlowFast
  features exist: frame-difference statistics on an 8x8 grid over frames spread across each second.
  It sees the same thing SlowFast's fast pathway is there for (how much and how regularly the
  picture changes: motion, stutter, freezes, flicker), is deterministic and needs no weights.

`PerSecondFrames` is the sampler that decodes what both need in one pass: the key frame of every
second, then (for the built-in extractor) `chunk_frames` frames spread over each second.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from datamodules.frame_sampling import OneFramePerSecond
from datamodules.video_reader import VideoInfo

MOTION_DIM = 256  # SlowFast R50's fast pathway width
GRID = 8  # 8x8 cells x 4 statistics = 256 values
LUMA_SIZE = 64  # frames are reduced to 64x64 luma first: resolution-independent, cheap
FROZEN = 0.5 / 255  # a cell whose mean change is under half a code value did not change


@dataclass(frozen=True)
class PerSecondFrames:
    """Key frame of each second `(S,)`, then `chunk_frames` frames inside each second `(S*F,)`."""

    max_seconds: int | None = 10  # the paper keeps at most 10 motion tokens in training
    chunk_frames: int = 0  # 0: key frames only (motion from files, or none)

    def indices(self, info: VideoInfo) -> np.ndarray:
        sampler = OneFramePerSecond(self.max_seconds)
        if self.chunk_frames == 0:
            return sampler.indices(info)
        keys, chunks = sampler.chunks(info, self.chunk_frames)  # (S,), (S, F)
        return np.concatenate([keys, chunks.reshape(-1)])

    def split(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Undo `indices`' layout: `(S*(1+F), H, W, 3)` -> keys `(S, H, W, 3)`, chunks
        `(S, F, H, W, 3)` (None when `chunk_frames` is 0)."""
        per_second = 1 + self.chunk_frames
        if len(frames) == 0 or len(frames) % per_second:
            raise ValueError(
                f"{len(frames)} frames do not split into seconds of 1 key + "
                f"{self.chunk_frames} chunk frames; were they read with this sampler?"
            )
        s = len(frames) // per_second
        if self.chunk_frames == 0:
            return frames, None
        return frames[:s], frames[s:].reshape(s, self.chunk_frames, *frames.shape[1:])


def frame_difference_features(chunks: np.ndarray) -> np.ndarray:
    """uint8 chunk frames `(S, F, H, W, 3)`, F >= 2 -> float32 features `(S, 256)`.

    Per second: luma in [0, 1] reduced to 64x64 (area), absolute differences of consecutive frames,
    averaged in each cell of an 8x8 grid -> e `(F-1, 8, 8)`. Four statistics of e over time, each an
    8x8 map, concatenated in this order: mean (motion energy), max (bursts, cuts), standard
    deviation (irregular motion: stutter, jitter), fraction of frozen steps (repeated frames).
    The first three are in luma units ([0, 1]), the last is a fraction."""
    if chunks.ndim != 5 or chunks.shape[-1] != 3 or chunks.dtype != np.uint8:
        raise ValueError(f"expected uint8 (S, F, H, W, 3) chunks: {chunks.dtype} {chunks.shape}")
    s, f = chunks.shape[:2]
    if f < 2:
        raise ValueError("frame differences need at least 2 frames per second")
    x = torch.from_numpy(np.ascontiguousarray(chunks)).float().div_(255.0)
    luma = x @ torch.tensor([0.299, 0.587, 0.114])  # (S, F, H, W), BT.601 weights
    luma = F.interpolate(luma, size=(LUMA_SIZE, LUMA_SIZE), mode="area")  # (S, F, 64, 64)
    diff = (luma[:, 1:] - luma[:, :-1]).abs()  # (S, F-1, 64, 64)
    cells = F.adaptive_avg_pool2d(diff, GRID)  # (S, F-1, 8, 8)
    stats = torch.stack(
        [
            cells.mean(1),
            cells.amax(1),
            cells.std(1, unbiased=False),
            (cells < FROZEN).float().mean(1),
        ],
        dim=1,
    )  # (S, 4, 8, 8)
    return stats.reshape(s, MOTION_DIM).numpy().astype(np.float32)


def motion_file_candidates(motion_dir: str | os.PathLike, video_path: str) -> tuple[Path, Path]:
    """Where the features of `video_path` may be: `DIR/STEM.npy` and the folder `DIR/STEM/`."""
    stem = Path(video_path).stem
    return Path(motion_dir) / f"{stem}.npy", Path(motion_dir) / stem


def load_motion_file(motion_dir: str | os.PathLike, video_path: str) -> np.ndarray:
    """The paper-format motion features of `video_path` as float32 `(S, 256)`; see the module
    docstring for the two accepted layouts. Raises FileNotFoundError naming where it looked."""
    single, folder = motion_file_candidates(motion_dir, video_path)
    if single.is_file():
        feats = np.load(single)
        source = single
    elif (folder / "feature_0_fast_feature.npy").is_file():
        rows = []
        while (file := folder / f"feature_{len(rows)}_fast_feature.npy").is_file():
            rows.append(np.load(file).reshape(-1))
        feats, source = np.stack(rows), folder
    else:
        raise FileNotFoundError(
            f"no motion features for {video_path}: expected {single} or "
            f"{folder / 'feature_0_fast_feature.npy'}"
        )
    feats = np.asarray(feats, dtype=np.float32)
    if feats.ndim != 2 or feats.shape[1] != MOTION_DIM:
        raise ValueError(f"{source}: expected motion features (S, {MOTION_DIM}), got {feats.shape}")
    return feats


def fit_seconds(features: np.ndarray, seconds: int) -> np.ndarray:
    """`(S', 256)` -> `(seconds, 256)`: extra seconds dropped, missing ones zero (as the paper
    gives images zero motion), so files and decoded key frames may disagree by a rounding."""
    out = np.zeros((seconds, features.shape[1]), dtype=np.float32)
    n = min(seconds, len(features))
    out[:n] = features[:n]
    return out
