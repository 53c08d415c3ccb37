"""The suite's one video reader: decord first, PyAV for what decord cannot open.

Every file is first probed with PyAV (container, video stream, packet index, rotation), which turns
broken input into a `VideoReadError` naming the path and the reason before any decoder touches it.
Frames come out as uint8 RGB `(T, H, W, 3)`, upright (display rotation applied), in the order asked.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

Backend = Literal["auto", "decord", "pyav"]

# Broken files are reported through VideoReadError; libav's own console chatter adds nothing.
av.logging.set_level(av.logging.PANIC)

# decord 0.6.0 ships no decoder for these; PyAV (through ffmpeg's dav1d/libaom) decodes them.
_DECORD_UNSUPPORTED_CODECS = {"av1"}


class VideoReadError(Exception):
    """A video could not be read; `path` and `reason` say which and why."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """What a caller needs to know to sample a video; sizes are as displayed (rotation applied)."""

    path: str
    width: int
    height: int
    fps: float  # average rate: frames / duration, so it is meaningful for variable frame rate
    num_frames: int
    duration: float  # seconds, first frame's start to last frame's end
    rotation: int  # degrees (0, 90, 180, 270) that the reader rotates frames by to show them upright
    codec: str
    pix_fmt: str
    timestamps: tuple[float, ...]  # presentation time of each frame, seconds from the first
    keyframes: tuple[int, ...]  # indices of frames a decoder can start from
    start_pts: int  # the first frame's timestamp in stream time-base units (for seeking)


def _fail(path: str | os.PathLike, reason: str) -> VideoReadError:
    return VideoReadError(path, reason)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a video's metadata and frame index without decoding more than one frame."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file")
    if path.is_dir():
        raise _fail(path, "is a directory, not a video file")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise _fail(path, f"cannot stat: {err.strerror}") from err
    if size == 0:
        raise _fail(path, "empty file (0 bytes)")
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return _probe_container(path, container, size)
    except VideoReadError:
        raise
    except (av.FFmpegError, OSError, ValueError) as err:
        raise _fail(path, f"not a readable video ({_reason(err)})") from err


def _probe_container(path: Path, container: av.container.InputContainer, size: int) -> VideoInfo:
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        raise _fail(path, f"no video stream (streams found: {', '.join(kinds) or 'none'})")
    stream = container.streams.video[0]
    packets: list[tuple[int, bool]] = []
    truncated = 0
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue  # flush packets and packets without timing carry no frame of their own
        if packet.pos is not None and packet.pos >= 0 and packet.pos + packet.size > size:
            truncated += 1
        packets.append((packet.pts, packet.is_keyframe))
    listed = stream.frames  # the container's own frame count (0 where the format has none)
    if truncated or (listed and len(packets) < listed):
        have = len(packets) - truncated
        raise _fail(path, f"truncated file: {have} of the {max(listed, len(packets))} frames present")
    if not packets:
        raise _fail(path, "video stream holds no frames")
    packets.sort()
    pts = np.array([p for p, _ in packets], dtype=np.int64)
    tb = float(stream.time_base)
    times = (pts - pts[0]) * tb
    # A frame lasts until the next one; the last one as long as the median gap (or 1/rate).
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    last = float(np.median(np.diff(times))) if len(times) > 1 else 1.0 / rate
    duration = float(times[-1] + last)
    container.seek(0, stream=stream)
    first = next(container.decode(stream), None)
    if first is None:
        raise _fail(path, "no frame could be decoded")
    rotation = _upright_rotation(first)
    width, height = first.width, first.height
    if rotation in (90, 270):
        width, height = height, width
    return VideoInfo(
        path=str(path),
        width=width,
        height=height,
        fps=len(pts) / duration,
        num_frames=len(pts),
        duration=duration,
        rotation=rotation,
        codec=stream.codec_context.codec.canonical_name,  # "av1", not the decoder "libdav1d"
        pix_fmt=first.format.name,
        timestamps=tuple(float(t) for t in times),
        keyframes=tuple(i for i, (_, key) in enumerate(packets) if key) or (0,),
        start_pts=int(pts[0]),
    )


def _upright_rotation(frame: av.VideoFrame) -> int:
    # PyAV reports the display matrix angle counter-clockwise; frames are shown after rotating
    # them by that angle, which np.rot90(k=angle/90) does (rot90 turns counter-clockwise too).
    return int(round(frame.rotation)) % 360


def _reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(": '", 1)[0] if text else type(err).__name__


class VideoReader:
    """Random access to one video's frames as uint8 RGB `(T, H, W, 3)`, upright.

    `backend="auto"` uses decord where it decodes the codec and agrees with the probe on the frame
    count, and PyAV otherwise (AV1, odd containers, broken metadata)."""

    def __init__(self, path: str | os.PathLike, backend: Backend = "auto", threads: int = 0):
        self.info = probe(path)
        self.path = self.info.path
        self._threads = threads
        self._decord = None
        self.backend: str = "pyav"
        if backend in ("auto", "decord") and self.info.codec not in _DECORD_UNSUPPORTED_CODECS:
            self._decord = self._open_decord()
            if self._decord is not None:
                self.backend = "decord"
        if backend == "decord" and self._decord is None:
            raise _fail(self.path, f"decord cannot decode this file (codec {self.info.codec})")

    def _open_decord(self):  # -> decord.VideoReader | None
        import decord

        try:
            reader = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self._threads)
        except (decord.DECORDError, RuntimeError):
            return None
        # decord indexes frames by its own count; a disagreement means one of them misreads the
        # stream (broken metadata, edit lists), and PyAV's packet index is the one we trust.
        return reader if len(reader) == self.info.num_frames else None

    def __len__(self) -> int:
        return self.info.num_frames

    def get_frames(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 `(T, H, W, 3)`."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.info.num_frames
        if idx.size == 0:
            raise ValueError("no frame indices given")
        if idx.min() < 0 or idx.max() >= n:
            raise IndexError(f"{self.path}: frame index out of range [0, {n}): {idx.tolist()}")
        wanted, inverse = np.unique(idx, return_inverse=True)
        try:
            if self._decord is not None:
                frames = self._decord.get_batch(wanted.tolist()).asnumpy()
            else:
                frames = _decode_pyav(self.info, wanted, self._threads)
                if self.info.rotation:  # decord applies the display rotation itself; PyAV doesn't
                    frames = np.rot90(frames, k=self.info.rotation // 90, axes=(1, 2))
        except VideoReadError:
            raise
        except Exception as err:  # decoders raise many types; all mean this file failed here
            raise _fail(self.path, f"decoding failed ({type(err).__name__}: {err})") from err
        expected = (len(wanted), self.info.height, self.info.width, 3)
        if frames.shape != expected or frames.dtype != np.uint8:
            raise _fail(self.path, f"decoder returned {frames.dtype} {frames.shape}, not {expected}")
        return np.ascontiguousarray(frames[inverse])

    def close(self) -> None:
        self._decord = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _decode_pyav(info: VideoInfo, wanted: np.ndarray, threads: int) -> np.ndarray:
    """Decode sorted unique frame indices, seeking only when a later keyframe saves decoding."""
    keyframes = np.asarray(info.keyframes)
    out: list[np.ndarray] = []
    with av.open(info.path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        tb = float(stream.time_base)
        pts0 = info.start_pts
        frames = None
        position = -1  # index of the last frame decoded
        for target in wanted.tolist():
            start_key = int(keyframes[np.searchsorted(keyframes, target, side="right") - 1])
            if frames is None or start_key > position:
                seek_pts = pts0 + round(info.timestamps[start_key] / tb)
                container.seek(seek_pts, stream=stream, backward=True)
                frames = container.decode(stream)
                position = None
            for frame in frames:
                position = _index_of(info, frame, pts0, tb)
                if position >= target:
                    break
            else:
                raise _fail(info.path, f"frame {target} of {info.num_frames} could not be decoded")
            if position != target:
                raise _fail(info.path, f"decoder skipped frame {target} (reached {position})")
            out.append(frame.to_ndarray(format="rgb24"))
    return np.stack(out)


def _index_of(info: VideoInfo, frame: av.VideoFrame, pts0: int, tb: float) -> int:
    t = (frame.pts - pts0) * tb
    i = int(np.searchsorted(info.timestamps, t - 1e-6))
    return min(i, info.num_frames - 1)
