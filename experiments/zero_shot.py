"""Zero-shot evaluation on the field's datasets: `w2svqa evaluate`.

Any student file or teacher scores each dataset's videos (score tables kept per model, so a re-run
scores only what is missing); every model gets SRCC, KRCC, PLCC and RMSE per set (PLCC and RMSE raw
and fitted) and the video-weighted overall; the results go to a markdown table in the paper's
layout with the published numbers (`benchmarks/reference/published.csv`) beside ours, per-video
prediction CSVs, scatter plots, `results.json` and one MLflow run.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from datamodules._io import atomic_write
from experiments.evaluation import evaluate, overall

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "reference" / "published.csv"


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
        if self.checkpoint is not None:
            return f"student:{Path(self.checkpoint).stem}"
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
    """Score every set with every model; write the table, CSVs, plots and results; log to MLflow."""
    from lightning_modules.scoring import label_videos, read_scores

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    videos = pd.concat([t[["video_id", "path"]] for t in sets.values()], ignore_index=True)
    rows: list[dict[str, Any]] = []
    predictions: dict[tuple[str, str], pd.DataFrame] = {}
    for model in models:
        table = out / "scores" / f"{_slug(model.name)}-{model.digest()}.parquet"
        summary = label_videos(_scorer(model), videos, table, batch_size, workers)
        if summary.failed:
            print(f"  {model.name}: {summary.failed} videos failed (error column of {table})")
        scores = read_scores(table)
        model_rows, model_predictions = evaluate(model.name, scores, sets)
        rows += model_rows + [{"model": model.name, "round": 0, "set": "overall",
                               **overall(model_rows)}]  # fmt: skip
        predictions |= {(model.name, s): p for s, p in model_predictions.items()}
    _write_predictions(out, predictions)
    markdown = paper_table(rows, list(sets))
    atomic_write(out / "table.md", lambda p: p.write_text(markdown))
    results = {"rows": rows, "sets": {k: len(v) for k, v in sets.items()}}
    if track:
        results["mlflow"] = _track(out, models, sets, rows, tracking_uri)
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(results, indent=2)))
    print(markdown)
    return results


def _scorer(model: ModelRef):
    if (model.checkpoint is None) == (model.teacher is None):
        raise ValueError("a model is a --checkpoint or a --teacher, exactly one")
    if model.checkpoint is not None:
        from lightning_modules.teachers.student import StudentTeacher

        return StudentTeacher(model.checkpoint)
    from experiments.cli import _load_teacher

    return _load_teacher(model.teacher)


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
    table = pd.read_csv(PUBLISHED, comment="#")
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
        lines.append(f"| {model} (ours) | " + " | ".join(cells) + " |")
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
    params = {"models": [m.name for m in models], "sets": {k: len(v) for k, v in sets.items()}}
    with tracker.run("evaluate:" + ",".join(m.name for m in models), params=params) as run_id:
        metrics = {
            f"{r['model']}/{r['set']}/{m}": r[m]
            for r in rows
            for m in ("srcc", "plcc", "krcc", "rmse", "plcc_fitted", "rmse_raw")
        }
        tracker.log_metrics(run_id, metrics, step=0)
        for item in ("table.md", "predictions", "plots"):
            tracker.log_artifact(run_id, out / item)
    return {"tracking_uri": tracker.tracking_uri, "run_id": run_id}
