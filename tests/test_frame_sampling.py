"""Sampling strategies pick the frames they promise, on real files whose frames we can identify."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules.frame_sampling import (
    ConsecutiveFrames,
    OneFramePerSecond,
    RandomClip,
    UniformFrames,
    read_clip,
    read_per_second,
)
from datamodules.video_reader import probe
from tests.videos import frame_number, write_numbered


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # 25 frames at 10 fps: 2.5 s, so three one-second chunks, the last one half full
    return write_numbered(tmp_path_factory.mktemp("sampling") / "v.mp4", 25, fps=10)


def numbers(frames: np.ndarray) -> list[int]:
    return [frame_number(f) for f in frames]


def test_uniform(video: Path) -> None:
    assert numbers(read_clip(video, UniformFrames(5))) == [2, 7, 12, 17, 22]


def test_consecutive_repeats_the_last_frame_past_the_end(video: Path) -> None:
    assert numbers(read_clip(video, ConsecutiveFrames(4, start=10, stride=2))) == [10, 12, 14, 16]
    assert numbers(read_clip(video, ConsecutiveFrames(4, start=22))) == [22, 23, 24, 24]


def test_random_clip_is_seeded_and_contiguous(video: Path) -> None:
    info = probe(video)
    a = RandomClip(8, stride=2, seed=3).indices(info)
    assert np.array_equal(a, RandomClip(8, stride=2, seed=3).indices(info))
    assert np.all(np.diff(a) == 2) and a[-1] < 25
    starts = {int(RandomClip(8, seed=s).indices(info)[0]) for s in range(20)}
    assert len(starts) > 5  # the seed moves the clip


def test_one_frame_per_second_with_chunks(video: Path) -> None:
    keys, chunks = read_per_second(video, frames_per_chunk=4)
    assert numbers(keys) == [0, 10, 20]
    assert chunks.shape == (3, 4, 64, 96, 3)
    # frames on screen at s + 0.125, 0.375, 0.625, 0.875; the last second ends at 2.5 s
    assert [numbers(c) for c in chunks] == [[1, 3, 6, 8], [11, 13, 16, 18], [21, 23, 24, 24]]
    keys, _ = read_per_second(video, max_seconds=2)
    assert numbers(keys) == [0, 10]


def test_one_frame_per_second_follows_timestamps_not_frame_rate() -> None:
    # variable frame rate: 10 fps for a second, then 30 fps
    times = tuple([i * 0.1 for i in range(10)] + [1 + i / 30 for i in range(30)])
    info = _info(times)
    assert OneFramePerSecond().indices(info).tolist() == [0, 10]


def _info(times: tuple[float, ...]):
    from datamodules.video_reader import VideoInfo

    return VideoInfo(
        path="vfr.mp4", width=8, height=8, fps=len(times) / 2.0, num_frames=len(times),
        duration=2.0, rotation=0, codec="h264", pix_fmt="yuv420p", timestamps=times,
        keyframes=(0,), start_pts=0,
    )  # fmt: skip


def test_one_frame_video_repeats_its_frame(tmp_path: Path) -> None:
    path = write_numbered(tmp_path / "one.mp4", 1)
    assert numbers(read_clip(path, UniformFrames(4))) == [0, 0, 0, 0]
    keys, chunks = read_per_second(path, frames_per_chunk=2)
    assert keys.shape[0] == 1 and numbers(chunks[0]) == [0, 0]
