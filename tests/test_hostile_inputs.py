"""Hostile inputs: a pool where every kind of bad file sits beside valid videos with odd names, and
file names written to break a shell or ffmpeg's command line. Nothing may crash, hang or run."""

from __future__ import annotations

import errno
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import datamodules._ffmpeg as ffmpeg_module
from datamodules import video_reader
from datamodules._ffmpeg import encode_frames, run_ffmpeg
from datamodules.distortions import apply_distortion
from datamodules.synthetic_pairs import SyntheticPairConfig, build_synthetic_pairs, plan_pairs
from datamodules.video_reader import VideoReader, VideoReadError, probe
from datamodules.video_table import load_videos
from datamodules.vmaf import compute_vmaf
from lightning_modules.scoring import label_videos
from lightning_modules.teachers import create_teacher
from tests.videos import LOSSLESS_X264, real_clip

# Copies of valid.mp4 under names that break careless quoting, option parsing or encodings.
ODD_NAMES = ["with space.mp4", "it's.mp4", 'say "hi".mp4', "ünïcode 漢字 🎬.mp4", "-i.mp4",
             "--help.mp4", "sub/inner.mp4"]  # fmt: skip
READABLE = ["valid.mp4", *ODD_NAMES, "rotated.mp4", "one_frame.mp4", "8k.mp4", "av1.mp4"]
# Each bad file and the reason the reader (and so the labelling job) gives for it.
BAD = {
    "zero.mp4": "empty file (0 bytes)",
    "truncated.mp4": "an MP4 without its index (moov box): cut short",
    "text.mp4": "not a readable video (Invalid data found when processing input)",
    "audio.mp4": "no video stream (streams found: audio)",
    "playlist.mp4": "a playlist (concat) that names other files, not a video",
    "fifo.mp4": "not a regular file (a named pipe)",  # opened, it would block forever
    "devzero.mp4": "not a regular file (a character device)",  # read, it would never end
    "dangling.mp4": "no such file (a symbolic link to a missing target)",
    "selfloop.mp4": f"cannot stat ({os.strerror(errno.ELOOP)})",
}
EIGHT_K = (7680, 4320)
# Lossless in RGB up to the YUV conversion's rounding: what was written is what must be read.
LOSSLESS_444 = dict(codec_args=LOSSLESS_X264, pix_fmt="yuv444p")


def _has_encoder(name: str) -> bool:
    return f" {name} " in run_ffmpeg(["-encoders"]).decode()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile") / "pool"
    (root / "sub").mkdir(parents=True)
    clip = real_clip("bikes", frames=6, height=48)  # (6, 48, 112, 3)
    valid = encode_frames(clip, 10, root / "valid.mp4", LOSSLESS_X264)
    data = valid.read_bytes()
    for name in ODD_NAMES:
        (root / name).write_bytes(data)
    (root / "sub" / "parent").symlink_to("..")  # a folder loop: sub/parent/sub/parent/...
    encode_frames(clip[:1], 10, root / "one_frame.mp4", LOSSLESS_X264)
    # the display matrix as phones write it (-display_rotation: counter-clockwise degrees)
    run_ffmpeg(
        ["-display_rotation", "90", "-i", str(valid), "-c", "copy", str(root / "rotated.mp4")]
    )
    if _has_encoder("libaom-av1"):
        av1 = ("-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "30", "-threads", "1")
        encode_frames(clip[:4], 10, root / "av1.mp4", av1)
    # One 8K frame, top-left quadrant white: cheap to encode (flat), 100 MB once decoded to RGB.
    w, h = EIGHT_K
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c=black:s={w}x{h}:r=1,drawbox=w={w // 2}:h={h // 2}"
                ":c=white:t=fill", "-frames:v", "1", "-c:v", "libx264", "-preset", "ultrafast",
                "-pix_fmt", "yuv420p", str(root / "8k.mp4")])  # fmt: skip
    (root / "zero.mp4").touch()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov at the end: cut off
    (root / "text.mp4").write_text("a text file, renamed\n")
    # read as what it lists, it would pass valid.mp4's frames off as its own
    (root / "playlist.mp4").write_text("ffconcat version 1.0\nfile valid.mp4\n")
    for name in ("audio.mp4", "audio.m4a"):
        run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:duration=0.5", str(root / name)])
    os.mkfifo(root / "fifo.mp4")
    (root / "devzero.mp4").symlink_to("/dev/zero")
    (root / "dangling.mp4").symlink_to(root / "gone.mp4")
    (root / "selfloop.mp4").symlink_to(root / "selfloop.mp4")
    (root / "folder.mp4").mkdir()  # a folder with a video's name is not a video
    (root / "notes.txt").write_text("not a video extension")
    # Bytes that are not UTF-8 (PEP 383 gives them to Python as lone surrogates).
    with open(os.path.join(os.fsencode(root), b"latin1-\xe9t\xe9.mp4"), "wb") as f:
        f.write(data)
    return root


@pytest.fixture(scope="module")
def videos(pool: Path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the warning is test_load_videos's business
        return load_videos(pool)


def test_load_videos_lists_video_files_without_following_the_loop(pool: Path) -> None:
    with pytest.warns(UserWarning, match=r"skipped 1 video\(s\) whose names are not valid UTF-8"
                      r".*latin1-\\xe9t\\xe9\.mp4"):  # fmt: skip
        videos = load_videos(pool)
    present = [name for name in READABLE if (pool / name).exists()]
    assert sorted(videos.video_id) == sorted([*present, *BAD])  # no audio.m4a, folder.mp4
    assert videos.path.tolist() == [str(pool / v) for v in videos.video_id]


@pytest.mark.parametrize("name", sorted(BAD))
def test_probe_gives_the_reason_for_each_bad_file(pool: Path, name: str) -> None:
    with pytest.raises(VideoReadError) as caught:
        probe(pool / name)
    assert caught.value.path == str(pool / name)
    assert BAD[name] in caught.value.reason


def test_odd_but_valid_videos_are_read(pool: Path) -> None:
    truth = VideoReader(pool / "valid.mp4").get_frames(range(6))
    for name in ODD_NAMES:
        np.testing.assert_array_equal(VideoReader(pool / name).get_frames(range(6)), truth)
    rotated = VideoReader(pool / "rotated.mp4")
    assert rotated.info.rotation == 90 and (rotated.info.width, rotated.info.height) == (48, 112)
    np.testing.assert_array_equal(rotated.get_frames(range(6)), np.rot90(truth, 1, axes=(1, 2)))
    one = VideoReader(pool / "one_frame.mp4")
    assert one.info.num_frames == 1
    np.testing.assert_array_equal(one.get_frames([0, 0]), truth[[0, 0]])


def test_av1_video_is_read(pool: Path) -> None:
    if not (pool / "av1.mp4").exists():
        pytest.skip("the bundled ffmpeg has no libaom-av1 encoder to make an AV1 file with")
    reader = VideoReader(pool / "av1.mp4")
    assert reader.info.codec == "av1" and reader.get_frames(range(4)).shape == (4, 48, 112, 3)


def test_8k_is_read_and_bigger_is_refused(pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w, h = EIGHT_K
    with VideoReader(pool / "8k.mp4") as reader:
        assert (reader.info.width, reader.info.height, reader.info.num_frames) == (w, h, 1)
        frame = reader.get_frames([0])[0]
    assert frame[: h // 2, : w // 2].min() > 230 and frame[h // 2 :].max() < 25  # in its place
    # The limit, 8192x4352, is more than any 8K stream holds; lowered, the same file is refused
    # (before a frame is decoded) with the size and the limit in the reason.
    monkeypatch.setattr(video_reader, "MAX_FRAME_PIXELS", w * h - 1)
    with pytest.raises(VideoReadError, match=r"frame size 7680x4320 is larger than the reader"):
        probe(pool / "8k.mp4")


def test_unreadable_file_and_folder_are_reported(tmp_path: Path) -> None:
    clip = real_clip("bikes", 2, 48)
    (tmp_path / "locked").mkdir()
    encode_frames(clip, 10, tmp_path / "locked" / "hidden.mp4", LOSSLESS_X264)
    path = encode_frames(clip, 10, tmp_path / "locked.mp4", LOSSLESS_X264)
    path.chmod(0)
    (tmp_path / "locked").chmod(0)
    try:
        try:
            path.open("rb").close()
        except PermissionError:
            pass
        else:
            pytest.skip("running as root (or with CAP_DAC_OVERRIDE): chmod 000 does not stop it")
        with pytest.raises(VideoReadError, match=r"permission denied \(the file is not readable"):
            probe(path)
        with pytest.warns(UserWarning, match=r"could not list 1 folder\(s\).*locked \(Permiss"):
            assert load_videos(tmp_path).video_id.tolist() == ["locked.mp4"]
    finally:
        path.chmod(0o644)
        (tmp_path / "locked").chmod(0o755)


def test_labelling_records_every_bad_file_and_scores_the_rest(
    pool: Path, videos: pd.DataFrame, tmp_path: Path
) -> None:
    # num_frames=2: the blur teacher makes float copies of whole frames, 8K ones included
    teacher = create_teacher("blur", num_frames=2)
    summary = label_videos(teacher, videos, tmp_path / "scores.parquet", batch_size=4, workers=2)
    table = pd.read_parquet(tmp_path / "scores.parquet").set_index("video_id")
    assert (summary.scored, summary.failed) == (len(videos) - len(BAD), len(BAD))
    ok = table[table.status == "ok"]
    assert set(ok.index) == set(videos.video_id) - set(BAD)
    assert ok.score.notna().all() and ok.error.isna().all()
    # byte-identical copies under odd names score exactly as the original
    assert (ok.loc[ODD_NAMES, "score"] == ok.loc["valid.mp4", "score"]).all()
    failed = table[table.status == "failed"]
    assert failed.score.isna().all()
    for name, reason in BAD.items():
        assert reason in failed.loc[name, "error"], name


def test_synthetic_pairs_skip_sources_that_cannot_be_read(
    videos: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    sources = videos[videos.video_id != "8k.mp4"]  # rendering 8K would only cost time here
    config = SyntheticPairConfig(pairs=12, groups={"spatial": 1}, max_seconds=1, workers=1)
    planned = set(plan_pairs(sources, config).first.map(lambda r: r[0]))
    assert planned & set(BAD), "the plan should draw some bad sources: change its seed"
    pairs = build_synthetic_pairs(sources, tmp_path, config)
    used = set(pairs.first_id.str.split("#").str[0]) | set(pairs.second_id.str.split("#").str[0])
    assert used == planned - set(BAD)
    assert all(Path(p).exists() for p in pairs.first_path) and len(pairs) > 0
    skipped = {}  # path -> reason, from the lines the builder prints
    for line in capsys.readouterr().out.splitlines():
        if line.startswith("synthetic pairs: skipped "):
            path, reason = line.removeprefix("synthetic pairs: skipped ").split(": ", 1)
            skipped[path] = reason
    path_of = sources.set_index("video_id").path
    assert set(skipped) == {path_of[name] for name in planned & set(BAD)}
    for name in planned & set(BAD):
        assert BAD[name] in skipped[path_of[name]]


# Names written to run a command through a shell, to be an ffmpeg option (leading dash) or an
# ffmpeg protocol (`pipe:1` is standard output), or to split a filter graph (`,` `;` `:` `'`).
DASH_NAME = """-i 'q' "dq"; $(touch pwned) `touch pwned`, ü漢 a:b.mp4"""
SCHEME_NAME = """pipe:1 $(touch pwned);'x',ü.mp4"""


def test_hostile_names_are_files_and_nothing_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Relative names in the current folder: an absolute path would hide a leading dash.
    monkeypatch.chdir(tmp_path)
    real_run = subprocess.run

    def checked_run(cmd, *args, **kwargs):  # every ffmpeg call of the suite passes through here
        assert isinstance(cmd, list) and not kwargs.get("shell", False)
        named = [a for a in cmd if "pwned" in a]
        assert all(a.startswith(f"file:{tmp_path}/") for a in named), named
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(ffmpeg_module.subprocess, "run", checked_run)
    clip = real_clip("bikes", frames=8, height=48)
    blurred = apply_distortion(clip, 10, "blur", 3)  # sigma 2
    # the video reader and the distortion simulator's encoder, on both names
    for name, frames in ((DASH_NAME, clip), (SCHEME_NAME, blurred)):
        encode_frames(frames, 10, name, **LOSSLESS_444)
        assert Path(name).is_file()
        with VideoReader(name) as reader:
            assert np.abs(reader.get_frames(range(8)).astype(int) - frames).max() <= 2
    # VMAF: names go to -i; both files are what they say (identical scores high, blurred low)
    same = compute_vmaf(DASH_NAME, DASH_NAME)
    assert same.per_frame.min() >= 97
    assert compute_vmaf(SCHEME_NAME, DASH_NAME).mean < same.mean - 10
    # the labelling job, from a CSV table in the current folder (paths relative to it)
    pd.DataFrame({"path": [DASH_NAME, SCHEME_NAME]}).to_csv("list.csv", index=False)
    videos = load_videos("list.csv")
    assert videos.video_id.tolist() == [DASH_NAME, SCHEME_NAME]
    label_videos(create_teacher("blur", num_frames=2), videos, "scores.parquet", workers=0)
    scores = pd.read_parquet("scores.parquet").set_index("video_id")
    assert (scores.status == "ok").all()
    assert scores.score[SCHEME_NAME] < scores.score[DASH_NAME]  # the blurred one is worse
    # synthetic renditions of a source with such a name (read in a worker process)
    config = SyntheticPairConfig(pairs=2, groups={"spatial": 1}, max_seconds=1, workers=1)
    assert len(build_synthetic_pairs(videos, "cache", config)) == 2
    # nothing ran: no file but the ones written on purpose
    made = {DASH_NAME, SCHEME_NAME, "list.csv", "scores.parquet", "cache"}
    assert {p.name for p in tmp_path.iterdir()} == made
    assert not any(p.name == "pwned" for p in tmp_path.rglob("*"))
