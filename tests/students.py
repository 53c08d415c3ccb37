"""Tiny real training data for student tests: clips of real footage blurred at five levels.

Each source gives renditions at blur levels 1..5 (plus the clean clip as level 0); a pair of two
renditions of one source is labelled by the level gap, as the paper labels synthetic pairs, and
the validation "MOS" of a rendition is minus its level. Small enough to train on in seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datamodules._ffmpeg import encode_frames
from datamodules.distortions import apply_distortion
from tests.videos import LOSSLESS_X264, real_clip

SOURCES = ("bikes", "carphone", "bigbuckbunny")
LEVELS = 6  # 0 = clean, 1..5 = blur levels


def blur_ladder(folder: Path, frames: int = 4, height: int = 72) -> pd.DataFrame:
    """Write the renditions; returns `video_id, path, source, level, mos` (mos = -level)."""
    rows = []
    for name in SOURCES:
        clip = real_clip(name, frames=frames, height=height, start=10)
        for level in range(LEVELS):
            frames_out = clip if level == 0 else apply_distortion(clip, 10, "blur", level - 1)
            path = encode_frames(frames_out, 10, folder / f"{name}_{level}.mp4", LOSSLESS_X264)
            rows.append((f"{name}_{level}", str(path), name, level, -float(level)))
    return pd.DataFrame(rows, columns=["video_id", "path", "source", "level", "mos"])


def ladder_pairs(videos: pd.DataFrame, out: Path) -> Path:
    """Every ordered pair of renditions of one source: gap > 1 superior/inferior, 1 better/worse."""
    rows = []
    for _, group in videos.groupby("source"):
        for a in group.itertuples():
            for b in group.itertuples():
                gap = b.level - a.level  # positive: `a` is less distorted, so better
                if gap == 0:
                    continue
                level = (4 if gap > 1 else 3) if gap > 0 else (0 if gap < -1 else 1)
                rows.append((a.video_id, b.video_id, a.path, b.path, level, float(gap > 0),
                             "synthetic"))  # fmt: skip
    table = pd.DataFrame(rows, columns=["first_id", "second_id", "first_path", "second_path",
                                        "level", "soft_label", "source"])  # fmt: skip
    table.to_parquet(out, index=False)
    return out
