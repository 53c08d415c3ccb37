"""`w2svqa evaluate`: students, teachers or prediction tables zero-shot on labelled datasets."""

from __future__ import annotations

import json
from pathlib import Path

from datamodules.errors import UserError
from experiments.zero_shot import DatasetRef, PredictionRef


def evaluate(
    checkpoints: list[str] | None = None,
    teachers: list[str] | None = None,
    tables: list[PredictionRef] | None = None,
    datasets: list[DatasetRef] | None = None,
    output_dir: Path = Path("runs/evaluate"),
    batch_size: int = 8,
    workers: int = 2,
    tracking_uri: str | None = None,
    no_mlflow: bool = False,
) -> None:
    """Evaluate students, teachers or prediction tables zero-shot on labelled datasets.

    The field's way: SRCC, KRCC, PLCC and RMSE per set (PLCC and RMSE raw and after a logistic
    fit), the video-weighted overall, a markdown table beside the published numbers
    (OUTPUT_DIR/table.md), per-video CSVs, scatter plots, results.json and an MLflow run. Scores
    are kept in OUTPUT_DIR/scores: a re-run scores only what is new. A prediction table another
    tool wrote is scored against the label files alone (no video needs to be on disk).

    On the command line each model and dataset is also a repeatable group:
    `--checkpoint FILE`, `--teacher NAME_OR_YAML`, `--predictions FILE [--score_column C]
    [--name_column C]`, `--dataset NAME --root DIR [--labels FILE] [--as TITLE]
    [--mos_range LOW,HIGH]`; in a `--config` file they are the lists below.

    Args:
        checkpoints: Student files (.safetensors) or training checkpoints.
        teachers: Registered teachers (`w2svqa label --list`) or YAML files {name:, args:}.
        tables: Prediction tables (`w2svqa score`'s CSV, DOVER's CSV, labels.txt, any `name,
            score` table), matched to the labels by video id / file name; not with models.
        datasets: Labelled sets: a reader (lsvq_test, konvid_1k, youtube_ugc, ...) and its root.
        output_dir: Where the table, CSVs, plots, scores and results.json go.
        batch_size: Videos per forward pass.
        workers: Decoding processes.
        tracking_uri: MLflow store (default: sqlite:///mlruns/mlflow.db).
        no_mlflow: Log nothing to MLflow.
    """
    from experiments.zero_shot import (
        ModelRef,
        evaluate_models,
        evaluate_predictions,
        load_labels,
        load_sets,
    )

    models = [ModelRef(checkpoint=c) for c in checkpoints or []]
    models += [ModelRef(teacher=t) for t in teachers or []]
    if not (models or tables) or not datasets:
        raise UserError("give a --checkpoint, --teacher or --predictions, and a --dataset")
    if models and tables:
        raise UserError(
            "--predictions goes without --checkpoint / --teacher (score the videos with "
            "`w2svqa score --output FILE.csv` and pass that file as --predictions)"
        )
    tracking = {"tracking_uri": tracking_uri, "track": not no_mlflow}
    if tables:
        evaluate_predictions(tables, load_labels(datasets), output_dir, **tracking)
        return
    evaluate_models(models, load_sets(datasets), output_dir, batch_size, workers, **tracking)


# The command line's repeatable groups: a leading flag opens an entry of a list, the flags after
# it fill that entry's fields.
_GROUPS = {
    "--checkpoint": ("checkpoints", None, {}),
    "--teacher": ("teachers", None, {}),
    "--predictions": ("tables", "file", {"--score_column": "score_column",
                                         "--name_column": "name_column"}),
    "--dataset": ("datasets", "name", {"--root": "root", "--labels": "labels", "--as": "title",
                                       "--mos_range": "mos_range"}),
}  # fmt: skip
_FOLLOWERS = {flag for _, _, fields in _GROUPS.values() for flag in fields}


def grouped(args: list[str]) -> list[str]:
    """`--dataset N --root R --checkpoint F ...` -> `--datasets=[{...}] --checkpoints=[F]`:
    the groups written as the typed lists they are; other arguments pass through."""
    lists: dict[str, list] = {}
    rest: list[str] = []
    current: dict = {}
    fields: dict[str, str] = {}
    i = 0
    while i < len(args):
        flag, eq, value = args[i].partition("=")
        if flag not in _GROUPS and flag not in _FOLLOWERS:
            rest.append(args[i])
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise UserError(f"{flag} needs a value")
            value, i = args[i + 1], i + 1
        i += 1
        if flag in _GROUPS:
            key, field, fields = _GROUPS[flag]
            current = {} if field is None else {field: value}
            lists.setdefault(key, []).append(value if field is None else current)
            continue
        if flag not in fields:
            leader = next(k for k, (_, _, f) in _GROUPS.items() if flag in f)
            raise UserError(f"{flag} belongs after a {leader}")
        current[fields[flag]] = _pair(flag, value) if flag == "--mos_range" else value
    for entry in lists.get("datasets", []):
        if "root" not in entry:
            raise UserError(f"--dataset {entry['name']} needs a --root")
    return rest + [f"--{key}={json.dumps(values)}" for key, values in lists.items()]


def _pair(flag: str, value: str) -> list[float]:
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise UserError(f"{flag} expects LOW,HIGH, got {value!r}") from None
    return [low, high]
