"""The static ffmpeg shipped inside `imageio-ffmpeg`: encoders (x264, x265, libvpx, libaom, SVT-AV1)
and Netflix's libvmaf. Every call passes an argument list, never a shell string, so file names
cannot be interpreted by a shell; and every file name reaches ffmpeg through `file_url`, so that
ffmpeg cannot read one as an option (`-i.mp4`) or a protocol (`x:y.mp4`, `concat:a|b`) either."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

# Near-transparent H.264 for clips the suite stores (corpus clips, renditions): a stored clip's
# quality is its content's and its distortion's, not the storage's.
STORE_X264 = ("-c:v", "libx264", "-crf", "16", "-preset", "veryfast", "-threads", "1")


class FFmpegError(RuntimeError):
    """ffmpeg exited non-zero; the message holds the tail of its log."""


@cache
def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def file_url(path: str | os.PathLike) -> str:
    """`path` as ffmpeg (the command line or PyAV) must be given it to open that local file.

    Given as is, a name that starts with `-` is an option to the command line, and one whose text
    before a colon looks like a scheme (`x:y.mp4`, `pipe:1`, `concat:a.mp4|b.mp4`) names a
    protocol. The `file:` protocol with an absolute path is that file and nothing else. Filter
    strings are another syntax that this does not escape: run ffmpeg in a folder of ours and name
    files there by fixed relative names instead, as vmaf.py does."""
    return "file:" + str(Path(path).absolute())  # absolute(), not resolve(): symlinks kept


def run_ffmpeg(
    args: Sequence[str],
    stdin: bytes | None = None,
    timeout: float = 600.0,
    cwd: str | os.PathLike | None = None,
) -> bytes:
    """Run ffmpeg with `args` (no shell) in `cwd`; return stdout or raise FFmpegError with its
    log tail. Files named in a filter string are best relative to a `cwd` we made: no escaping."""
    # -nostdin unless we feed frames through stdin; -y because outputs are temporary names we own.
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
    if stdin is None:
        cmd.append("-nostdin")
    proc = subprocess.run(  # noqa: S603 - argument list, no shell
        [*cmd, *args], input=stdin, capture_output=True, timeout=timeout, check=False, cwd=cwd
    )
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-5:]
        raise FFmpegError(f"ffmpeg failed ({proc.returncode}): " + " | ".join(tail))
    return proc.stdout


def encode_frames(
    frames: np.ndarray,
    fps: float,
    out_path: str | Path,
    codec_args: Sequence[str] = ("-c:v", "libx264", "-crf", "10", "-preset", "fast"),
    pix_fmt: str = "yuv420p",
) -> Path:
    """Encode uint8 RGB frames `(T, H, W, 3)` into `out_path` with the given encoder arguments.

    Height and width must be even (4:2:0 chroma); callers pad or crop before."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 (T, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    if pix_fmt.startswith("yuv420") and (h % 2 or w % 2):
        raise ValueError(f"{pix_fmt} needs even height and width, got {h}x{w}")
    out_path = Path(out_path)
    args = [
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps:.6f}", "-i", "pipe:0",
        "-an", *codec_args, "-pix_fmt", pix_fmt, "-frames:v", str(t), file_url(out_path),
    ]  # fmt: skip
    run_ffmpeg(args, stdin=np.ascontiguousarray(frames).tobytes())
    return out_path
