"""How much quality each frozen representation of the compact student holds, on the sample corpus.

For every representation: frozen features of each video (the student's own `prepare`), pooled over
its frames (mean and std), then a ridge regression (standardised inputs, alpha by leave-one-out)
fitted two ways and scored by SRCC on every labelled set:

- supervised ceiling: fitted on `train_labeled`'s VMAF labels (40 clips);
- weak-label ceiling: fitted on the unlabelled pool, on the quickstart teachers' mean z-score (the
  ensemble's `zscore` scale; no labels, the teachers' tables from a quickstart run) - what a
  student of that representation could reach from its teachers with a linear head.
The validation columns (`validation_unseen` first) are where a representation is chosen; the test
columns are reported.

    python -m benchmarks.student_features [--corpus data/sample] [--scores data/cache/scores]
    python -m benchmarks.student_features --only "stage statistics + 8-frame run, native" \
        --feature_cache data/cache/features    # the quickstart's representation, from its cache

Needs the corpus and the teachers' tables: `make quickstart` makes both. Prints a markdown table
with the feature size, the bytes cached per video and the feature time per video on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks._table import markdown_table
from datamodules.ensemble import ensemble_scores
from datamodules.frame_sampling import read_clip
from lightning_modules.students.compact import CompactStudent

# name -> CompactStudent arguments (frames are set on the command line)
REPRESENTATIONS: dict[str, dict] = {
    "last layer, 224 crop (pooled)": {"representation": "pooled"},
    "stage statistics, native": {"representation": "stage_stats"},
    "stage statistics + 8-frame run, native": {"representation": "stage_stats", "temporal_run": 8},
    "stage statistics, long side 224": {"representation": "stage_stats", "max_side": 224},
}
TEACHERS = ("blockiness", "blur", "svr_handcrafted", "ridge_deep", "stutter")  # the quickstart's
SETS = ("train_labeled", "validation", "validation_unseen", "test_in_domain", "test_ood")


def video_features(student: CompactStudent, paths: list[str]) -> tuple[np.ndarray, float]:
    """Per video, mean and std over frames of the student's frozen features `(N, 2D)`, and the
    seconds per video (decode + features)."""
    start, rows = time.perf_counter(), []
    for path in paths:
        feats = student.prepare(read_clip(path, student.sampler()), path)  # (T, D)
        rows.append(torch.cat([feats.mean(0), feats.std(0, unbiased=False)]).numpy())
    return np.stack(rows), (time.perf_counter() - start) / max(len(paths), 1)


def weak_targets(
    scores: Path, pool: pd.DataFrame, mapping: str = "zscore", reference: str | None = None
) -> pd.Series:
    """The teachers' ensemble score per pool video, from the newest table of each teacher: by
    default their mean z-score (each standardised over the pool); `mapping="logistic"` with a
    `reference` teacher is the ensemble on that teacher's scale."""
    tables = {}
    for name in TEACHERS:
        files = sorted(scores.glob(f"{name}-*.parquet"), key=lambda p: p.stat().st_mtime)
        if not files:
            raise SystemExit(f"{scores}: no score table of teacher {name!r}; run make quickstart")
        try:
            t = pd.read_parquet(files[-1], columns=["video_id", "score", "status"])
        except (OSError, ValueError, KeyError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise SystemExit(f"{files[-1]}: not a score table ({err}); delete it and run "
                             "make quickstart again to relabel") from err  # fmt: skip
        t = t[t.status == "ok"]
        tables[name] = t[t.video_id.isin(pool.video_id)][["video_id", "score"]]
    ensemble = ensemble_scores(tables, mapping=mapping, reference=reference)  # type: ignore[arg-type]
    return ensemble.set_index("video_id")["mean"].reindex(pool.video_id)


def ridge_srcc(
    x: np.ndarray, y: np.ndarray, feats: dict[str, np.ndarray], tables: dict, alpha: float | None
) -> dict[str, float]:
    """A ridge (standardised inputs; alpha by leave-one-out when None) fitted on `x, y`: its SRCC
    against VMAF on every set but `train_labeled`."""
    ridge = RidgeCV(alphas=np.logspace(-1, 5, 13)) if alpha is None else Ridge(alpha=alpha)
    model = make_pipeline(StandardScaler(), ridge).fit(x, y)
    return {
        split: float(spearmanr(model.predict(feats[split]), tables[split].vmaf).statistic)
        for split in SETS
        if split != "train_labeled"  # the supervised fit's own training data
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/sample")
    parser.add_argument("--scores", default="data/cache/scores")
    parser.add_argument("--frames", type=int, default=4, help="spread frames (the quickstart's)")
    parser.add_argument("--only", choices=list(REPRESENTATIONS), help="one representation")
    parser.add_argument("--feature_cache", help="read and keep features there (the quickstart's: "
                        "data/cache/features, so its representation costs no time)")  # fmt: skip
    args = parser.parse_args()
    corpus = Path(args.corpus)
    if not (corpus / "pool.parquet").is_file():
        raise SystemExit(f"{corpus}: no sample corpus (pool.parquet); run make quickstart")
    tables = {s: pd.read_parquet(corpus / f"{s}.parquet") for s in ("pool", *SETS)}
    for table in tables.values():
        table["path"] = [str(corpus / p) for p in table.path]
    scores, pool = Path(args.scores), tables["pool"]
    targets = {"zscore": weak_targets(scores, pool),
               "logistic onto svr_handcrafted": weak_targets(scores, pool, "logistic",
                                                             "svr_handcrafted")}  # fmt: skip
    torch.set_grad_enabled(False)

    rows, by_alpha = [], []
    chosen = {args.only: REPRESENTATIONS[args.only]} if args.only else REPRESENTATIONS
    for name, kwargs in chosen.items():
        student = CompactStudent(frames=args.frames, feature_cache=args.feature_cache, **kwargs)
        feats, secs = {}, []
        for split, table in tables.items():
            feats[split], s = video_features(student, list(table.path))
            secs.append(s)
        row = {"representation": name, "D": feats["pool"].shape[1] // 2,
               "KB/video": round(args.frames * feats["pool"].shape[1] // 2 * 4 / 1024),
               "ms/video": 1000 * float(np.mean(secs))}  # fmt: skip
        sup = ridge_srcc(feats["train_labeled"], tables["train_labeled"].vmaf.to_numpy(), feats,
                         tables, None)  # fmt: skip
        row.update({f"sup: {k}": v for k, v in sup.items()})
        ok = targets["zscore"].notna().to_numpy()
        weak = ridge_srcc(feats["pool"][ok], targets["zscore"].to_numpy()[ok], feats, tables, None)
        row.update({f"weak: {k}": v for k, v in weak.items()})
        rows.append(row)
        print(markdown_table([row], digits=3), flush=True)
        for target, y in targets.items():  # the weak fit at each alpha: chosen on validation
            ok = y.notna().to_numpy()
            for alpha in (10.0, 100.0, 1000.0, 10000.0):
                srcc = ridge_srcc(feats["pool"][ok], y.to_numpy()[ok], feats, tables, alpha)
                by_alpha.append({"representation": name, "weak target": target, "alpha": alpha,
                                 **srcc})  # fmt: skip
    print("\nSRCC against VMAF; sup: ridge on train_labeled's labels; weak: ridge on the teachers'")
    print("mean z-score over the pool (no labels); alpha by leave-one-out on the fit's own data.")
    print("Features: the student's own, frozen.\n")
    print(markdown_table(rows, digits=3))
    print(
        "\nThe weak fit at fixed alphas, on both ensemble scales (choose on validation_unseen):\n"
    )
    print(markdown_table(by_alpha, digits=3))


if __name__ == "__main__":
    main()
