"""Shrinking a real experiment file for tests: the same teachers, student, loss and rounds, on the
blur ladder (tiny real footage) with a few pairs and steps."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from experiments.config import merge
from tests.students import blur_ladder

COMPACT = "lightning_modules.students.compact.CompactStudent"
REGRESSOR = "lightning_modules.teachers.regressor.RegressorTeacher"
TINY_FEATURES = {"frames": 2, "size": 64}


@dataclass(frozen=True)
class TinyData:
    """The ladder as pool, labelled split and evaluation sets; a cache shared by the runs."""

    folder: Path
    videos: pd.DataFrame
    table: Path  # every rendition, labelled (mos = -level)
    mild: Path  # levels 0..3 only: a second evaluation set

    @property
    def cache(self) -> Path:
        return self.folder / "cache"

    def data_section(self) -> dict[str, Any]:
        return {
            "pool": str(self.table), "labelled": str(self.table), "cache": str(self.cache),
            "eval": {"ladder": str(self.table), "mild": str(self.mild)}, "sample_corpus": None,
        }  # fmt: skip


def make_tiny_data(folder: Path) -> TinyData:
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    videos = blur_ladder(folder / "videos")
    table, mild = folder / "ladder.parquet", folder / "mild.parquet"
    videos.to_parquet(table, index=False)
    videos[videos.level <= 3].to_parquet(mild, index=False)
    return TinyData(folder, videos, table, mild)


def shrink(config: dict[str, Any], data: TinyData, rounds: int = 2) -> dict[str, Any]:
    """`config` (an experiment file's mapping) on tiny data: at most `rounds` rounds, a few pairs
    and steps, small frames; everything else (teachers, student, loss, iteration) as written."""
    c = copy.deepcopy(config)
    c["data"] = data.data_section()
    c["rounds"] = min(c.get("rounds", 3), rounds)
    features = str(data.cache / "features")
    student = c.get("student")
    if student is None or student.get("class_path") == COMPACT:
        args = (student or {}).get("init_args", {})
        args = {**args, **TINY_FEATURES, "hidden": 32, "dropout": 0.0, "feature_cache": features}
        c["student"] = {"class_path": COMPACT, "init_args": args}
    shrink_teachers(c.get("teachers", []), data)
    c["ensemble"] = merge(c.get("ensemble") or {}, {"pairs": [40, 20]})
    if c.get("synthetic", {}) is not None:
        tiny = {"pairs": 6, "groups": {"spatial": 1.0}, "workers": 1, "h265_preset": "ultrafast"}
        c["synthetic"] = {**(c.get("synthetic") or {}), **tiny}
    iteration = c.setdefault("iteration", {})
    if iteration.get("hard_cases", {}) is not None:
        iteration["hard_cases"] = {**(iteration.get("hard_cases") or {}), "n_gmad_pairs": 10}
    training = c.setdefault("training", {})
    training.update(steps=[6, 4], batch_size=4, workers=0)
    training["optim"] = {**(training.get("optim") or {}), "lr": 3e-3}
    c["eval_batch_size"] = 4
    return c


def shrink_teachers(teachers: list[dict[str, Any]], data: TinyData) -> None:
    """In place: deep-feature regressors read tiny frames from the tiny data's feature cache."""
    for entry in teachers:
        teacher = entry["teacher"]
        if teacher.get("class_path") == REGRESSOR:
            args = teacher.setdefault("init_args", {})
            if args.get("features") == "deep":
                args.update(TINY_FEATURES, feature_cache=str(data.cache / "features"))
