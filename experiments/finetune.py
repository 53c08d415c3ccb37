"""The fine-tuning protocol for small labelled datasets: `w2svqa finetune`.

N seeded random splits (80/20 by default); in each, the student is fine-tuned on pairs of the
training part labelled by their MOS order, validated at a few points on a validation part carved
out of the training part, and the point best on validation (never on test) is scored on the test
part. Mean, median and standard deviation over splits are reported (reference/datasets.md,
"Protocol": some public code picks the best epoch on the test split; this does not).

Published splits (`splits_from`, a VSFA-style .mat with `index`): split i is row i of `index`, cut
as VSFA's code cuts it, so the test parts are the papers' own: the last `test_fraction` of the row
is tested and the training part's last `val_fraction` validates (0.25 gives VSFA's 60/20/20).
Videos the file lists but the copy lacks drop out of their part; videos it does not list are in
no part (one warning).

Pairs: the MOS is the one "teacher" of `build_ensemble_pairs`, so with no teacher variance a pair
is superior or inferior by the sign of its MOS difference (ties: similar), the rank-learning signal
most VQA fine-tuning uses. Each validation point continues from the previous one's weights with a
fresh warm-up and cosine schedule.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datamodules._io import atomic_write


@dataclass(frozen=True)
class FinetuneConfig:
    """Splits, pairs and steps of the protocol."""

    splits: int = 10
    """Random train/test splits (seeded by `seed` + split index)."""
    test_fraction: float = 0.2
    """Share of each split held out for testing (80/20)."""
    val_fraction: float = 0.2
    """Share of the training part used to choose the model (never the test part)."""
    pairs: int = 2000
    """MOS-ordered pairs drawn from the training part."""
    steps: int = 200
    """Optimiser steps per split."""
    checks: int = 4
    """Validation points over the steps; the best on validation is tested."""
    batch_size: int = 8
    lr: float = 3e-4
    seed: int = 0
    splits_from: str | None = None
    """A VSFA-style .mat whose `index` rows are the published splits, used instead of seeded ones
    (the first `splits` rows) so that numbers compare with papers that used them."""

    def __post_init__(self) -> None:
        if not (0 < self.test_fraction < 1 and 0 < self.val_fraction < 1):
            raise ValueError("test_fraction and val_fraction must lie in (0, 1)")
        if self.splits < 1 or self.checks < 1 or self.steps < self.checks:
            raise ValueError("need splits >= 1, checks >= 1 and steps >= checks")


def split_indices(n: int, config: FinetuneConfig, split: int) -> dict[str, np.ndarray]:
    """Indices of the fit, validation and test parts of split `split` (disjoint, seeded)."""
    order = np.random.default_rng(config.seed + split).permutation(n)
    n_test = max(1, round(config.test_fraction * n))
    n_val = max(1, round(config.val_fraction * (n - n_test)))
    if n - n_test - n_val < 2:
        raise ValueError(f"{n} videos are too few to split into fit, validation and test parts")
    return {"test": order[:n_test], "val": order[n_test : n_test + n_val],
            "fit": order[n_test + n_val :]}  # fmt: skip


def published_split_indices(
    video_ids: Sequence[str], groups: Sequence[Sequence[str]], config: FinetuneConfig
) -> dict[str, np.ndarray]:
    """Indices (into `video_ids`) of the fit, validation and test parts of one published split:
    `groups` in the file's order (one per content, see `datamodules.datasets.read_splits`)."""
    # VSFA: test = index[ceil((1 - test_ratio) * G):]; the round() keeps 0.8 * 1200 at 960
    n_train = math.ceil(round((1 - config.test_fraction) * len(groups), 9))
    n_val = max(1, round(config.val_fraction * n_train))
    cuts = {"fit": groups[: n_train - n_val], "val": groups[n_train - n_val : n_train],
            "test": groups[n_train:]}  # fmt: skip
    where = {v: i for i, v in enumerate(video_ids)}
    parts = {k: np.array([where[v] for g in part for v in g if v in where], dtype=int)
             for k, part in cuts.items()}  # fmt: skip
    if len(parts["fit"]) < 2 or not len(parts["val"]) or not len(parts["test"]):
        sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
        raise ValueError(f"a published split leaves too few videos in a part ({sizes})")
    return parts


def finetune_protocol(
    checkpoint: str | os.PathLike,
    videos: pd.DataFrame,
    out: str | os.PathLike,
    config: FinetuneConfig = FinetuneConfig(),
    workers: int = 2,
    dataset: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run every split; return (one row per split, the mean/median/std summary) and write both
    as CSV under `out` with `results.json`. `videos`: `video_id`, `path`, `mos`. `dataset`: whose
    naming rules match `config.splits_from` to the video ids (default: the one `load_dataset`
    recorded in `videos.attrs`, else the names as listed)."""
    out = Path(out)
    dataset = dataset or videos.attrs.get("dataset") or "generic"
    videos = videos.dropna(subset=["mos"]).reset_index(drop=True)
    if config.splits_from:
        parts = _published(videos, dataset, config)
    else:
        parts = [split_indices(len(videos), config, i) for i in range(config.splits)]
    rows = [_one_split(checkpoint, videos, out / f"split{i:02d}", config, i, workers, part)
            for i, part in enumerate(parts)]  # fmt: skip
    per_split = pd.DataFrame(rows)
    metrics = ["srcc", "plcc", "krcc"]
    summary = per_split[metrics].agg(["mean", "median", "std"]).rename_axis("statistic")
    atomic_write(out / "splits.csv", lambda p: per_split.to_csv(p, index=False))
    atomic_write(out / "summary.csv", lambda p: summary.to_csv(p))
    data = {"splits": rows, "summary": summary.reset_index().to_dict("records"),
            "config": vars(config)}  # fmt: skip
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(data, indent=2)))
    return per_split, summary


def _published(
    videos: pd.DataFrame, dataset: str, config: FinetuneConfig
) -> list[dict[str, np.ndarray]]:
    from datamodules.datasets import read_splits

    published = read_splits(dataset, config.splits_from)
    if len(published) < config.splits:
        raise ValueError(
            f"{config.splits_from}: {len(published)} published splits, fewer than splits="
            f"{config.splits}"
        )
    listed = {v for group in published[0] for v in group}
    if unlisted := [v for v in videos.video_id if v not in listed]:
        warnings.warn(
            f"{len(unlisted)} of {len(videos)} videos are not in {config.splits_from}, e.g. "
            f"{', '.join(map(str, unlisted[:3]))}; they are in no part of any split",
            stacklevel=3,
        )
    ids = videos.video_id.tolist()
    return [published_split_indices(ids, groups, config) for groups in published[: config.splits]]


def _one_split(checkpoint, videos: pd.DataFrame, folder: Path, config: FinetuneConfig,
               split: int, workers: int, indices: dict[str, np.ndarray],
               ) -> dict[str, Any]:  # fmt: skip
    from datamodules.ensemble import build_ensemble_pairs
    from experiments.train import train_student
    from lightning_modules.checkpoints import load_student
    from lightning_modules.losses import OrderedProbit
    from lightning_modules.training import OptimConfig

    parts = {k: videos.iloc[v].reset_index(drop=True) for k, v in indices.items()}
    fit = parts["fit"]
    scores = {"mos": fit[["video_id"]].assign(score=fit.mos)}
    n_pairs = min(config.pairs, len(fit) * (len(fit) - 1) // 2)
    pairs = build_ensemble_pairs(scores, fit, n_pairs, seed=config.seed + split, round_index=0)
    pair_file = folder / "pairs.parquet"
    atomic_write(pair_file, lambda p: pairs.to_parquet(p, index=False))
    student, loss = load_student(checkpoint), OrderedProbit()
    nan = float("nan")
    best: dict[str, Any] = {"val_srcc": nan, "best_step": None, "srcc": nan, "plcc": nan,
                            "krcc": nan}  # fmt: skip
    chunk = config.steps // config.checks
    kept = folder / "best.safetensors"
    for check in range(1, config.checks + 1):
        file = folder / f"check{check}.safetensors"
        result = train_student(
            student, loss, [pair_file], file,
            val_sets={"val": parts["val"], "test": parts["test"]},
            optim=OptimConfig(lr=config.lr, warmup=0.1), steps=chunk,
            batch_size=config.batch_size, workers=workers, seed=config.seed * 1000 + split,
        )  # fmt: skip
        val = result.after.get("val/srcc", nan)
        beaten = np.isfinite(best["val_srcc"]) and val <= best["val_srcc"]
        if np.isfinite(val) and not beaten:  # chosen on validation, never on test
            best = {
                "val_srcc": val,
                "best_step": check * chunk,
                **{m: result.after.get(f"test/{m}", nan) for m in ("srcc", "plcc", "krcc")},
            }
            os.replace(file, kept)  # only the chosen student is kept
        else:
            file.unlink(missing_ok=True)
    return {"split": split, "n_fit": len(fit), "n_val": len(parts["val"]),
            "n_test": len(parts["test"]), **best}  # fmt: skip
