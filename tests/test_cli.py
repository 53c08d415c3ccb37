"""The `w2svqa` subcommands that are not covered elsewhere: probe and vmaf."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from datamodules._ffmpeg import encode_frames
from experiments.cli import main
from tests.videos import real_clip


def test_probe_prints_metadata_or_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture):
    good = encode_frames(real_clip(frames=5), 25, tmp_path / "good.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    (tmp_path / "good.json").write_text("{}")  # a corpus's sidecar: not a video, not probed
    with pytest.raises(SystemExit) as exit_:  # a folder: every video file in it, sorted
        main(["data", "probe", str(tmp_path)])
    assert exit_.value.code == 1  # one video could not be read
    out = capsys.readouterr()
    assert "2 video files probed, 1 other files skipped" in out.err
    lines = [json.loads(line) for line in out.out.splitlines()]
    lines = lines[::-1]  # bad.mp4 sorts first
    assert lines[0]["num_frames"] == 5 and lines[0]["codec"] == "h264"
    assert lines[1] == {"path": str(bad), "error": "not a readable video (Invalid data found "
                        "when processing input)"}  # fmt: skip
    main(["data", "probe", str(good)])
    assert json.loads(capsys.readouterr().out)["width"] == 150


def test_vmaf_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clip = real_clip(frames=8, height=96)
    ref = encode_frames(clip, 25, tmp_path / "ref.mp4", ("-c:v", "libx264", "-qp", "0"))
    bad = encode_frames(clip, 25, tmp_path / "bad.mp4", ("-c:v", "libx264", "-crf", "45"))
    csv = tmp_path / "frames.csv"
    main(["vmaf", str(bad), str(ref), "--per_frame", str(csv)])
    score = float(capsys.readouterr().out)
    frames = pd.read_csv(csv)
    assert len(frames) == 8 and list(frames.columns) == ["frame", "vmaf"]
    assert score == pytest.approx(frames.vmaf.mean(), abs=1e-3)
    main(["vmaf", str(ref), str(ref)])
    assert float(capsys.readouterr().out) > score + 20


def test_label_then_pairs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from datamodules.distortions import apply_distortion

    pool = tmp_path / "pool"
    pool.mkdir()
    clip = real_clip("bikes", frames=10, height=64)
    for level in range(4):  # one source, four blur levels: the blur teacher must rank them
        blurred = apply_distortion(clip, 25, "blur", level + 1)
        encode_frames(blurred, 25, pool / f"blur{level}.mp4")
    (pool / "broken.mp4").write_text("not a video")
    scores = tmp_path / "scores"
    for teacher in ("blur", "exposure"):
        main(["label", "--teacher", teacher, "--videos", str(pool),
              "--out", str(scores / f"{teacher}.parquet"), "--workers", "0"])  # fmt: skip
    out = capsys.readouterr()
    assert "4 scored, 0 skipped (already scored), 1 failed" in out.out
    assert "broken.mp4: not a readable video" in out.err
    blur = pd.read_parquet(scores / "blur.parquet").query("status == 'ok'")
    assert blur.sort_values("video_id").score.is_monotonic_decreasing  # more blur, lower score

    pairs = tmp_path / "pairs.parquet"
    main(["pairs", "ensemble", "--scores", str(scores), "--videos", str(pool), "--out", str(pairs),
          "--pairs", "6", "--mix.mapping", "rank"])  # fmt: skip
    table = pd.read_parquet(pairs)
    assert len(table) == 6 and table.level.between(0, 4).all()
    assert "6 ensemble pairs from blur, exposure" in capsys.readouterr().out

    main(["label", "--list"])
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert {"niqe", "blur", "noise", "blockiness", "exposure", "stutter", "score_table"} <= set(
        names
    )


def test_pairs_hard_from_score_tables(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import numpy as np
    import pandas as pd

    from datamodules.ensemble import PAIR_COLUMNS

    rng = np.random.default_rng(0)
    ids = [f"v{i:02d}" for i in range(60)]
    pool = tmp_path / "pool.parquet"
    pd.DataFrame({"video_id": ids, "path": [f"{i}.mp4" for i in ids]}).to_parquet(pool)

    def scores(name: str, ids: list[str], values: np.ndarray) -> Path:
        table = pd.DataFrame({"video_id": ids, "path": ids, "score": values, "native": values,
                              "status": "ok", "error": None})  # fmt: skip
        table.to_parquet(tmp_path / name)
        return tmp_path / name

    teacher = scores("teacher.parquet", ids, rng.normal(size=60))
    # two renditions per source: the student orders the first pair right, the second wrongly
    syn = pd.DataFrame([
        {"first_id": "a_1", "second_id": "a_3", "first_path": "a1.mp4", "second_path": "a3.mp4",
         "level": 4, "source": "spatial", "round": 1, "delta": np.nan, "sigma_delta": np.nan,
         "z": np.nan, "soft_label": 1.0},
        {"first_id": "b_1", "second_id": "b_2", "first_path": "b1.mp4", "second_path": "b2.mp4",
         "level": 3, "source": "spatial", "round": 1, "delta": np.nan, "sigma_delta": np.nan,
         "z": np.nan, "soft_label": 1.0},
    ])[list(PAIR_COLUMNS)]  # fmt: skip
    syn.to_parquet(tmp_path / "synthetic.parquet")
    student_ids = ids + ["a_1", "a_3", "b_1", "b_2"]
    student_values = np.concatenate([rng.normal(size=60), [1.0, 0.0, 0.0, 1.0]])
    student = scores("student.parquet", student_ids, student_values)
    out = tmp_path / "hard.parquet"
    main(["pairs", "hard", "--student", str(student), "--teacher", str(teacher), "--out", str(out),
          "--videos", str(pool), "--synthetic", str(tmp_path / "synthetic.parquet"),
          "--hard.n_gmad_pairs", "10"])  # fmt: skip
    table = pd.read_parquet(out)
    assert (table.source == "hard_gmad").sum() == 10
    wrong = table[table.source == "hard_synthetic"]
    assert wrong[["first_id", "second_id"]].values.tolist() == [["b_1", "b_2"]]
    assert (table["round"] == 2).all()
    assert "11 hard-case pairs for round 2" in capsys.readouterr().out
