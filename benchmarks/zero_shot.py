"""A whole zero-shot table: several models on several datasets, from one YAML file.

    python -m benchmarks.zero_shot --config benchmarks/zero_shot_sample.yaml
    python -m benchmarks.zero_shot --config my_datasets.yaml --output_dir runs/benchmark

The YAML lists `models` (each `{checkpoint: FILE}` or `{teacher: NAME_OR_YAML}`) and `datasets`
(each `{name: READER, root: DIR, labels: FILE?, title: NAME?, mos_range: [LOW, HIGH]?}`). It prints
the markdown table in the paper's layout with the published numbers beside ours, and writes it with
per-video CSVs, scatter plots and `results.json` under `output_dir` (see `w2svqa evaluate`).
"""

from __future__ import annotations

from jsonargparse import CLI

from experiments.zero_shot import DatasetRef, ModelRef, evaluate_models, load_sets


def zero_shot_table(
    models: list[ModelRef],
    datasets: list[DatasetRef],
    output_dir: str = "runs/benchmark",
    batch_size: int = 8,
    workers: int = 2,
    tracking_uri: str | None = None,
    mlflow: bool = True,
) -> None:
    """Evaluate every model on every dataset; print and write the table.

    Args:
        models: Student files (`checkpoint`) and teachers (`teacher`).
        datasets: Dataset readers and where each copy is.
        output_dir: Where scores, predictions, plots, table.md and results.json go.
        batch_size: Videos per forward pass.
        workers: Decoding processes.
        tracking_uri: MLflow store (default: sqlite:///mlruns/mlflow.db).
        mlflow: Log the evaluation as an MLflow run.
    """
    evaluate_models(models, load_sets(datasets), output_dir, batch_size, workers, tracking_uri,
                    track=mlflow)  # fmt: skip


if __name__ == "__main__":
    CLI(zero_shot_table)
