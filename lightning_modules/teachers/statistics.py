"""The nine simple statistics the paper matches a pool's histograms on (§3.2, appendix A):
blockiness, blur, contrast, noise, flicker, colourfulness, luminance, spatial and temporal
information. Not quality scores: descriptions of what a video looks like, to curate a pool by.

Eight of them are the supervised teacher's hand-crafted features (`handcrafted.py`), computed
the same way; flicker is the mean absolute change of the mean luma between consecutive frames.
Each statistic is one `statistic` teacher, so it is labelled, cached, resumed and sharded over
ranks like any score table; with `feature_cache` set the first of the nine to see a video keeps
all nine, and the other eight read them instead of decoding it again.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datamodules._io import atomic_write, read_cached_array
from datamodules.frame_sampling import SpreadAndRun
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher
from lightning_modules.teachers.classical import _frames_of, luma
from lightning_modules.teachers.handcrafted import HANDCRAFTED, finite, handcrafted_features

STATISTICS = ("blockiness", "blur", "contrast", "noise", "flicker", "colourfulness", "luminance",
              "spatial_info", "temporal_info")  # fmt: skip
# where each comes from among the hand-crafted features (flicker is computed here)
_FROM_HANDCRAFTED = {"blockiness": "blockiness", "blur": "blur", "contrast": "contrast",
                     "noise": "noise", "colourfulness": "colourfulness",
                     "luminance": "brightness", "spatial_info": "spatial_info",
                     "temporal_info": "temporal_info"}  # fmt: skip


def video_statistics(spread: np.ndarray, run: np.ndarray) -> np.ndarray:
    """STATISTICS `(9,)` of uint8 frames spread over a video `(T, H, W, 3)` and a run of
    consecutive ones `(R, H, W, 3)`."""
    features = dict(zip(HANDCRAFTED, handcrafted_features(spread, run), strict=True))
    means = luma(run).mean(axis=(1, 2))  # (R,)
    flicker = float(np.abs(np.diff(means)).mean()) if len(means) > 1 else 0.0
    values = [flicker if s == "flicker" else features[_FROM_HANDCRAFTED[s]] for s in STATISTICS]
    return finite(np.array(values, dtype=np.float64))


@register_teacher("statistic")
@dataclass
class StatisticTeacher(Teacher):
    """One of STATISTICS per video, as a score table (higher: more of it; not better)."""

    statistic: str = "luminance"
    """Which of STATISTICS."""
    frames: int = 4
    """Frames spread over the video for the spatial statistics."""
    run: int = 16
    """Consecutive frames from its middle for flicker and temporal information."""
    feature_cache: str | None = None
    """A folder for each video's nine statistics, shared by the nine teachers; None: none."""

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic {self.statistic!r}: not one of {', '.join(STATISTICS)}")

    def sampler(self) -> SpreadAndRun:
        return SpreadAndRun(self.frames, self.run)

    def cached_input(self, path: str) -> np.ndarray | None:
        file = self._cache_file(path)
        return None if file is None else read_cached_array(file)

    def score_native(self, item: VideoItem) -> float:
        values = item.prepared
        if values is None:
            frames = _frames_of(item)
            run = frames[self.frames :]
            if item.info is not None:  # a run longer than the video repeats its last frame
                run = run[: item.info.num_frames]
            values = video_statistics(frames[: self.frames], run)
            file = self._cache_file(item.path)
            if file is not None:
                atomic_write(file, lambda p: np.save(p, values))
        return float(values[STATISTICS.index(self.statistic)])

    def _cache_file(self, path: str) -> Path | None:
        if self.feature_cache is None:
            return None
        # keyed by the file's identity and the frames read, never by the statistic: one file
        # serves all nine
        st = os.stat(path)
        parts = [os.path.abspath(path), st.st_size, st.st_mtime_ns, self.frames, self.run,
                 STATISTICS]  # fmt: skip
        return Path(self.feature_cache) / f"{hashlib.sha1(repr(parts).encode()).hexdigest()}.npy"
