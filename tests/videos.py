"""Tiny real videos for tests: frames we know exactly, encoded by the real ffmpeg."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from datamodules._ffmpeg import encode_frames, run_ffmpeg
from datamodules.sources import footage_path

LOSSLESS_X264 = ("-c:v", "libx264", "-qp", "0", "-preset", "ultrafast")


def numbered_frames(n: int, height: int = 64, width: int = 96) -> np.ndarray:
    """`(n, H, W, 3)` uint8 frames whose index can be read back from their flat grey level.

    Frame i is filled with 8 + 8*i (mod 256 wraps after 31 frames, so keep n <= 30), which survives
    4:2:0 lossless coding exactly and lossy coding to within a few levels."""
    if n > 30:
        raise ValueError("numbered_frames keeps n <= 30 so grey levels stay distinct")
    levels = (8 + 8 * np.arange(n)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_number(frame: np.ndarray) -> int:
    """Inverse of numbered_frames for one decoded frame."""
    return int(round((float(frame.mean()) - 8) / 8))


def write_numbered(path: Path, n: int, fps: float = 10, **kwargs) -> Path:
    """A lossless H.264 video of numbered_frames(n)."""
    return encode_frames(numbered_frames(n, **kwargs), fps, path, LOSSLESS_X264)


def real_clip(
    name: str = "bikes", frames: int = 12, height: int = 64, start: int = 0
) -> np.ndarray:
    """`frames` frames of real footage, scaled to `height` (width even, aspect kept)."""
    from datamodules.video_reader import VideoReader

    with VideoReader(footage_path(name)) as reader:
        clip = reader.get_frames(np.arange(start, start + frames))
    import torch
    import torch.nn.functional as F

    h, w = clip.shape[1:3]
    width = int(round(w * height / h / 2)) * 2
    x = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(height, width), mode="area")
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).contiguous().numpy()


def remux(src: Path, dst: Path, *args: str) -> Path:
    """Copy `src` into `dst` without re-encoding, with extra ffmpeg output arguments."""
    run_ffmpeg(["-i", str(src), "-c", "copy", *args, str(dst)])
    return dst


def ffmpeg_frames(path: Path) -> np.ndarray:
    """Every frame as the ffmpeg command line decodes it to RGB (display rotation applied): the
    ground truth that a reader's output must equal."""
    from datamodules.video_reader import probe

    info = probe(path)
    raw = run_ffmpeg(["-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
    return np.frombuffer(raw, np.uint8).reshape(-1, info.height, info.width, 3)
