"""Which frames to read: the sampling strategies, as frame indices computed from `VideoInfo`.

Each sampler is a small frozen dataclass (so it can be named in YAML by `class_path`) with one
method, `indices(info) -> np.ndarray`. `read_clip` reads what a sampler picks; `read_per_second`
returns the paper's one-frame-per-second key frames together with each second's chunk frames for a
motion branch. Videos shorter than a sampler asks for repeat their last frame, as the uniform and
clip samplers of TSN, FAST-VQA and DOVER do, rather than fail.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from datamodules.video_reader import Backend, VideoInfo, VideoReader


@dataclass(frozen=True)
class UniformFrames:
    """`n` frames at the centres of `n` equal segments of the video."""

    n: int = 8

    def indices(self, info: VideoInfo) -> np.ndarray:
        centres = (np.arange(self.n) + 0.5) * info.num_frames / self.n
        return np.minimum(centres.astype(np.int64), info.num_frames - 1)


@dataclass(frozen=True)
class ConsecutiveFrames:
    """`n` frames from `start`, every `stride`-th; the last frame repeats past the end."""

    n: int = 32
    start: int = 0
    stride: int = 1

    def indices(self, info: VideoInfo) -> np.ndarray:
        idx = self.start + self.stride * np.arange(self.n)
        return np.minimum(idx, info.num_frames - 1)


@dataclass(frozen=True)
class SpreadAndRun:
    """`n` frames spread evenly over the video, then `run` consecutive frames from its middle.

    The spread frames feed the spatial features, the run the temporal ones (a frozen frame can
    only be seen between neighbours). On a short clip the two overlap and are decoded once."""

    n: int = 8
    run: int = 24

    def indices(self, info: VideoInfo) -> np.ndarray:
        start = max(info.num_frames - self.run, 0) // 2
        middle = ConsecutiveFrames(self.run, start).indices(info)
        return np.concatenate([UniformFrames(self.n).indices(info), middle])  # (n + run,)


@dataclass(frozen=True)
class RandomClip:
    """A clip of `n` frames every `stride`-th, starting at a position drawn from `seed`."""

    n: int = 16
    stride: int = 1
    seed: int = 0

    def indices(self, info: VideoInfo) -> np.ndarray:
        span = (self.n - 1) * self.stride + 1
        start = np.random.default_rng(self.seed).integers(0, max(info.num_frames - span, 0) + 1)
        return ConsecutiveFrames(self.n, int(start), self.stride).indices(info)


@dataclass(frozen=True)
class OneFramePerSecond:
    """The first frame of each one-second chunk (by timestamp, so variable frame rate works)."""

    max_seconds: int | None = None  # the paper keeps at most 10 motion tokens in training

    def indices(self, info: VideoInfo) -> np.ndarray:
        return self.chunks(info)[0]

    def chunks(self, info: VideoInfo, frames_per_chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """Key frame per second `(S,)` and `frames_per_chunk` frames spread over it `(S, F)`.

        Frames are chosen by display time: the frame on screen at second s is the key frame, and
        the frames on screen at evenly spaced moments inside [s, s + 1) form the chunk."""
        seconds = max(int(np.ceil(info.duration - 1e-6)), 1)
        if self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds)
        key_times = np.arange(seconds, dtype=np.float64)  # (S,)
        chunk_times = key_times[:, None] + (np.arange(frames_per_chunk) + 0.5) / frames_per_chunk
        return _shown_at(info, key_times), _shown_at(info, chunk_times)  # (S,), (S, F)


def _shown_at(info: VideoInfo, times: np.ndarray) -> np.ndarray:
    """Index of the frame on display at each time (seconds from the first frame)."""
    idx = np.searchsorted(np.asarray(info.timestamps), times + 1e-6, side="right") - 1
    return np.clip(idx, 0, info.num_frames - 1).astype(np.int64)


Sampler = UniformFrames | ConsecutiveFrames | RandomClip | OneFramePerSecond


def read_clip(path: str | os.PathLike, sampler: Sampler, backend: Backend = "auto") -> np.ndarray:
    """Frames chosen by `sampler` as uint8 `(T, H, W, 3)`; raises VideoReadError on bad input."""
    with VideoReader(path, backend=backend) as reader:
        return reader.get_frames(sampler.indices(reader.info))


def read_per_second(
    path: str | os.PathLike,
    max_seconds: int | None = None,
    frames_per_chunk: int = 8,
    backend: Backend = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The paper's spatial and motion inputs: key frames `(S, H, W, 3)` (one per second) and
    chunk frames `(S, F, H, W, 3)` spread over each second, decoded in one pass."""
    with VideoReader(path, backend=backend) as reader:
        keys, chunks = OneFramePerSecond(max_seconds).chunks(reader.info, frames_per_chunk)
        frames = reader.get_frames(np.concatenate([keys, chunks.reshape(-1)]))
    s = len(keys)
    return frames[:s], frames[s:].reshape(s, frames_per_chunk, *frames.shape[1:])
