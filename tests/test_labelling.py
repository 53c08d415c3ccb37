"""The labelling job: a pool with broken files, failures recorded with reasons, resumption."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.frame_sampling import UniformFrames
from datamodules.video_table import VideoTableError, load_videos
from lightning_modules.scoring import label_videos, read_scores
from lightning_modules.teachers.base import Teacher, VideoItem
from tests.videos import write_numbered


class MeanLevel(Teacher):
    """Mean grey level of 4 frames (lower is better, to exercise the flip); refuses 'refuse' videos
    and returns NaN for 'nan' videos, as a misbehaving real teacher might."""

    name = "mean_level"
    higher_is_better = False

    def sampler(self) -> UniformFrames:
        return UniformFrames(4)

    def score_native(self, item: VideoItem) -> float:
        if "refuse" in item.path:
            raise RuntimeError("cannot score this one")
        return float("nan") if "nan" in item.path else float(item.frames.mean())


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    root = tmp_path / "pool"
    (root / "sub").mkdir(parents=True)
    for i, n in enumerate((5, 10, 15, 20)):
        write_numbered(root / f"clip{i}.mp4", n)
    write_numbered(root / "sub" / "refuse.mp4", 3)
    write_numbered(root / "sub" / "nan.mp4", 3)
    (root / "empty.mp4").touch()
    (root / "text.mkv").write_text("not a video")
    (root / "notes.txt").write_text("ignored: not a video extension")
    return root


def test_broken_files_are_recorded_and_skipped(pool: Path, tmp_path: Path) -> None:
    videos = load_videos(pool)
    assert len(videos) == 8 and "sub/refuse.mp4" in set(videos.video_id)
    out = tmp_path / "scores.parquet"
    summary = label_videos(MeanLevel(), videos, out, batch_size=3, workers=1)
    assert (summary.scored, summary.skipped, summary.failed) == (4, 0, 4)
    table = pd.read_parquet(out).set_index("video_id")
    reasons = table.error.to_dict()
    assert reasons["empty.mp4"] == "empty file (0 bytes)"
    assert reasons["text.mkv"].startswith("not a readable video")
    assert reasons["sub/refuse.mp4"] == "mean_level failed: RuntimeError: cannot score this one"
    assert reasons["sub/nan.mp4"] == "mean_level gave a non-finite score (nan)"
    ok = table[table.status == "ok"]
    # clip i has 5(i+1) numbered frames: longer clips reach brighter frames; lower-is-better flips
    assert ok.native.is_monotonic_increasing
    np.testing.assert_allclose(ok.score, -ok.native)
    assert not (out.parent / "scores.parquet.parts").exists()


def test_rerun_scores_only_what_is_missing(pool: Path, tmp_path: Path) -> None:
    videos = load_videos(pool)
    out = tmp_path / "scores.parquet"
    first = label_videos(MeanLevel(), videos.iloc[:3], out, workers=0)
    assert first.scored == 3
    again = label_videos(MeanLevel(), videos, out, workers=0)
    assert (again.scored, again.skipped, again.failed) == (1, 3, 4)
    assert len(pd.read_parquet(out)) == 8


def test_resumes_from_the_parts_of_a_killed_run(pool: Path, tmp_path: Path) -> None:
    videos = load_videos(pool)
    out = tmp_path / "scores.parquet"
    label_videos(MeanLevel(), videos.iloc[:2], out, workers=0)
    # what a kill leaves: finished batches as part files, no merged table
    parts = tmp_path / "scores.parquet.parts"
    parts.mkdir()
    shutil.move(out, parts / "run-rank0-00000000.parquet")
    assert len(read_scores(out)) == 2
    summary = label_videos(MeanLevel(), videos, out, workers=0)
    assert summary.skipped == 2 and summary.scored == 2
    assert len(pd.read_parquet(out)) == 8 and not parts.exists()


def test_video_tables(tmp_path: Path, pool: Path) -> None:
    table = tmp_path / "list.csv"
    pd.DataFrame({"path": ["pool/clip0.mp4", str(pool / "clip1.mp4")]}).to_csv(table, index=False)
    videos = load_videos(table)
    assert videos.path.tolist() == [str(tmp_path / "pool/clip0.mp4"), str(pool / "clip1.mp4")]
    labels = tmp_path / "labels.txt"
    labels.write_text("pool/clip0.mp4, -1, -1, 3.2\npool/clip2.mp4, -1, -1, 1.5\n")
    assert load_videos(labels).video_id.tolist() == ["pool/clip0.mp4", "pool/clip2.mp4"]
    with pytest.raises(VideoTableError, match="no 'path' column"):
        pd.DataFrame({"file": ["a.mp4"]}).to_csv(tmp_path / "bad.csv", index=False)
        load_videos(tmp_path / "bad.csv")
    with pytest.raises(VideoTableError, match="no such folder"):
        load_videos(tmp_path / "missing")
    (tmp_path / "loop").mkdir()
    (tmp_path / "loop" / "self").symlink_to(tmp_path / "loop")  # a symlink loop is not followed
    write_numbered(tmp_path / "loop" / "a.mp4", 2)
    assert load_videos(tmp_path / "loop").video_id.tolist() == ["a.mp4"]


def test_a_broken_score_table_is_named(pool: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.parquet"
    out.write_text("not parquet")
    with pytest.raises(ValueError, match=r"scores.parquet: not a score table"):
        label_videos(MeanLevel(), load_videos(pool), out, workers=0)
    pd.DataFrame({"video_id": ["a"], "score": [1.0]}).to_parquet(out)
    with pytest.raises(ValueError, match=r"missing columns \['error', 'native', 'path'"):
        read_scores(out)
