"""The field's evaluation protocol for one model on one labelled set, and the results table.

SRCC, KRCC and PLCC are computed on raw predictions (as DOVER, FAST-VQA, Q-Align and the W2S paper
report them). Many papers fit a 4-parameter logistic of predictions onto labels first; both are
reported, labelled: `plcc` (raw) and `plcc_fitted`, `rmse` (after the fit: predictions on the
label's scale, the only RMSE that compares models) and `rmse_raw` (reference/datasets.md,
"Protocol"). "Overall" across sets is the mean weighted by the number of videos, as the paper's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional import kendall_rank_corrcoef, pearson_corrcoef, spearman_corrcoef

from datamodules.ensemble import fit_to_reference

METRICS = ("srcc", "plcc", "krcc", "rmse", "plcc_fitted", "rmse_raw")


def quality_metrics(pred: Sequence[float], mos: Sequence[float]) -> dict[str, float]:
    """SRCC, PLCC, KRCC and RMSE of predictions against labels (PLCC and RMSE both raw and after
    a logistic fit); pairs where either is NaN are left out; `n` counts the rest. Fewer than 3,
    or constant predictions or labels: NaN metrics."""
    p, y = np.asarray(pred, dtype=np.float64), np.asarray(mos, dtype=np.float64)
    keep = np.isfinite(p) & np.isfinite(y)
    p, y = p[keep], y[keep]
    out: dict[str, float] = {"n": int(keep.sum())}
    if len(p) < 3 or np.ptp(p) == 0 or np.ptp(y) == 0:
        return {**dict.fromkeys(METRICS, float("nan")), **out}
    tp, ty = torch.from_numpy(p), torch.from_numpy(y)
    out["srcc"] = float(spearman_corrcoef(tp, ty))
    out["plcc"] = float(pearson_corrcoef(tp, ty))
    out["krcc"] = float(kendall_rank_corrcoef(tp, ty))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a failed logistic falls back to a line, as documented
        mapping = fit_to_reference(p, y, name="prediction")
    fitted = mapping(p) if mapping is not None else np.full_like(y, y.mean())
    out["rmse"] = float(np.sqrt(np.mean((fitted - y) ** 2)))
    out["rmse_raw"] = float(np.sqrt(np.mean((p - y) ** 2)))
    fitted_spread = np.ptp(fitted) > 0
    out["plcc_fitted"] = (
        float(pearson_corrcoef(torch.from_numpy(fitted), ty)) if fitted_spread else float("nan")
    )
    return {k: out[k] for k in (*METRICS, "n")}


def overall(rows: Iterable[Mapping[str, Any]]) -> dict[str, float]:
    """The paper's "overall": each metric's mean over sets weighted by their number of videos
    (sets whose metric is NaN are left out of that metric)."""
    frame = pd.DataFrame(list(rows))
    out: dict[str, float] = {"n": int(frame.n.sum()) if len(frame) else 0}
    for metric in METRICS:
        if metric not in frame:
            continue
        ok = frame[metric].notna() & (frame.n > 0)
        weights = frame.n[ok]
        value = float(np.average(frame[metric][ok], weights=weights)) if ok.any() else float("nan")
        out[metric] = value
    return out


def evaluate(
    model: str,
    scores: pd.DataFrame,
    sets: Mapping[str, pd.DataFrame],
    round_index: int = 0,
) -> tuple[list[dict[str, Any]], dict[str, pd.DataFrame]]:
    """Rows `{model, round, set, srcc, plcc, krcc, rmse, n}` of `scores` (`video_id`, `score`)
    on each labelled set (`video_id`, `path`, `mos`), and the per-video predictions."""
    by_id = scores.dropna(subset=["score"]).drop_duplicates("video_id").set_index("video_id").score
    rows, predictions = [], {}
    for name, labelled in sets.items():
        table = labelled[["video_id", "path", "mos"]].copy()
        table["prediction"] = table.video_id.map(by_id).astype(float)
        predictions[name] = table
        metrics = quality_metrics(table.prediction, table.mos)
        rows.append({"model": model, "round": round_index, "set": name, **metrics})
    return rows, predictions


def results_table(rows: Iterable[Mapping[str, Any]], metric: str = "srcc") -> pd.DataFrame:
    """Paper Table 1's shape: one row per model (in order of appearance), one column per set,
    cells "SRCC / PLCC" (or the one `metric`)."""
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return frame
    models = list(dict.fromkeys(frame.model))
    sets = list(dict.fromkeys(frame.set))

    def cell(r: pd.Series) -> str:
        if metric == "srcc":
            return f"{r.srcc:.3f} / {r.plcc:.3f}"
        return f"{r[metric]:.3f}"

    frame["cell"] = frame.apply(cell, axis=1)
    table = frame.pivot_table(index="model", columns="set", values="cell", aggfunc="last")
    return table.reindex(index=models, columns=sets).rename_axis(index=None, columns=None)


def verdict(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per set: did the last round's student beat its weak teachers? Its SRCC minus the best single
    teacher's and minus the weak ensemble's (round 1's, before any student joined), with names."""
    frame = pd.DataFrame(list(rows))
    students = frame[frame.model.str.startswith("student:") & (frame["round"] > 0)]
    if students.empty:
        return []
    last = students[students["round"] == students["round"].max()]
    out = []
    for row in last.itertuples():
        teachers = frame[(frame.set == row.set) & frame.model.str.startswith("teacher:")]
        ensemble = frame[(frame.set == row.set) & (frame.model == "ensemble")]
        best = teachers.loc[teachers.srcc.idxmax()] if teachers.srcc.notna().any() else None
        entry: dict[str, Any] = {"set": row.set, "student": row.model, "srcc": row.srcc}
        if best is not None:
            entry |= {"best_teacher": best.model, "best_teacher_srcc": best.srcc,
                      "minus_best_teacher": row.srcc - best.srcc}  # fmt: skip
        if len(ensemble):
            entry |= {"ensemble_srcc": ensemble.srcc.iloc[0],
                      "minus_ensemble": row.srcc - ensemble.srcc.iloc[0]}  # fmt: skip
        out.append(entry)
    return out


def verdict_lines(entries: Iterable[Mapping[str, Any]]) -> list[str]:
    """One printable line per set of `verdict`'s entries."""
    lines = []
    for e in entries:
        parts = [f"{e['set']}: {e['student']} SRCC {e['srcc']:.3f}"]
        if "best_teacher" in e:
            parts.append(f"{e['minus_best_teacher']:+.3f} vs the best teacher "
                         f"({e['best_teacher']} {e['best_teacher_srcc']:.3f})")  # fmt: skip
        if "ensemble_srcc" in e:
            parts.append(f"{e['minus_ensemble']:+.3f} vs the ensemble ({e['ensemble_srcc']:.3f})")
        lines.append(", ".join(parts))
    return lines
