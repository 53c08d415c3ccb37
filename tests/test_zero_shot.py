"""`w2svqa evaluate` on the sample corpus's labelled sets and on a format-test copy of every
dataset, and the fine-tuning protocol on the sample corpus with 3 splits."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from datamodules.datasets import DATASETS
from experiments.cli import main
from experiments.finetune import FinetuneConfig, finetune_protocol, split_indices
from lightning_modules.checkpoints import save_student
from lightning_modules.students.compact import CompactStudent
from tests.test_datasets import LAYOUTS, clips  # noqa: F401 - the clips fixture, reused

STUDENT = {"frames": 2, "size": 64, "hidden": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def student_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("student")
    return save_student(
        CompactStudent(**STUDENT, feature_cache=str(folder / "features")), folder / "s.safetensors"
    )


def test_evaluate_the_sample_corpus_sets(small_corpus, student_file, tmp_path, capsys) -> None:
    corpus, _ = small_corpus
    out, uri = tmp_path / "eval", f"sqlite:///{tmp_path / 'mlflow.db'}"
    sets = []
    for split in ("test_in_domain", "test_ood"):
        sets += ["--dataset", "labels_txt", "--root", str(corpus), "--labels",
                 str(corpus / f"{split}.txt"), "--as", split, "--mos_range", "0,100"]  # fmt: skip
    main(["evaluate", "--checkpoint", str(student_file), "--teacher", "blur", *sets,
          "--output_dir", str(out), "--tracking_uri", uri, "--workers", "0"])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    rows = pd.DataFrame(results["rows"])
    assert set(rows.model) == {"student:s", "teacher:blur"}
    assert set(rows.set) == {"test_in_domain", "test_ood", "overall"}
    blur = rows[(rows.model == "teacher:blur")].set_index("set")
    assert blur.loc["overall", "n"] == blur.loc["test_in_domain", "n"] + blur.loc["test_ood", "n"]
    for metric in ("srcc", "krcc", "plcc", "plcc_fitted", "rmse", "rmse_raw"):
        assert np.isfinite(blur[metric]).all(), metric
    table = (out / "table.md").read_text()
    assert "| teacher:blur (ours) |" in table and "overall" in capsys.readouterr().out
    predictions = pd.read_csv(out / "predictions" / "teacher_blur__test_ood.csv")
    assert list(predictions.columns) == ["video_id", "path", "mos", "prediction"]
    assert (out / "plots" / "student_s__test_in_domain.png").stat().st_size > 0
    run = MlflowClient(uri).get_run(results["mlflow"]["run_id"])
    assert "teacher:blur/test_ood/srcc" in run.data.metrics


def test_evaluate_every_dataset_format_beside_the_published_numbers(
    clips: dict[str, Path],  # noqa: F811 - the fixture imported above
    student_file: Path,
    tmp_path: Path,
) -> None:
    args = []
    for name in sorted(DATASETS):
        root = tmp_path / name
        root.mkdir()
        layout = LAYOUTS[name](root, clips)
        args += ["--dataset", name, "--root", str(root)]
        if "labels" in layout.options:
            args += ["--labels", str(layout.options["labels"])]
        if "mos_range" in layout.options:
            args += ["--mos_range", ",".join(map(str, layout.options["mos_range"]))]
    out = tmp_path / "eval"
    main(["evaluate", "--teacher", "blur", *args, "--output_dir", str(out), "--no_mlflow",
          "--workers", "0"])  # fmt: skip
    rows = pd.DataFrame(json.loads((out / "results.json").read_text())["rows"])
    assert set(rows.set) == set(DATASETS) | {"overall"}
    assert (rows[rows.set != "overall"].n == 2).all()  # 2 videos each: metrics are NaN, not errors
    table = (out / "table.md").read_text()
    assert "| W2S student stage 3 (published) |" in table
    assert "0.893 / 0.889" in table  # its LSVQ-test numbers, beside ours


def test_split_parts_are_disjoint_and_seeded() -> None:
    config = FinetuneConfig(splits=3)
    parts = split_indices(40, config, 1)
    assert sorted(np.concatenate(list(parts.values()))) == list(range(40))
    assert len(parts["test"]) == 8 and len(parts["val"]) == 6
    assert all(np.array_equal(parts[k], split_indices(40, config, 1)[k]) for k in parts)
    assert not np.array_equal(parts["test"], split_indices(40, config, 2)["test"])
    with pytest.raises(ValueError, match="too few"):
        split_indices(3, config, 0)


def test_finetune_protocol_on_the_sample_corpus(small_corpus, student_file, tmp_path) -> None:
    from datamodules.video_table import load_labelled_videos

    corpus, _ = small_corpus
    videos = load_labelled_videos(corpus / "train_labeled.parquet")
    config = FinetuneConfig(splits=3, steps=6, checks=2, pairs=60, batch_size=4, lr=3e-3)
    per_split, summary = finetune_protocol(student_file, videos, tmp_path / "ft", config, 0)
    assert list(per_split.split) == [0, 1, 2]
    assert (per_split.n_fit + per_split.n_val + per_split.n_test == len(videos)).all()
    chosen = per_split.dropna(subset=["best_step"])
    assert len(chosen) and chosen.best_step.isin([3, 6]).all()
    assert chosen.srcc.map(math.isfinite).all()
    assert list(summary.index) == ["mean", "median", "std"]
    for split in range(3):  # only the student chosen on validation is kept
        kept = list((tmp_path / "ft" / f"split{split:02d}").glob("*.safetensors"))
        assert [p.name for p in kept] in (["best.safetensors"], [])
    assert (tmp_path / "ft" / "summary.csv").is_file()


def test_the_benchmark_yaml_parses() -> None:
    from jsonargparse import ArgumentParser

    from benchmarks.zero_shot import zero_shot_table

    parser = ArgumentParser()
    parser.add_function_arguments(zero_shot_table)
    config = Path(__file__).resolve().parents[1] / "benchmarks" / "zero_shot_sample.yaml"
    parser.add_argument("--config", action="config")
    parsed = parser.parse_args(["--config", str(config)])
    assert len(parsed.models) == 3 and parsed.datasets[1].title == "test_ood"
