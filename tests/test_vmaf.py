"""VMAF through libvmaf: sane scores on real footage, alignment in size and time, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from datamodules._ffmpeg import encode_frames
from datamodules.vmaf import VmafError, compute_vmaf, vmaf_of_frames
from tests.videos import LOSSLESS_X264, real_clip

# vmaf_v0.6.1 gives a frame identical to its reference 97.43 when the motion feature is 0 (the
# first frame, still scenes) and 100 otherwise: measured on bikes, bigbuckbunny and carphone at
# 64-144 px, the lowest identical-frame score was 97.428. So "identical" means every frame >= 97.
IDENTICAL_MIN = 97.0


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return real_clip("bikes", frames=16, height=96)


@pytest.fixture(scope="module")
def reference(clip, tmp_path_factory):
    return encode_frames(clip, 25, tmp_path_factory.mktemp("vmaf") / "ref.mp4", LOSSLESS_X264)


def test_identical_clips_score_about_100(clip):
    result = vmaf_of_frames(clip, clip, fps=25)
    assert result.per_frame.dtype == np.float64
    assert len(result.per_frame) == len(clip)
    assert result.per_frame.min() >= IDENTICAL_MIN and result.per_frame.max() <= 100.0
    assert result.mean == pytest.approx(result.per_frame.mean())


def test_heavy_compression_scores_far_lower(clip, reference, tmp_path):
    scores = {}
    for crf in (18, 51):
        path = tmp_path / f"crf{crf}.mp4"
        encode_frames(clip, 25, path, ("-c:v", "libx264", "-crf", str(crf), "-threads", "1"))
        scores[crf] = compute_vmaf(path, reference)
        assert len(scores[crf].per_frame) == len(clip)
    # CRF 18 is visually lossless; CRF 51 is x264's worst. 30 points is about five JNDs.
    assert scores[18].mean > 90
    assert scores[51].mean < scores[18].mean - 30


def test_subsample_scores_every_nth_frame(reference, clip):
    result = compute_vmaf(reference, reference, subsample=3)
    assert len(result.per_frame) == -(-len(clip) // 3)


def test_different_resolution_is_scaled_to_the_reference(clip, reference, tmp_path):
    scores = []
    for height in (48, 24):  # half and quarter of the reference's height
        path = encode_frames(real_clip("bikes", 16, height), 25, tmp_path / f"{height}.mp4",
                             LOSSLESS_X264)  # fmt: skip
        result = compute_vmaf(path, reference)
        assert len(result.per_frame) == len(clip)
        scores.append(result.mean)
    assert IDENTICAL_MIN > scores[0] > scores[1]  # less resolution, lower score


def test_different_frame_count_compares_the_shorter(clip, reference, tmp_path):
    short = encode_frames(clip[:7], 25, tmp_path / "short.mp4", LOSSLESS_X264)
    for dis, ref in ((short, reference), (reference, short)):
        result = compute_vmaf(dis, ref)
        assert len(result.per_frame) == 7
        assert result.per_frame.min() >= IDENTICAL_MIN  # same frames, in step


def test_different_frame_rate_is_aligned_by_time(clip, reference, tmp_path):
    # The same 0.64 s at 12.5 fps: brought to 25 fps, frame 2k is reference frame 2k exactly and
    # frame 2k+1 is a repeat of it. Aligned by index instead, nearly every frame would differ.
    half_rate = encode_frames(clip[::2], 12.5, tmp_path / "half.mp4", LOSSLESS_X264)
    result = compute_vmaf(half_rate, reference)
    assert len(result.per_frame) == len(clip)
    assert result.per_frame[0::2].min() >= IDENTICAL_MIN
    assert result.per_frame[1::2].mean() < result.per_frame[0::2].mean() - 10


@pytest.mark.parametrize("fps", [30, 24])
def test_rounded_container_timestamps_do_not_shift_frames(clip, tmp_path, fps):
    # Matroska stores milliseconds, so 30 fps becomes 0, 33, 67, 100 ms; paired by timestamp with
    # an exact-rate MP4 of the same frames, every third frame used to meet its neighbour.
    mp4 = encode_frames(clip, fps, tmp_path / "a.mp4", LOSSLESS_X264)
    mkv = encode_frames(clip, fps, tmp_path / "b.mkv", LOSSLESS_X264)
    for dis, ref in ((mp4, mkv), (mkv, mp4)):
        result = compute_vmaf(dis, ref)
        assert len(result.per_frame) == len(clip)
        assert result.per_frame.min() >= IDENTICAL_MIN


def test_file_names_never_reach_the_filter_graph(reference, tmp_path):
    # Filter-graph syntax characters in a name would break (or inject into) the graph if the name
    # were written into it; they must be harmless because names go through -i only.
    odd = shutil.copy(reference, tmp_path / "a,b;[c]:'d=e.mp4")
    assert compute_vmaf(odd, reference).per_frame.min() >= IDENTICAL_MIN


def test_unreadable_file_gives_an_error_naming_both_files(reference, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is a text file, not a video\n")
    with pytest.raises(VmafError) as err:
        compute_vmaf(fake, reference)
    assert str(fake) in str(err.value) and str(reference) in str(err.value)
    with pytest.raises(VmafError, match="no such file"):
        compute_vmaf(reference, tmp_path / "missing.mp4")
