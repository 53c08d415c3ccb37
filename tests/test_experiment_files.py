"""Every YAML in experiments/ parses against the schema, and runs shrunk (tiny data, a few steps):
the quickstart and the ablations as written, the paper's setup with a tiny LLaVA-OneVision and
score tables for the tiny videos, and the teacher-mix sweep as parent and child MLflow runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.config import load_yaml, parse_experiment
from experiments.sweep import grid_trials, load_sweep, run_sweep, trial_config
from tests.experiments import TinyData, make_tiny_data, shrink, shrink_teachers
from tests.tiny_models import build_tiny_llava_onevision

ROOT = Path(__file__).resolve().parents[1] / "experiments"
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
EXPERIMENTS = sorted(p for p in ROOT.rglob("*.yaml") if p.parent.name != "sweeps")
PAPER = ROOT / "paper_llava_ov_7b.yaml"


def test_the_suite_ships_the_promised_files() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in [*EXPERIMENTS, *SWEEPS]}
    assert {"quickstart.yaml", "paper_llava_ov_7b.yaml", "sweeps/teacher_mix.yaml",
            "sweeps/rounds.yaml"} <= names  # fmt: skip
    assert len([n for n in names if n.startswith("ablations/")]) >= 4


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_experiment_file_parses(path: Path) -> None:
    namespace, _ = parse_experiment([str(path)], instantiate=False)
    assert namespace.rounds >= 1 and namespace.teachers


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_trial_parses(path: Path, tmp_path: Path) -> None:
    sweep, base = load_sweep(path)
    trials = grid_trials(sweep["grid"])
    assert len(trials) >= 2
    for trial in trials:
        config = tmp_path / "trial.yaml"
        config.write_text(yaml.safe_dump(trial_config(base, trial, sweep["name"])))
        namespace, _ = parse_experiment([str(config)], instantiate=False)
        for key, value in trial.overrides.items():
            if key == "rounds":
                assert namespace.rounds == value


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    return make_tiny_data(tmp_path_factory.mktemp("experiment_files"))


def _run(config: dict, tiny: TinyData, name: str) -> dict:
    file = tiny.folder / f"{name}.yaml"
    file.write_text(yaml.safe_dump(config))
    out, uri = tiny.folder / "runs" / name, f"sqlite:///{tiny.folder / 'mlflow.db'}"
    main(["run", str(file), "--output_dir", str(out), "--tracking_uri", uri])
    return json.loads((out / "results.json").read_text())


SHRUNK = [p for p in EXPERIMENTS if p != PAPER]


@pytest.mark.slow
@pytest.mark.parametrize("path", SHRUNK, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_experiment_file_runs_shrunk(path: Path, tiny: TinyData) -> None:
    config = load_yaml(path)
    results = _run(shrink(config, tiny), tiny, path.stem)
    rows = pd.DataFrame(results["rows"])
    rounds = min(config.get("rounds", 3), 2)
    teachers = {f"teacher:{t['name']}" for t in config["teachers"]}
    assert teachers | {f"student:round{rounds}", "ensemble"} <= set(rows.model)
    # the tiny sets hold no stuttering video: the stutter teacher can give a whole set one score
    # (no frozen transition anywhere), whose SRCC is undefined; every other row has one
    constant = rows.model.eq("teacher:stutter")
    assert rows[~constant].srcc.notna().all(), rows[rows.srcc.isna()].to_string()
    assert Path(results["final_checkpoint"]).is_file()


def _paper_tables(tiny: TinyData) -> dict[str, Path]:
    """Score tables for the tiny videos in the formats the paper's teachers write: DOVER's CSV,
    FAST-VQA's labels.txt and a generic CSV (scores: minus the blur level, plus noise)."""
    videos = tiny.videos.assign(name=tiny.videos.path.map(lambda p: Path(p).name))
    score = -videos.level + 0.1 * (videos.index % 3)
    dover = tiny.folder / "dover.csv"
    lines = ["path, aesthetic score, technical score, overall/final score"]
    lines += [f"{n}, 0.5, {s:.3f}, {s:.3f}" for n, s in zip(videos.name, score, strict=True)]
    dover.write_text("\n".join(lines) + "\n")
    fast = tiny.folder / "fastvqa.txt"
    fast.write_text("".join(f"{n}, 0, 0, {s:.3f}\n" for n, s in zip(videos.name, score * 2,
                                                                       strict=True)))  # fmt: skip
    generic = tiny.folder / "minimalistic.csv"
    pd.DataFrame({"path": videos.name, "score": score - 1}).to_csv(generic, index=False)
    return {"dover": dover, "fastvqa": fast, "minimalistic_vqa": generic}


@pytest.mark.slow
def test_paper_setup_runs_shrunk_with_a_tiny_llava_onevision(tiny: TinyData) -> None:
    config = shrink(load_yaml(PAPER), tiny)
    model = str(build_tiny_llava_onevision(tiny.folder / "tiny_llava_ov"))
    tables = _paper_tables(tiny)
    for entry in config["teachers"]:
        args = entry["teacher"]["init_args"]
        if entry["name"] in tables:
            args.update(table=str(tables[entry["name"]]), root=str(tiny.folder / "videos"))
        else:  # the VLM teacher: the tiny model, still 4-bit
            args.update(model=model, frames=2, dtype="float32")
    student = config["student"]["init_args"]
    student.update(model=model, max_seconds=3, pool_to=2, motion="builtin", motion_frames=4,
                   motion_dir=None, gradient_checkpointing=False)  # fmt: skip
    config["ensemble"]["reference"] = "dover"
    config["training"].update(batch_size=2, steps=[2, 2])
    config["training"]["trainer"] = {"accelerator": "cpu", "devices": 1}  # not 8 GPUs in CI
    config["synthetic"]["groups"] = {"spatial": 1.0}
    results = _run(config, tiny, "paper")
    rows = pd.DataFrame(results["rows"])
    assert {"teacher:dover", "teacher:fastvqa", "teacher:minimalistic_vqa", "teacher:qalign",
            "ensemble", "student:round1", "student:round2"} <= set(rows.model)  # fmt: skip
    assert "student:round0" not in set(rows.model)  # score_untrained: false
    assert rows[rows.model.str.startswith("student")].n.eq(18).any()
    anchors = pd.read_csv(tiny.folder / "runs" / "paper" / "anchors.csv")
    assert len(anchors) == 5  # the comparator scores against 5 anchors of spread quality


@pytest.mark.slow
def test_teacher_mix_sweep_is_a_parent_run_with_a_child_per_mix(tiny: TinyData, capsys) -> None:
    sweep, base = load_sweep(ROOT / "sweeps" / "teacher_mix.yaml")
    small = shrink(base, tiny, rounds=1)
    grid = {**sweep["grid"], "rounds": [1]}
    for option in grid["teachers"].values():
        shrink_teachers(option, tiny)
    folder = tiny.folder / "sweep"
    folder.mkdir()
    (folder / "base.yaml").write_text(yaml.safe_dump(small))
    file = folder / "teacher_mix.yaml"
    file.write_text(yaml.safe_dump({"base": "base.yaml", "name": "mix", "grid": grid}))
    uri = f"sqlite:///{tiny.folder / 'mlflow.db'}"
    summary = run_sweep(file, folder / "runs", uri, parallel=2)  # trials as `w2svqa run` processes
    assert set(summary.settings) == {f"rounds=1,teachers={k}" for k in grid["teachers"]}
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("mix")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("sweep") == "mix"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    # the grid in the compare view: each child tagged with its point; the table on the parent
    assert {r.data.tags.get("sweep.teachers") for r in children} == set(grid["teachers"])
    artifacts = [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    assert "summary.csv" in artifacts
    assert "trial 1 of 3 started" in capsys.readouterr().out
    run_sweep(file, folder / "runs", uri)  # again: every trial is skipped
    assert capsys.readouterr().out.count("finished before, skipped") == 3
