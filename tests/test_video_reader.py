"""The reader on tiny real files: exact frames back, every kind of bad input named with a reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from datamodules._ffmpeg import encode_frames, run_ffmpeg
from datamodules.video_reader import VideoReader, VideoReadError, probe
from tests.videos import (
    LOSSLESS_X264,
    ffmpeg_frames,
    frame_number,
    numbered_frames,
    real_clip,
    remux,
    write_numbered,
)

BACKENDS = ["decord", "pyav"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("videos")
    f = {"numbered": write_numbered(d / "numbered.mp4", 20, fps=10)}
    # A keyframe every 4 frames, so PyAV's seek-and-decode path is exercised as well.
    encode_frames(numbered_frames(20), 10, d / "gop4.mp4", (*LOSSLESS_X264, "-g", "4"))
    f["gop4"] = d / "gop4.mp4"
    f["empty"] = d / "empty.mp4"
    f["empty"].touch()
    f["text"] = d / "notes.mp4"
    f["text"].write_text("this is not a video\n")
    f["audio"] = d / "audio.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=1", str(f["audio"])])
    # moov atom at the end (ffmpeg's default): a cut file has no index at all
    f["truncated"] = d / "truncated.mp4"
    f["truncated"].write_bytes(f["numbered"].read_bytes()[:4000])
    # moov atom first: the index lists frames whose data is missing
    faststart = remux(f["numbered"], d / "faststart.mp4", "-movflags", "+faststart")
    f["truncated_faststart"] = d / "truncated_faststart.mp4"
    data = faststart.read_bytes()
    f["truncated_faststart"].write_bytes(data[: len(data) * 2 // 3])
    f["one_frame"] = write_numbered(d / "one_frame.mp4", 1)
    return f


@pytest.mark.parametrize("backend", BACKENDS)
def test_reads_exact_frames_in_any_order(files: dict[str, Path], backend: str) -> None:
    for name in ("numbered", "gop4"):
        reader = VideoReader(files[name], backend=backend)
        assert reader.backend == backend
        assert (reader.info.num_frames, reader.info.width, reader.info.height) == (20, 96, 64)
        assert reader.info.fps == pytest.approx(10)
        assert reader.info.duration == pytest.approx(2.0)
        order = [7, 0, 19, 7, 13, 2, 3]
        frames = reader.get_frames(order)
        assert frames.shape == (7, 64, 96, 3) and frames.dtype == np.uint8
        assert [frame_number(x) for x in frames] == order
        # pixel for pixel what the ffmpeg command line decodes
        np.testing.assert_array_equal(frames, ffmpeg_frames(files[name])[order])


def test_metadata(files: dict[str, Path]) -> None:
    info = probe(files["gop4"])
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.rotation == 0
    assert info.keyframes == (0, 4, 8, 12, 16)
    assert info.timestamps == pytest.approx([i / 10 for i in range(20)])


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "empty file (0 bytes)"),
        ("text", "not a readable video"),
        ("audio", "no video stream (streams found: audio)"),
        ("truncated", "not a readable video"),
        ("truncated_faststart", "truncated file"),
    ],
)
def test_bad_files_raise_with_path_and_reason(files: dict[str, Path], name: str, reason: str):
    with pytest.raises(VideoReadError) as caught:
        VideoReader(files[name])
    assert caught.value.path == str(files[name])
    assert reason in caught.value.reason
    assert str(files[name]) in str(caught.value)


def test_missing_path_and_directory(tmp_path: Path) -> None:
    with pytest.raises(VideoReadError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(VideoReadError, match="is a directory"):
        probe(tmp_path)


def test_a_loop_over_a_mixed_folder_never_crashes(files: dict[str, Path]) -> None:
    read, failed = {}, {}
    for name, path in files.items():
        try:
            read[name] = VideoReader(path).get_frames([0]).shape
        except VideoReadError as err:
            failed[name] = err.reason
    assert set(read) == {"numbered", "gop4", "one_frame"}
    assert set(failed) == {"empty", "text", "audio", "truncated", "truncated_faststart"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_frame_video(files: dict[str, Path], backend: str) -> None:
    reader = VideoReader(files["one_frame"], backend=backend)
    assert reader.info.num_frames == 1
    frames = reader.get_frames([0, 0, 0])
    assert frames.shape == (3, 64, 96, 3)
    assert [frame_number(x) for x in frames] == [0, 0, 0]
    with pytest.raises(IndexError):
        reader.get_frames([1])


def test_variable_frame_rate(tmp_path: Path) -> None:
    # frames 0-9 every 0.1 s, then frames 10-19 every 1/30 s: a phone switching rates
    path = tmp_path / "vfr.mp4"
    frames = numbered_frames(20)
    run_ffmpeg(
        ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", "96x64", "-r", "30", "-i", "pipe:0",
         "-vf", "setpts='if(lt(N,10),N*0.1,1+(N-10)/30)/TB'", "-fps_mode", "vfr",
         *LOSSLESS_X264, "-pix_fmt", "yuv420p", str(path)],
        stdin=frames.tobytes(),
    )  # fmt: skip
    for backend in BACKENDS:
        reader = VideoReader(path, backend=backend)
        info = reader.info
        assert info.num_frames == 20
        expected = [i * 0.1 for i in range(10)] + [1 + i / 30 for i in range(10)]
        assert info.timestamps == pytest.approx(expected, abs=2e-3)
        assert info.fps == pytest.approx(20 / info.duration)
        assert [frame_number(x) for x in reader.get_frames(range(20))] == list(range(20))


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_phone_video_comes_out_upright(tmp_path: Path, degrees: int) -> None:
    frames = numbered_frames(4, height=32, width=48)
    frames[:, 2:10, 2:12] = 250  # a grey marker in the top-left corner shows the orientation
    src = encode_frames(frames, 10, tmp_path / "src.mp4", LOSSLESS_X264)
    rotated = tmp_path / "rotated.mp4"
    # the display matrix as phones write it; -display_rotation is counter-clockwise
    run_ffmpeg(["-display_rotation", str(degrees), "-i", str(src), "-c", "copy", str(rotated)])
    upright = np.rot90(ffmpeg_frames(src), k=degrees // 90, axes=(1, 2))
    np.testing.assert_array_equal(ffmpeg_frames(rotated), upright)  # the ground truth agrees
    # decord 0.6.0 rotates by itself but fails on some sizes (180 degrees at 48x32), so "auto"
    # reads rotated videos with PyAV
    for backend in ("auto", "pyav"):
        reader = VideoReader(rotated, backend=backend)
        assert reader.info.rotation == degrees
        assert (reader.info.height, reader.info.width) == upright.shape[1:3]
        np.testing.assert_array_equal(reader.get_frames(range(4)), upright)


def test_ten_bit_video_is_read_as_8_bit_rgb(tmp_path: Path) -> None:
    clip = real_clip("bikes", frames=6, height=64)
    path = encode_frames(
        clip, 25, tmp_path / "ten_bit.mp4",
        ("-c:v", "libx265", "-crf", "4", "-x265-params", "log-level=error"), pix_fmt="yuv420p10le",
    )  # fmt: skip
    for backend in BACKENDS:
        reader = VideoReader(path, backend=backend)
        assert reader.info.pix_fmt == "yuv420p10le"
        frames = reader.get_frames(range(6))
        assert frames.shape == clip.shape and frames.dtype == np.uint8
        # near-lossless coding: the picture is the source's, not noise or a wrong bit depth
        assert np.abs(frames.astype(int) - clip).mean() < 3


def test_av1_falls_back_to_pyav(tmp_path: Path) -> None:
    clip = real_clip("bikes", frames=4, height=64)
    path = encode_frames(
        clip, 25, tmp_path / "av1.mp4", ("-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "10")
    )
    reader = VideoReader(path)
    assert reader.info.codec == "av1"
    assert reader.backend == "pyav"
    assert np.abs(reader.get_frames(range(4)).astype(int) - clip).mean() < 4
    with pytest.raises(VideoReadError, match="decord cannot decode"):
        VideoReader(path, backend="decord")


def test_4k_video(tmp_path: Path) -> None:
    frame = np.zeros((2, 2160, 3840, 3), np.uint8)
    frame[:, :1080, :1920] = 200  # top-left quadrant bright: checks size and placement
    path = encode_frames(frame, 25, tmp_path / "uhd.mp4", LOSSLESS_X264)
    reader = VideoReader(path)
    assert (reader.info.width, reader.info.height) == (3840, 2160)
    np.testing.assert_array_equal(reader.get_frames([1]), ffmpeg_frames(path)[1:])


@pytest.mark.parametrize("threads", [1, 2])
def test_long_gop_with_b_frames_reads_exact_frames(tmp_path: Path, threads: int) -> None:
    # B-frames and one keyframe per 48: the reader seeks, decodes forward and skips frames that
    # no other frame references on the way; none of that may change a pixel of what it returns.
    clip = real_clip("bikes", frames=96, height=72)
    path = encode_frames(
        clip, 25, tmp_path / "bframes.mp4",
        ("-c:v", "libx264", "-crf", "23", "-bf", "3", "-g", "48", "-sc_threshold", "0"),
    )  # fmt: skip
    truth = ffmpeg_frames(path)
    rng = np.random.default_rng(threads)
    for _ in range(4):
        idx = np.sort(rng.choice(96, size=6, replace=False))
        with VideoReader(path, threads=threads) as reader:
            np.testing.assert_array_equal(reader.get_frames(idx), truth[idx])
    with VideoReader(path, threads=threads) as reader:  # backwards and repeated, one reader
        for i in (90, 10, 47, 48, 95, 0, 10):
            np.testing.assert_array_equal(reader.get_frames([i])[0], truth[i])
