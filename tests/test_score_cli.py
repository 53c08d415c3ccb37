"""`w2svqa score`: files and folders in, one CSV row per video out, broken files reported, the
same score every time; and a student checkpoint as a labelling teacher."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from datamodules._ffmpeg import encode_frames
from experiments.cli import main
from lightning_modules.checkpoints import save_student
from lightning_modules.students.compact import CompactStudent
from tests.videos import real_clip


@pytest.fixture(scope="module")
def folder_and_student(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("score")
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    encode_frames(real_clip("bikes", frames=4, height=48), 10, videos / "bikes.mp4")
    encode_frames(real_clip("carphone", frames=4, height=48), 10, videos / "sub" / "car.mp4")
    (videos / "broken.mp4").write_bytes(b"\x00" * 100)
    student = CompactStudent(frames=2, size=64, hidden=16)  # packaged weights, untrained head
    return videos, save_student(student, root / "student.safetensors")


def test_score_a_folder_with_a_broken_file(folder_and_student, tmp_path: Path) -> None:
    videos, student = folder_and_student
    out = tmp_path / "scores.csv"
    main(["score", "--checkpoint", str(student), "--output", str(out), "--workers", "0",
          str(videos)])  # fmt: skip
    table = pd.read_csv(out)
    assert list(table.columns) == ["path", "score", "error"]
    assert sorted(Path(p).name for p in table.path) == ["bikes.mp4", "broken.mp4", "car.mp4"]
    broken = table[table.path.str.endswith("broken.mp4")].iloc[0]
    assert pd.isna(broken.score) and isinstance(broken.error, str) and broken.error
    good = table[~table.path.str.endswith("broken.mp4")]
    assert good.score.notna().all() and good.error.isna().all()

    again = tmp_path / "again.csv"  # same video, same score, every time (and batch-independent)
    files = [str(videos / "sub" / "car.mp4"), str(videos / "bikes.mp4")]
    main(["score", "--checkpoint", str(student), "--output", str(again), "--batch_size", "1",
          "--workers", "0", *files])  # fmt: skip
    both = table.merge(pd.read_csv(again), on="path", suffixes=("", "_again"))
    assert len(both) == 2
    assert (both.score - both.score_again).abs().max() < 1e-5


def test_score_with_a_teacher_to_stdout(folder_and_student, capsys) -> None:
    videos, _ = folder_and_student
    main(["score", "--teacher", "blur", "--workers", "0", str(videos / "bikes.mp4")])
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert len(table) == 1 and table.score.notna().all()


def test_score_needs_exactly_one_scorer(folder_and_student) -> None:
    videos, student = folder_and_student
    with pytest.raises(SystemExit, match="exactly one"):
        main(["score", str(videos)])


def test_a_student_checkpoint_labels_a_pool_as_a_teacher(folder_and_student, tmp_path) -> None:
    videos, student = folder_and_student
    config = tmp_path / "teacher.yaml"
    config.write_text(f"name: student\nargs:\n  checkpoint: {student}\n")
    out = tmp_path / "round1.parquet"
    main(["label", "--teacher", str(config), "--videos", str(videos), "--out", str(out),
          "--workers", "0"])  # fmt: skip
    table = pd.read_parquet(out)
    assert (table.status == "ok").sum() == 2 and (table.status == "failed").sum() == 1


def test_train_names_a_missing_pair_table(tmp_path: Path) -> None:
    missing = tmp_path / "pairs.parquet"
    with pytest.raises(SystemExit, match="pairs.parquet: no such pair table"):
        main(["train", "--pairs", str(missing), "--val", ""])
