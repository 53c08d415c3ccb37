"""VMAF labels: Netflix's libvmaf through the static ffmpeg that ships in `imageio-ffmpeg`.

Reference: Li, Aaron, Katsavounidis, Moorthy, Manohara, "Toward a Practical Perceptual Video
Quality Metric" (Netflix Tech Blog, 2016). The built-in `vmaf_v0.6.1` model is trained for 1080p
viewing; on small clips its scores are still ordered but not calibrated, which is how we use them.

The two files are aligned the way a viewer would see them: the distorted one is scaled (bicubic)
to the reference size and resampled in time to the reference frame rate, both start at t = 0, and
frames are compared over the shorter of the two. File names reach ffmpeg only as `-i file:/abs/path`
(never as an option or a protocol, see `file_url`); the filter string holds no path at all: ffmpeg
runs in a temporary folder and libvmaf writes its log there by a fixed relative name.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from datamodules._ffmpeg import FFmpegError, encode_frames, file_url, run_ffmpeg
from datamodules.video_reader import VideoReadError, probe


class VmafError(RuntimeError):
    """VMAF could not be computed for a (distorted, reference) pair; the message names both."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing arrays element-wise has no single truth
class VmafResult:
    """VMAF of a distorted video against its reference: 0 (worst) to 100 (indistinguishable)."""

    mean: float  # arithmetic mean over the compared frames
    per_frame: np.ndarray  # float64 (N,), one score per compared (or subsampled) frame


def compute_vmaf(
    distorted: str | Path,
    reference: str | Path,
    *,
    model: str = "vmaf_v0.6.1",
    threads: int = 2,
    subsample: int = 1,
) -> VmafResult:
    """VMAF of the file `distorted` against the file `reference`, aligned to the reference."""
    if subsample < 1 or threads < 0:
        raise ValueError(f"subsample must be >= 1 and threads >= 0, got {subsample}, {threads}")
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", model):
        raise ValueError(f"not a built-in VMAF model version: {model!r}")
    pair = f"distorted {distorted} vs reference {reference}"
    try:
        # The probe turns unreadable input into a message naming the file; it also gives the
        # reference's displayed size (ffmpeg auto-rotates the same way) and frame rate.
        probe(distorted)
        ref = probe(reference)
    except VideoReadError as err:
        raise VmafError(f"{pair}: cannot read {err}") from err
    # A rational rate keeps 30000/1001 exact in the fps filter; the probe's rate is an average.
    rate = Fraction(ref.fps).limit_denominator(1001)
    with tempfile.TemporaryDirectory(prefix="w2svqa_vmaf_") as tmp:
        log = Path(tmp) / "vmaf.json"  # ffmpeg runs in tmp: the filter names it "vmaf.json"
        # Both streams go onto the same frame grid, not only the distorted one: libvmaf pairs
        # frames by timestamp (nearest lower), and a container's rounded timestamps (Matroska keeps
        # 1 ms: 30 fps is 0, 33, 67 ms) would otherwise pair every third frame with its neighbour.
        grid = f"setpts=PTS-STARTPTS,fps={rate.numerator}/{rate.denominator}"
        graph = (
            f"[0:v]{grid},scale={ref.width}:{ref.height}:flags=bicubic,format=yuv420p[dis];"
            f"[1:v]{grid},format=yuv420p[ref];"
            # shortest=1: score only frames present in both (time-aligned) streams.
            f"[dis][ref]libvmaf=model=version={model}:n_threads={threads}:n_subsample={subsample}"
            f":log_fmt=json:log_path={log.name}:shortest=1:eof_action=endall"
        )
        args = [
            "-threads", str(threads), "-i", file_url(distorted),
            "-threads", str(threads), "-i", file_url(reference),
            "-filter_complex", graph, "-an", "-f", "null", "-",
        ]  # fmt: skip
        try:
            run_ffmpeg(args, cwd=tmp)
            frames = json.loads(log.read_text())["frames"]
        except (FFmpegError, OSError, ValueError, KeyError) as err:
            raise VmafError(f"{pair}: {err}") from err
    per_frame = np.array([f["metrics"]["vmaf"] for f in frames], dtype=np.float64)
    if per_frame.size == 0:
        raise VmafError(f"{pair}: no frames were compared")
    return VmafResult(mean=float(per_frame.mean()), per_frame=per_frame)


def vmaf_of_frames(
    distorted: np.ndarray, reference: np.ndarray, fps: float, **kwargs: object
) -> VmafResult:
    """VMAF of two in-memory uint8 `(T, H, W, 3)` clips, written losslessly and scored from disk."""
    with tempfile.TemporaryDirectory(prefix="w2svqa_vmaf_frames_") as tmp:
        paths = []
        for name, frames in (("distorted", distorted), ("reference", reference)):
            # Y4M is uncompressed: the only loss is ffmpeg's RGB->YUV conversion, which both clips
            # go through identically (and yuv444p keeps chroma at full resolution, any size).
            path = Path(tmp) / f"{name}.y4m"
            encode_frames(frames, fps, path, ("-c:v", "rawvideo", "-f", "yuv4mpegpipe"), "yuv444p")
            paths.append(path)
        return compute_vmaf(paths[0], paths[1], **kwargs)  # type: ignore[arg-type]
