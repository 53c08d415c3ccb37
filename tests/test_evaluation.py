"""The evaluation protocol: metric values against scipy's, the logistic fit, NaN handling, the
weighted overall and the results table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from datamodules.ensemble import logistic4
from experiments.evaluation import (
    evaluate,
    overall,
    quality_metrics,
    results_table,
    verdict,
    verdict_lines,
)


def test_metrics_match_scipy() -> None:
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 100, 60)
    pred = 0.02 * mos + rng.normal(0, 0.4, 60)  # another scale, monotone with noise
    m = quality_metrics(pred, mos)
    assert m["n"] == 60
    assert m["srcc"] == pytest.approx(stats.spearmanr(pred, mos)[0], abs=1e-6)
    assert m["krcc"] == pytest.approx(stats.kendalltau(pred, mos)[0], abs=1e-6)
    assert m["plcc"] == pytest.approx(stats.pearsonr(pred, mos)[0], abs=1e-6)
    assert m["rmse_raw"] == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)))
    # after the logistic fit the predictions are on the MOS scale: RMSE near the noise level
    assert m["rmse"] < 0.5 * m["rmse_raw"]
    assert m["plcc_fitted"] >= m["plcc"] - 0.01


def test_a_logistic_relation_is_fitted_exactly() -> None:
    x = np.linspace(-3, 3, 40)
    y = logistic4(x, 90.0, 10.0, 0.2, 0.7)
    m = quality_metrics(x, y)
    assert m["rmse"] == pytest.approx(0.0, abs=1e-3)
    assert m["plcc_fitted"] == pytest.approx(1.0, abs=1e-6)
    assert m["plcc"] < 0.99  # the raw relation is not linear
    assert m["srcc"] == pytest.approx(1.0, abs=1e-5)


def test_nan_pairs_are_left_out_and_degenerate_input_gives_nan() -> None:
    m = quality_metrics([1.0, 2.0, math.nan, 4.0, 5.0], [1.0, 2.0, 3.0, math.nan, 5.0])
    assert m["n"] == 3 and m["srcc"] == pytest.approx(1.0, abs=1e-5)
    flat = quality_metrics([1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0])
    assert flat["n"] == 4 and math.isnan(flat["srcc"]) and math.isnan(flat["rmse"])
    assert math.isnan(quality_metrics([1.0, 2.0], [2.0, 1.0])["plcc"])


def test_overall_is_weighted_by_videos() -> None:
    rows = [{"srcc": 0.9, "plcc": 0.8, "n": 300}, {"srcc": 0.5, "plcc": math.nan, "n": 100}]
    out = overall(rows)
    assert out["n"] == 400
    assert out["srcc"] == pytest.approx((0.9 * 300 + 0.5 * 100) / 400)
    assert out["plcc"] == pytest.approx(0.8)  # a NaN set is left out of that metric only


def test_evaluate_and_the_table() -> None:
    labelled = pd.DataFrame({"video_id": list("abcde"), "path": list("abcde"),
                             "mos": [1.0, 2.0, 3.0, 4.0, 5.0]})  # fmt: skip
    scores = pd.DataFrame({"video_id": list("abcd"), "score": [0.1, 0.2, 0.4, 0.3]})
    rows, predictions = evaluate("teacher:x", scores, {"set": labelled}, round_index=0)
    assert rows[0]["model"] == "teacher:x" and rows[0]["n"] == 4
    assert predictions["set"].prediction.isna().sum() == 1  # "e" was not scored
    table = results_table(rows)
    assert table.loc["teacher:x", "set"] == f"{rows[0]['srcc']:.3f} / {rows[0]['plcc']:.3f}"


def test_verdict_compares_the_last_student_with_the_best_teacher_and_the_ensemble() -> None:
    def row(model: str, k: int, s: str, srcc: float) -> dict:
        return {"model": model, "round": k, "set": s, "srcc": srcc, "plcc": srcc, "n": 10}

    rows = [row("teacher:a", 0, "ood", 0.40), row("teacher:b", 0, "ood", 0.45),
            row("student:round0", 0, "ood", 0.10), row("ensemble", 1, "ood", 0.42),
            row("student:round1", 1, "ood", 0.44), row("ensemble:round2", 2, "ood", 0.60),
            row("student:round2", 2, "ood", 0.52)]  # fmt: skip
    (entry,) = verdict(rows)
    assert entry["student"] == "student:round2" and entry["best_teacher"] == "teacher:b"
    assert entry["minus_best_teacher"] == pytest.approx(0.07)
    assert entry["minus_ensemble"] == pytest.approx(0.10)  # round 1's weak ensemble, not round 2's
    (line,) = verdict_lines([entry])
    assert line == ("ood: student:round2 SRCC 0.520, +0.070 vs the best teacher (teacher:b "
                    "0.450), +0.100 vs the ensemble (0.420)")  # fmt: skip
    assert verdict([row("teacher:a", 0, "ood", 0.4)]) == []  # no trained student: no verdict
