"""Zero-shot evaluation on the field's datasets: `w2svqa evaluate`.

Any student file or teacher scores each dataset's videos (score tables kept per model, so a re-run
scores only what is missing); every model gets SRCC, KRCC, PLCC and RMSE per set (PLCC and RMSE raw
and fitted) and the video-weighted overall; the results go to a markdown table in the paper's
layout with the published numbers (`experiments/reference/published.csv`, package data) beside
ours, per-video prediction CSVs, scatter plots, `results.json` and one MLflow run.

A prediction table that another tool wrote (`evaluate_predictions`) is scored the same way against
the label files alone: no video needs to be on disk (`experiments.predictions` matches its rows).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from datamodules._io import atomic_write
from datamodules.datasets import read_labels

# Package data, so that an installed `w2svqa` finds it wherever it runs (tests/test_packaging.py).
PUBLISHED = resources.files("experiments") / "reference" / "published.csv"


@dataclass(frozen=True)
class DatasetRef:
    """One labelled set: a reader of `datamodules.datasets` and where the copy is."""

    name: str
    """The reader: lsvq_test, konvid_1k, youtube_ugc, live_vqc, ..., labels_txt, generic."""
    root: str
    """The dataset's folder."""
    labels: str | None = None
    """Its label file, if not the reader's default name under `root`."""
    title: str | None = None
    """Its name in tables (default: the reader's name)."""
    mos_range: tuple[float, float] | None = None
    """The MOS scale, for formats that have none (labels.txt, generic CSV)."""


@dataclass(frozen=True)
class ModelRef:
    """A model to evaluate: a student file, or a teacher by name or YAML file."""

    checkpoint: str | None = None
    teacher: str | None = None

    def digest(self) -> str:
        """What the model is, hashed: its file's content (a retrained student is another one)."""
        from experiments.stages import digest, file_digest

        source = self.checkpoint or self.teacher
        if source and Path(source).is_file():
            return file_digest(source)
        return digest(self.teacher)

    @property
    def name(self) -> str:
        """`student:quickstart/round3` for runs/quickstart/round3/student.safetensors: a file
        named like every student file is named by its folders instead."""
        if self.checkpoint is not None:
            from lightning_modules.teachers.student import student_name

            return student_name(self.checkpoint)
        spec = str(self.teacher)
        return f"teacher:{Path(spec).stem if spec.endswith(('.yaml', '.yml')) else spec}"


def load_sets(refs: list[DatasetRef]) -> dict[str, pd.DataFrame]:
    """Each dataset's table (`video_id`, `path`, `mos`), named by its reader (a second copy of
    one reader gets `_2`); missing videos and unusable rows are reported, never fatal."""
    from datamodules.datasets import load_dataset

    sets: dict[str, pd.DataFrame] = {}
    for ref in refs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported below, once, with the counts
            loaded = load_dataset(ref.name, ref.root, ref.labels, mos_range=ref.mos_range)
        name = ref.title or ref.name
        name = name if name not in sets else f"{name}_{len(sets) + 1}"
        table = loaded.table
        print(f"{name}: {len(table)} videos from {loaded.labels}", end="")
        print(f"; {len(loaded.missing)} listed but missing" if loaded.missing else "", end="")
        print(f"; {len(loaded.problems)} rows left out" if loaded.problems else "")
        for line in loaded.problems[:5]:
            print(f"  {line}")
        # ids are unique within a set; across sets they may repeat, so they are prefixed
        sets[name] = table.assign(video_id=name + "/" + table.video_id.astype(str))
    return sets


def evaluate_models(
    models: list[ModelRef],
    sets: dict[str, pd.DataFrame],
    out: str | os.PathLike,
    batch_size: int = 8,
    workers: int = 2,
    tracking_uri: str | None = None,
    track: bool = True,
) -> dict[str, Any]:
    """Score every set with every model; write the table, CSVs, plots and results; log to MLflow.
    Under torchrun every rank scores a shard of each model's videos; rank 0 alone evaluates,
    writes and logs (the other ranks return {})."""
    from experiments.evaluation import evaluate, overall
    from lightning_modules.scoring import label_videos, process_rank, read_scores

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = pd.concat([t[["video_id", "path"]] for t in sets.values()], ignore_index=True)
    rows: list[dict[str, Any]] = []
    predictions: dict[tuple[str, str], pd.DataFrame] = {}
    for model in models:
        table = out / "scores" / f"{_slug(model.name)}-{model.digest()}.parquet"
        summary = label_videos(_scorer(model), videos, table, batch_size, workers)
        if process_rank()[0] != 0:  # rank 0 is merging this table: it evaluates
            continue
        if summary.failed:
            print(f"  {model.name}: {summary.failed} videos failed (error column of {table})")
        scores = read_scores(table)
        model_rows, model_predictions = evaluate(model.name, scores, sets)
        rows += model_rows + [{"model": model.name, "round": 0, "set": "overall",
                               **overall(model_rows)}]  # fmt: skip
        predictions |= {(model.name, s): p for s, p in model_predictions.items()}
    if process_rank()[0] != 0:
        return {}
    names = [m.name for m in models]
    return _report(out, names, sets, rows, predictions, {}, tracking_uri, track)


def load_labels(refs: list[DatasetRef]) -> dict[str, pd.DataFrame]:
    """Each dataset's label list (`video_id`, `path`, `mos`, `names`) as its label file gives it,
    without looking for a single video: `path` is the name the file lists, `names` every name the
    video goes by. Named as in `load_sets`; unusable rows are reported, never fatal."""
    sets: dict[str, pd.DataFrame] = {}
    for ref in refs:
        path, usable, problems = read_labels(ref.name, ref.root, ref.labels)
        name = ref.title or ref.name
        name = name if name not in sets else f"{name}_{len(sets) + 1}"
        print(f"{name}: {len(usable)} labelled videos in {path} (videos not looked for)", end="")
        print(f"; {len(problems)} rows left out" if problems else "")
        for line in problems[:5]:
            print(f"  {line}")
        sets[name] = pd.DataFrame({
            "video_id": [f"{name}/{row.video_id}" for row, _ in usable],
            "path": [row.names[0] for row, _ in usable],
            "mos": [mos for _, mos in usable],
            "names": [(row.video_id, *row.names) for row, _ in usable],
        })  # fmt: skip
    return sets


@dataclass(frozen=True)
class PredictionRef:
    """A prediction table another tool wrote (or `w2svqa score`), to score against the labels."""

    file: str
    score_column: str | None = None
    """Its score column (default: prediction, score, ... or DOVER's overall score)."""
    name_column: str | None = None
    """Its video-name column (default: every one of video_id, path, name, ..., tried in turn)."""

    @property
    def name(self) -> str:
        return f"predictions:{Path(self.file).stem}"


def evaluate_predictions(
    files: list[PredictionRef],
    sets: dict[str, pd.DataFrame],
    out: str | os.PathLike,
    tracking_uri: str | None = None,
    track: bool = True,
    listed: int = 10,
) -> dict[str, Any]:
    """Score each prediction table against the label lists of `load_labels` (no video is read);
    print, per table, the rows that match no labelled video (the first `listed`; all of them in
    results.json) and, per set, the labelled videos it has no prediction for; then report as
    `evaluate_models` does."""
    from experiments.evaluation import evaluate, overall
    from experiments.predictions import match_predictions, read_predictions

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    predictions: dict[tuple[str, str], pd.DataFrame] = {}
    matching: dict[str, Any] = {}
    for ref in files:
        table = read_predictions(ref.file, ref.score_column, ref.name_column)
        match = match_predictions(table, sets)
        model_rows, model_predictions = evaluate(ref.name, match.scores, sets)
        rows += model_rows + [{"model": ref.name, "round": 0, "set": "overall",
                               **overall(model_rows)}]  # fmt: skip
        predictions |= {(ref.name, s): p for s, p in model_predictions.items()}
        matching[ref.name] = {
            "file": str(table.file), "score_column": table.score_column,
            "rows": len(table.rows) + len(table.skipped), "matched": match.matched,
            "unmatched": match.unmatched, "repeated": match.repeated, "skipped": table.skipped,
            "without_prediction": match.without,
        }  # fmt: skip
        _print_matching(ref.name, matching[ref.name], listed)
    names = [f.name for f in files]
    return _report(out, names, sets, rows, predictions, matching, tracking_uri, track)


def _print_matching(model: str, info: dict[str, Any], listed: int) -> None:
    print(f"{model}: {info['rows']} rows in {info['file']} (score column {info['score_column']!r})")
    for name, n in info["matched"].items():
        left = info["without_prediction"][name]
        print(f"  {name}: {n} of {n + len(left)} labelled videos matched", end="")
        shown = ", ".join(v.removeprefix(f"{name}/") for v in left[:listed])
        print(f"; no prediction for {len(left)}: {shown}" + (" ..." if len(left) > listed else "")
              if left else "")  # fmt: skip
    for kind, what in (("unmatched", "match no labelled video"), ("repeated", "repeat a video"),
                       ("skipped", "have no usable score")):  # fmt: skip
        lines = info[kind]
        if lines:
            print(f"  {len(lines)} rows {what}:")
            for line in lines[:listed]:
                print(f"    {line}")
            if len(lines) > listed:
                print(f"    ... and {len(lines) - listed} more (all in results.json)")


def _report(
    out: Path,
    models: list[str],
    sets: dict[str, pd.DataFrame],
    rows: list[dict[str, Any]],
    predictions: dict[tuple[str, str], pd.DataFrame],
    matching: dict[str, Any],
    tracking_uri: str | None,
    track: bool,
) -> dict[str, Any]:
    """Write per-video CSVs, plots, table.md and results.json; log to MLflow; print the table."""
    _write_predictions(out, predictions)
    markdown = paper_table(rows, list(sets))
    atomic_write(out / "table.md", lambda p: p.write_text(markdown))
    results: dict[str, Any] = {"rows": rows, "sets": {k: len(v) for k, v in sets.items()}}
    if matching:
        results["matching"] = matching
    if track:
        results["mlflow"] = _track(out, models, sets, rows, tracking_uri)
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(results, indent=2)))
    print(markdown)
    print(
        f"\n{out}: table.md, results.json, per-video CSVs in predictions/, scatter plots in "
        "plots/" + (", scores/ (kept for re-runs)" if (out / "scores").is_dir() else "")
    )
    if "mlflow" in results:
        print(f"MLflow run {results['mlflow']['run_id']} (see it with `w2svqa ui`)")
    return results


def _scorer(model: ModelRef):
    from lightning_modules.scorers import load_scorer

    return load_scorer(model.checkpoint, model.teacher)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _write_predictions(out: Path, predictions: dict[tuple[str, str], pd.DataFrame]) -> None:
    from experiments.tracking import scatter_plot

    for (model, name), table in predictions.items():
        stem = f"{_slug(model)}__{name}"
        rows = table.assign(video_id=table.video_id.str.removeprefix(f"{name}/"))
        csv, png = out / "predictions" / f"{stem}.csv", out / "plots" / f"{stem}.png"
        atomic_write(csv, lambda p, t=rows: t.to_csv(p, index=False))
        scatter_plot(table.prediction, table.mos, f"{model} on {name}", png)


def published(sets: list[str]) -> pd.DataFrame:
    """The paper's published SRCC / PLCC for these sets (and the overall rows)."""
    with resources.as_file(PUBLISHED) as path:
        table = pd.read_csv(path, comment="#")
    return table[table.dataset.isin([*sets, "overall"])]


def paper_table(rows: list[dict[str, Any]], sets: list[str]) -> str:
    """Markdown in the paper's layout: a row per model, a column per set and overall, cells
    "SRCC / PLCC"; below, the published numbers for the same sets."""
    columns = [*sets, "overall"]
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    frame = pd.DataFrame(rows)
    for model in dict.fromkeys(frame.model):
        cells = []
        for column in columns:
            hit = frame[(frame.model == model) & (frame.set == column)]
            cells.append("—" if hit.empty else f"{hit.srcc.iloc[0]:.3f} / {hit.plcc.iloc[0]:.3f}")
        whose = "file" if model.startswith("predictions:") else "ours"
        lines.append(f"| {model} ({whose}) | " + " | ".join(cells) + " |")
    reference = published(sets)
    for model, group in reference.groupby("model", sort=False):
        by_set = group.set_index("dataset")
        cells = [
            f"{by_set.srcc[c]:.3f} / {by_set.plcc[c]:.3f}" if c in by_set.index else "—"
            for c in columns
        ]
        if any(cell != "—" for cell in cells[:-1]):  # published on at least one of our sets
            lines.append(f"| {model} (published) | " + " | ".join(cells) + " |")
    note = (
        "\nSRCC / PLCC on raw predictions; overall = mean weighted by videos (our overall is over "
        "the sets above, the published one over the paper's five in-domain sets).\n"
    )
    return "\n".join(lines) + "\n" + note


def _track(out: Path, models, sets, rows, tracking_uri: str | None) -> dict[str, str]:
    from experiments.tracking import Tracker

    tracker = Tracker("evaluate", tracking_uri)
    params = {"models": models, "sets": {k: len(v) for k, v in sets.items()}}
    with tracker.run("evaluate:" + ",".join(models), params=params) as run_id:
        metrics = {
            f"{r['model']}/{r['set']}/{m}": r[m]
            for r in rows
            for m in ("srcc", "plcc", "krcc", "rmse", "plcc_fitted", "rmse_raw")
        }
        tracker.log_metrics(run_id, metrics, step=0)
        for item in ("table.md", "predictions", "plots"):
            tracker.log_artifact(run_id, out / item)
    return {"tracking_uri": tracker.tracking_uri, "run_id": run_id}
