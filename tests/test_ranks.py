"""Labelling and scoring on every rank: `w2svqa label` and `w2svqa score` started by torchrun as 2
CPU ranks (gloo) give exactly the table of one process, and a rank killed mid-job resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules._ffmpeg import encode_frames
from experiments.cli import main
from lightning_modules.checkpoints import save_student
from lightning_modules.scoring import shard_of
from lightning_modules.students.compact import CompactStudent
from tests.videos import real_clip

pytestmark = pytest.mark.slow  # each torchrun start imports torch and Lightning in 2 processes


@pytest.fixture(scope="module")
def pool_and_student(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Nine real clips (several crops and lengths of three sources) and one broken file; an
    untrained compact student with the packaged weights."""
    root = tmp_path_factory.mktemp("ranks")
    videos = root / "videos"
    videos.mkdir()
    for name in ("bikes", "carphone", "bigbuckbunny"):
        for start in (0, 4, 8):
            clip = real_clip(name, frames=4 + start // 4, height=40, start=start)
            encode_frames(clip, 10, videos / f"{name}_{start}.mp4")
    (videos / "broken.mp4").write_bytes(b"\x00" * 64)
    student = CompactStudent(frames=2, size=64, hidden=16)
    return videos, save_student(student, root / "student.safetensors")


def torchrun(*args: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """`w2svqa ARGS` as 2 ranks on this machine, one math thread each."""
    launch = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    return _w2svqa(launch, args, kill_at)


def one_process(*args: str) -> None:
    """`w2svqa ARGS` as one process with one math thread: the float bits of a network's scores
    depend on the thread count, so the reference runs with the ranks' count."""
    done = _w2svqa([], args)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _w2svqa(launch: list[str], args, kill_at: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("W2SVQA_KILL_AT", None)
    if kill_at:
        env["W2SVQA_KILL_AT"] = kill_at
    command = [sys.executable, *launch, "-m", "experiments.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_shards_are_whole_batches_dealt_in_turn() -> None:
    np.testing.assert_array_equal(shard_of(7, 2, 2), [0, 0, 1, 1, 0, 0, 1])
    np.testing.assert_array_equal(shard_of(5, 4, 1), [0] * 5)
    assert sorted(np.bincount(shard_of(1001, 4, 3))) == [332, 333, 336]  # disjoint and complete


@pytest.fixture(scope="module")
def one_table(pool_and_student, tmp_path_factory) -> tuple[list[str], Path]:
    """`w2svqa label` arguments (all but --out) and the table one process makes with them."""
    videos, _ = pool_and_student
    args = ["label", "--teacher", "blur", "--videos", str(videos), "--batch_size", "2",
            "--workers", "0"]  # fmt: skip
    table = tmp_path_factory.mktemp("one") / "one.parquet"
    one_process(*args, "--out", str(table))
    return args, table


def test_two_ranks_label_the_table_of_one_process(one_table, tmp_path: Path) -> None:
    args, one = one_table
    two = tmp_path / "two.parquet"
    done = torchrun(*args, "--out", str(two))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # rank 0 alone reports, once: 9 scored, the broken file failed
    assert done.stdout.count("9 scored, 0 skipped (already scored), 1 failed") == 1
    pd.testing.assert_frame_equal(pd.read_parquet(two), pd.read_parquet(one))
    assert not (tmp_path / "two.parquet.parts").exists()
    # again: only the broken file is tried again, so one rank has nothing to score and still joins
    again = torchrun(*args, "--out", str(two))
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 scored, 9 skipped (already scored), 1 failed" in again.stdout


def test_a_killed_rank_resumes_its_own_shard(one_table, tmp_path: Path) -> None:
    args, one = one_table
    two = tmp_path / "two.parquet"
    # rank 1's shard is batches 1 and 3 of 5; it dies after the first of them
    killed = torchrun(*args, "--out", str(two), kill_at="label:1@1")
    assert killed.returncode != 0
    parts = sorted(p.name for p in (tmp_path / "two.parquet.parts").glob("*.parquet"))
    assert sum("-rank1-" in p for p in parts) == 1, parts  # what rank 1 finished is kept
    assert not two.exists()
    resumed = torchrun(*args, "--out", str(two))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    skipped = int(resumed.stdout.split(" skipped")[0].rsplit(", ", 1)[1])
    assert skipped >= 2  # rank 1's finished batch of 2 (and whatever rank 0 finished)
    pd.testing.assert_frame_equal(pd.read_parquet(two), pd.read_parquet(one))


def test_two_ranks_score_with_a_student_as_one_process(pool_and_student, tmp_path) -> None:
    videos, student = pool_and_student
    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    args = ["score", "--checkpoint", str(student), "--batch_size", "2", "--workers", "0"]
    one_process(*args, "--output", str(one), str(videos))
    done = torchrun(*args, "--output", str(two), str(videos))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert pd.read_csv(one).score.notna().sum() == 9
    assert two.read_bytes() == one.read_bytes()  # the same rows, the same float bits
    assert list(tmp_path.glob("*.scores.parquet")) == []  # the shared table went with the CSV


def test_score_under_torchrun_needs_an_output_file(pool_and_student, monkeypatch, capsys):
    videos, student = pool_and_student
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it; refused before any rank joins
    with pytest.raises(SystemExit):
        main(["score", "--checkpoint", str(student), "--workers", "0", str(videos)])
    assert "under torchrun give --output: the ranks cannot share stdout" in capsys.readouterr().err


def test_two_ranks_evaluate_as_one_process(pool_and_student, tmp_path) -> None:
    """`w2svqa evaluate` under torchrun: both ranks score, rank 0 alone evaluates and reports."""
    videos, _ = pool_and_student
    names = sorted(p.name for p in videos.glob("*_*.mp4"))
    labels = tmp_path / "labels.csv"
    labels.write_text("name,mos\n" + "".join(f"{n},{i}\n" for i, n in enumerate(names)))
    args = ["evaluate", "--teacher", "blur", "--dataset", "generic", "--root", str(videos),
            "--labels", str(labels), "--mos_range", "0,10", "--no_mlflow", "--workers", "0",
            "--batch_size", "2"]  # fmt: skip
    one_process(*args, "--output_dir", str(tmp_path / "one"))
    done = torchrun(*args, "--output_dir", str(tmp_path / "two"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one, two = (json.loads((tmp_path / d / "results.json").read_text())["rows"]
                for d in ("one", "two"))  # fmt: skip
    assert two == one and len(one) == 2  # the set and overall, the same numbers
