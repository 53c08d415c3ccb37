"""Kill and resume: a shrunk quickstart SIGKILLed during labelling, pair building, training
(mid-epoch) and evaluation, then run again with the same command, ends with the same results as
an uninterrupted run; and the same config and seed give byte-identical pair tables."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from datamodules._faults import ENV
from experiments.config import load_yaml
from experiments.stages import file_digest
from tests.experiments import TinyData, make_tiny_data, shrink

QUICKSTART = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
# label batches of 4 videos: 5 per classical teacher on the 18 tiny videos; past the teachers'
# 10 batches, the 12th is the round-1 student's scoring, i.e. evaluation
KILLS = {
    "labelling": "label:3",
    "pairs": "pairs:2",
    "training": "train:9",
    "evaluation": "label:12",
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    return make_tiny_data(tmp_path_factory.mktemp("resume"))


def _config(tiny: TinyData, name: str) -> Path:
    """The quickstart shrunk, with its own cache (so every run starts cold), two classical
    teachers (the supervised ones are tested elsewhere), the MLP head trained by SGD and a
    checkpoint every 4 steps."""
    config = shrink(load_yaml(QUICKSTART), tiny)
    config["data"]["cache"] = str(tiny.folder / name / "cache")
    config["student"]["init_args"]["feature_cache"] = str(tiny.folder / name / "cache" / "f")
    config["teachers"] = config["teachers"][:2]
    # the quickstart's ridge head is fitted in one solve; a kill mid-epoch needs the SGD path
    config["student"]["init_args"]["head"] = "mlp"
    config["training"].update(steps=[14, 10], checkpoint_every=4, curve_every=2)
    file = tiny.folder / f"{name}.yaml"
    file.write_text(yaml.safe_dump(config))
    return file


def _run(config: Path, out: Path, kill: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if kill:
        env[ENV] = kill
    argv = [sys.executable, "-m", "experiments.cli", "run", str(config), "--output_dir", str(out),
            "--no_mlflow"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


def _rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


@pytest.fixture(scope="module")
def reference(tiny: TinyData) -> Path:
    out = tiny.folder / "reference"
    done = _run(_config(tiny, "reference"), out)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(KILLS))
def test_a_killed_run_resumes_to_the_same_results(stage: str, tiny: TinyData, reference) -> None:
    config, out = _config(tiny, stage), tiny.folder / stage
    killed = _run(config, out, KILLS[stage])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (out / "results.json").exists()
    if stage == "training":  # killed mid-epoch, after the step-8 checkpoint
        assert (out / "round1" / "student.lightning" / "last.ckpt").is_file()
    again = _run(config, out)
    assert again.returncode == 0, again.stderr[-3000:]
    if stage == "training":
        assert "Restoring states from the checkpoint" in again.stdout + again.stderr
        assert not (out / "round1" / "student.lightning").exists()  # gone once the file is made
        # the curve keeps the killed run's rows up to the checkpoint and goes on from there
        curve, whole = (pd.read_csv(d / "round1" / "student_curve.csv") for d in (out, reference))
        assert curve.step.tolist() == [2, 4, 6, 8, 10, 12, 14]
        pd.testing.assert_frame_equal(curve, whole)
    assert _rows(out) == _rows(reference)


def test_same_config_and_seed_give_identical_pairs_and_metrics(tiny: TinyData, reference) -> None:
    out = tiny.folder / "again"
    done = _run(_config(tiny, "again"), out)
    assert done.returncode == 0, done.stderr[-3000:]
    tables = sorted(p.relative_to(reference) for p in reference.glob("round*/*_pairs.parquet"))
    assert len(tables) >= 4
    for table in tables:
        a, b = (pd.read_parquet(d / table) for d in (out, reference))
        if not (a.first_path + a.second_path).str.contains("/cache/").any():  # pool paths only
            assert file_digest(out / table) == file_digest(reference / table), table
            continue
        # renditions (synthetic pairs, and hard cases drawn from them) live in each run's own
        # cache: the same table once that folder is named alike
        for column in ("first_path", "second_path"):
            a[column] = a[column].str.replace(str(tiny.folder / "again"), "CACHE")
            b[column] = b[column].str.replace(str(tiny.folder / "reference"), "CACHE")
        pd.testing.assert_frame_equal(a, b)
    assert _rows(out) == _rows(reference)
    students = [pd.read_parquet(d / "round2" / "student_scores.parquet") for d in (out, reference)]
    assert students[0].score.tolist() == students[1].score.tolist()
