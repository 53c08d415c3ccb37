"""The round runner end to end on tiny real footage: two rounds, teachers and student evaluated,
results.json and the MLflow run written, a re-run skipping every stage; the config's errors."""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from experiments.cli import main
from experiments.config import ConfigError, parse_experiment
from experiments.tracking import running_ui
from tests.students import blur_ladder

STUDENT = {"frames": 2, "size": 64, "hidden": 32, "dropout": 0.0}


def tiny_experiment(folder: Path, videos: pd.DataFrame, **changes) -> dict:
    """A real experiment, shrunk: the blur ladder as pool, labelled and evaluation set."""
    table = folder / "ladder.parquet"
    videos.to_parquet(table, index=False)
    firsts = folder / "clean_and_mild.parquet"
    videos[videos.level <= 3].to_parquet(firsts, index=False)
    config = {
        "name": "tiny",
        "rounds": 2,
        "data": {
            "pool": str(table), "labelled": str(table), "cache": str(folder / "cache"),
            "eval": {"ladder": str(table), "mild": str(firsts)},
        },
        "teachers": [
            {"name": "blur", "teacher": {"class_path":
             "lightning_modules.teachers.classical.BlurTeacher"}},
            {"name": "blockiness", "weight": 0.5, "teacher": {"class_path":
             "lightning_modules.teachers.classical.BlockinessTeacher"}},
        ],
        "student": {
            "class_path": "lightning_modules.students.compact.CompactStudent",
            "init_args": {**STUDENT, "feature_cache": str(folder / "cache" / "features")},
        },
        "ensemble": {"pairs": [40, 20]},
        "synthetic": {"pairs": 6, "groups": {"spatial": 1.0}, "workers": 1},
        "iteration": {"hard_cases": {"n_gmad_pairs": 10}, "init": "continue"},
        "training": {"steps": [12, 8], "batch_size": 4, "workers": 0,
                     "optim": {"lr": 0.003}, "curve_every": 4},
    }  # fmt: skip
    for key, value in changes.items():
        config[key] = value
    return config


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("runner")
    (folder / "videos").mkdir()
    return folder, blur_ladder(folder / "videos")


@pytest.fixture(scope="module")
def finished(ladder) -> tuple[Path, dict, str, Path]:
    folder, videos = ladder
    config = folder / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(folder, videos)))
    out, uri = folder / "run", f"sqlite:///{folder / 'mlflow.db'}"
    main(["run", str(config), "--output_dir", str(out), "--tracking_uri", uri])
    return out, json.loads((out / "results.json").read_text()), uri, config


def test_results_json_has_every_model_on_every_set(finished) -> None:
    out, results, _, _ = finished
    rows = pd.DataFrame(results["rows"])
    expected = {"teacher:blur", "teacher:blockiness", "ensemble", "ensemble:round2",
                "student:round0", "student:round1", "student:round2"}  # fmt: skip
    assert set(rows.model) == expected
    assert set(rows.set) == {"ladder", "mild"}
    assert len(rows) == len(expected) * 2
    for column in ("srcc", "plcc", "krcc", "rmse", "n"):
        assert rows[column].notna().all(), column
    assert (rows[rows.set == "ladder"].n == 18).all()
    assert Path(results["final_checkpoint"]) == out / "round2" / "student.safetensors"
    assert Path(results["final_checkpoint"]).is_file()
    # the final student, calibrated on data.labelled (the ladder: mos = -level)
    from lightning_modules.checkpoints import read_calibration

    calibration = read_calibration(results["calibrated_student"])
    assert Path(results["calibrated_student"]) == out / "round2" / "student_calibrated.safetensors"
    assert calibration.scale == "mos as in ladder.parquet (-5 to 0)"
    assert calibration.videos == 18 and calibration.fitted_on == "ladder.parquet"
    # round 2 trained on round 1's pairs, its own ensemble pairs and hard cases
    for name in ("round1/ensemble_pairs", "round1/synthetic_pairs", "round2/ensemble_pairs",
                 "round2/hard_pairs"):  # fmt: skip
        assert (out / f"{name}.parquet").is_file(), name
    hard = pd.read_parquet(out / "round2" / "hard_pairs.parquet")
    assert (hard["round"] == 2).all()
    scores = pd.read_parquet(out / "round1" / "student_scores.parquet")
    synthetic = pd.read_parquet(out / "round1" / "synthetic_pairs.parquet")
    assert (scores.status == "ok").all()  # pool, sets and every rendition
    assert set(synthetic.first_id) <= set(scores.video_id)
    predictions = pd.read_csv(out / "round2" / "predictions_ladder.csv")
    assert list(predictions.columns) == ["video_id", "path", "mos", "prediction"]


def test_the_student_learns_the_blur_order(finished) -> None:
    rows = pd.DataFrame(finished[1]["rows"]).set_index(["model", "set"])
    assert rows.loc[("student:round2", "ladder"), "srcc"] > 0.6


def test_the_mlflow_run_holds_params_metrics_and_artifacts(finished) -> None:
    out, results, uri, _ = finished
    assert results["mlflow"]["tracking_uri"].startswith("sqlite:")
    client = MlflowClient(uri)
    run = client.get_run(results["mlflow"]["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["rounds"] == "2"
    assert run.data.params["teachers.1.weight"] == "0.5"
    assert {"git_commit", "config_hash", "seed"} <= set(run.data.tags)
    history = client.get_metric_history(run.info.run_id, "ladder/srcc")
    assert sorted(m.step for m in history) == [1, 2]
    assert client.get_metric_history(run.info.run_id, "teacher:blur/ladder/srcc")
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {
        "config.yaml",
        "results.json",
        "pair_statistics.csv",
        "checkpoint",
        "plots",
    } <= artifacts
    round2 = {a.path for a in client.list_artifacts(run.info.run_id, "predictions/round2")}
    assert "predictions/round2/predictions_ladder.csv" in round2


CURVE_STEPS = [4, 8, 12, 16, 20]  # every 4 steps and each round's last; round 2 starts at 12


@pytest.mark.slow  # the UI server imports MLflow and FastAPI: 5-11 s on 2 cores
def test_the_ui_server_serves_each_rounds_training_curve(finished) -> None:
    out, results, uri, _ = finished
    run_id = results["mlflow"]["run_id"]
    with running_ui(uri) as url:
        curves = {}
        for key in ("train/loss", "train/lr", "train/grad_norm"):
            query = urllib.parse.urlencode({"run_id": run_id, "metric_key": key})
            with urllib.request.urlopen(f"{url}/api/2.0/mlflow/metrics/get-history?{query}") as r:
                curves[key] = sorted((m["step"], m["value"]) for m in json.load(r)["metrics"])
        query = urllib.parse.urlencode({"experiment_name": "tiny"})
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/get-by-name?{query}") as r:
            tags = {t["key"]: t["value"] for t in json.load(r)["experiment"]["tags"]}
    for key, points in curves.items():
        assert [step for step, _ in points] == CURVE_STEPS, key  # two and three points a round
        assert all(math.isfinite(value) for _, value in points), key
    assert all(value > 0 for _, value in curves["train/lr"] + curves["train/grad_norm"])
    # the same numbers as the round's own table beside its student file
    round2 = pd.read_csv(out / "round2" / "student_curve.csv")
    assert round2.step.tolist() == [4, 8]
    assert [v for _, v in curves["train/loss"][3:]] == pytest.approx(round2.loss.tolist())
    # the UI opens the experiment in its model-training view, not the GenAI one
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_a_rerun_skips_every_stage_and_gives_the_same_rows(finished, capsys) -> None:
    out, results, uri, config = finished
    main(["run", str(config), "--output_dir", str(out), "--tracking_uri", uri])
    again = json.loads((out / "results.json").read_text())
    # the re-run's MLflow run shows the curves of the rounds it did not train again
    history = MlflowClient(uri).get_metric_history(again["mlflow"]["run_id"], "train/loss")
    assert sorted(m.step for m in history) == CURVE_STEPS
    stages = pd.DataFrame(again["timings"])
    made = stages[~stages.skipped & ~stages.stage.str.startswith("score with")]
    assert made.empty, made
    assert again["rows"] == results["rows"]
    printed = capsys.readouterr().out
    assert "student:round2" in printed  # the table is printed, then the verdict per set
    verdict = {v["set"]: v for v in again["verdict"]}
    assert set(verdict) == {"ladder", "mild"} and verdict["mild"]["student"] == "student:round2"
    rows = pd.DataFrame(again["rows"]).set_index(["model", "set"]).srcc
    best = max(rows["teacher:blur", "mild"], rows["teacher:blockiness", "mild"])
    assert verdict["mild"]["minus_best_teacher"] == rows["student:round2", "mild"] - best
    assert f"mild: student:round2 SRCC {rows['student:round2', 'mild']:.3f}" in printed


def test_overrides_reach_the_config_and_wrong_keys_fail_before_work(ladder, tmp_path) -> None:
    folder, videos = ladder
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(folder, videos)))
    namespace, exp = parse_experiment(
        [str(config), "--rounds", "3", "--teachers.0.weight", "0.25", "--training.steps", "[2]"]
    )
    assert exp.rounds == 3 and exp.teachers[0].weight == 0.25 and exp.training.steps == [2]
    assert namespace.teachers[0].weight == 0.25
    with pytest.raises(ConfigError, match="teachers has 2 items"):
        parse_experiment([str(config), "--teachers.7.weight", "1"])
    # A typo on the command line is blamed on the command line, with the nearest valid key.
    typo = r"the command line: --training\.stpes.*did you mean --training\.steps"
    with pytest.raises(ConfigError, match=typo):
        parse_experiment([str(config), "--training.stpes", "3"])
    with pytest.raises(ConfigError, match="rounds"):
        parse_experiment([str(config), "--rounds", "two"])
    bad = tiny_experiment(folder, videos)
    bad["teachers"][0]["teacher"]["class_path"] = "lightning_modules.teachers.classical.Nope"
    config.write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match=r"(?s)c\.yaml.*Nope"):
        parse_experiment([str(config)])
    with pytest.raises(ConfigError, match="no such experiment file"):
        parse_experiment([str(tmp_path / "missing.yaml")])


def test_print_config_prints_the_resolved_yaml(ladder, tmp_path, capsys) -> None:
    folder, videos = ladder
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(folder, videos)))
    main(["run", str(config), "--print_config", "--rounds", "5"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["rounds"] == 5
    assert printed["training"]["loss"]["class_path"] == "lightning_modules.losses.OrderedProbit"
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_two_cpu_processes_run_the_same_yaml_with_ddp(ladder, tmp_path) -> None:
    """Only the trainer section changes: `devices: 2` starts two ranks (torchrun, gloo); both
    label and score a shard each (the pool's curation statistics too), rank 0 makes the other
    stages, both train, and the results have the same shape as one process's; a teacher's merged
    table is the one a single process makes."""
    import subprocess
    import sys

    from lightning_modules.scoring import label_videos
    from lightning_modules.teachers import create_teacher

    folder, videos = ladder
    config = tiny_experiment(folder, videos)
    config["data"]["cache"] = str(tmp_path / "cache")
    config["student"]["init_args"]["feature_cache"] = str(tmp_path / "cache" / "features")
    config["training"]["trainer"] = {"devices": 2, "strategy": "ddp"}
    # no loader workers in the ranks: before 3.11.10 CPython can hang a worker forked in a rank
    # (python/cpython#112275; the run warns of it, datamodules/_workers.py)
    config["data"]["workers"] = 0
    # and the pool curated first: its nine statistics labelled on both ranks too
    target = str(folder / "clean_and_mild.parquet")
    config["data"]["curate"] = {"target": target, "n": 12, "bins": 2}
    file = tmp_path / "ddp.yaml"
    file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", str(file), "--output_dir", str(out),
         "--no_mlflow"], capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "starting 2 processes" in done.stdout
    assert "Starting with 2 processes" in done.stdout + done.stderr
    rows = pd.DataFrame(json.loads((out / "results.json").read_text())["rows"])
    assert {"student:round1", "student:round2"} <= set(rows.model)
    assert rows.srcc.notna().all()
    assert len(pd.read_parquet(out / "curation" / "curated.parquet")) == 12
    (table,) = (tmp_path / "cache" / "scores").glob("blur-*.parquet")
    two_ranks = pd.read_parquet(table)
    assert not table.with_name(table.name + ".parts").exists()
    one = tmp_path / "one.parquet"
    label_videos(create_teacher("blur"), two_ranks[["video_id", "path"]], one, workers=0)
    pd.testing.assert_frame_equal(two_ranks, pd.read_parquet(one))


def test_ui_without_runs_says_what_to_run_first(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no runs yet.*w2svqa run"):
        main(["ui", "--tracking_uri", f"sqlite:///{tmp_path / 'none.db'}"])


def test_a_hostile_pool_completes_and_lists_every_skipped_video(ladder, tmp_path) -> None:
    folder, videos = ladder
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.mp4").write_bytes(b"")
    (bad / "text.mp4").write_text("not a video\n")
    good = Path(videos.path.iloc[0]).read_bytes()
    (bad / "-cut short.mp4").write_bytes(good[: len(good) // 2])
    broken = [str(p) for p in sorted(bad.iterdir())]
    pool = pd.concat([videos[["video_id", "path"]],
                      pd.DataFrame({"video_id": broken, "path": broken})])  # fmt: skip
    pool.to_parquet(tmp_path / "pool.parquet", index=False)
    config = tiny_experiment(folder, videos)
    config["data"]["pool"] = str(tmp_path / "pool.parquet")
    config["data"]["cache"] = str(tmp_path / "cache")
    config["student"]["init_args"]["feature_cache"] = str(tmp_path / "cache" / "features")
    file = tmp_path / "hostile.yaml"
    file.write_text(yaml.safe_dump(config))
    out, uri = tmp_path / "run", f"sqlite:///{tmp_path / 'mlflow.db'}"
    main(["run", str(file), "--output_dir", str(out), "--tracking_uri", uri])
    results = json.loads((out / "results.json").read_text())
    assert results["skipped_videos"] == 3
    report = pd.read_csv(out / "skipped_videos.csv")
    assert set(report.path) == set(broken)
    assert set(report.scorer) >= {"teacher:blur", "teacher:blockiness", "student:round1"}
    reasons = report.drop_duplicates("path").set_index("path").error
    assert "empty file" in reasons[str(bad / "empty.mp4")]
    assert "not a readable video" in reasons[str(bad / "text.mp4")]
    artifacts = {a.path for a in MlflowClient(uri).list_artifacts(results["mlflow"]["run_id"])}
    assert "skipped_videos.csv" in artifacts


def test_a_store_that_does_not_answer_stops_the_run_before_any_work(ladder, tmp_path) -> None:
    import socket

    folder, videos = ladder
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment(folder, videos)))
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    with pytest.raises(SystemExit, match=rf"(?s)127\.0\.0\.1:{port} does not answer.*--no_mlflow"):
        main(["run", str(config), "--output_dir", str(out),
              "--tracking_uri", f"http://127.0.0.1:{port}"])  # fmt: skip
    assert not (out / "round1").exists()


def test_a_locked_store_is_named_and_the_fallback_logs_locally(tmp_path, monkeypatch) -> None:
    import sqlite3

    from experiments.runner import usable_store
    from experiments.tracking import StoreError

    db = tmp_path / "locked.db"
    holder = sqlite3.connect(db)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")  # another process writing, for as long as it likes
    try:
        with pytest.raises(StoreError, match=r"locked\.db cannot be written \(database is locked"):
            usable_store(f"sqlite:///{db}", timeout=1.0)
    finally:
        holder.rollback()
        holder.close()
    monkeypatch.chdir(tmp_path)  # the local store is made in the working directory
    local = usable_store("http://127.0.0.1:9", fallback=True, timeout=1.0)
    assert local == "sqlite:///mlruns/mlflow.db"
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_an_experiment_file_cannot_run_code(ladder, tmp_path, monkeypatch) -> None:
    """YAML is read safely, and class_path only names subclasses of the expected base."""
    folder, videos = ladder
    monkeypatch.chdir(tmp_path)
    tagged = tmp_path / "tagged.yaml"
    tagged.write_text('name: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_experiment([str(tagged)])
    config = tiny_experiment(folder, videos)
    config["teachers"][0]["teacher"] = {
        "class_path": "subprocess.Popen", "init_args": {"args": ["touch", "pwned"]},
    }  # fmt: skip
    popen = tmp_path / "popen.yaml"
    popen.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="subprocess.Popen"):
        parse_experiment([str(popen)])
    assert not (tmp_path / "pwned").exists()
