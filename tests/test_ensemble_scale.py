"""The table stages built for millions of videos give the tables the earlier pandas code gave.

`tests/data/ensemble_golden/` holds what the earlier code (pandas groupby, a Python loop over the
drawn candidates) made from `benchmarks.scale_tables.synthetic_tables(800, seed=3)`: the ensemble
under each mapping, and pair tables from both drawing paths (every pair enumerated, and the
rejecting draw that pools too big to enumerate use), with and without a cap on pairs per video.
Ids, paths and levels must match exactly; floats to rounding (1e-12): Kahan sums and bincounts
add the same numbers in another way. Where a logistic fit maps the scores, its floats match to
1e-3 relative or 1e-4 absolute: the fit is iterative and lands that close to one optimum on another
CPU (AVX-512 or not), where the goldens may not have been made.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.scale_tables import synthetic_tables
from datamodules import ensemble as ens
from datamodules.ensemble import TeacherMix, build_ensemble_pairs

GOLDEN = Path(__file__).parent / "data" / "ensemble_golden"
EXACT = ["first_id", "second_id", "first_path", "second_path", "level", "source", "round"]
ROUNDING = {"rtol": 0, "atol": 1e-12}
FITTED = {"rtol": 1e-3, "atol": 1e-4}  # through scipy's logistic fit (module docstring)


@pytest.fixture(scope="module")
def pool() -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    return synthetic_tables(800, seed=3)


@pytest.mark.parametrize("mapping", ["logistic", "zscore", "rank"])
def test_the_ensemble_matches_the_earlier_code(pool, mapping: str) -> None:
    tables, _ = pool
    mix = TeacherMix(mapping=mapping, reference="teacher2" if mapping == "logistic" else None)
    new, old = mix.ensemble(tables), pd.read_parquet(GOLDEN / f"ensemble_{mapping}.parquet")
    assert new.video_id.tolist() == old.video_id.tolist()
    assert new.n_teachers.tolist() == old.n_teachers.tolist()
    for column in ("mean", "var"):
        np.testing.assert_allclose(new[column], old[column],
                                   **(FITTED if mapping == "logistic" else ROUNDING))  # fmt: skip


@pytest.mark.parametrize("path", ["enumerated", "rejecting"])
@pytest.mark.parametrize(
    ("case", "strategy", "cap"),
    [("uniform", "uniform", None), ("stratified_cap3", "stratified", 3)],
)
def test_pair_tables_match_the_earlier_code_pair_for_pair(
    pool, monkeypatch, path: str, case: str, strategy: str, cap: int | None
) -> None:  # fmt: skip
    tables, videos = pool
    if path == "rejecting":  # the draw of pools too big to enumerate every pair
        monkeypatch.setattr(ens, "ENUMERATE_LIMIT", 0)
    mix = TeacherMix(reference="teacher0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cap allows fewer pairs than asked: said, expected
        new = build_ensemble_pairs(tables, videos, 1000, mix=mix, strategy=strategy,
                                   max_pairs_per_video=cap, seed=7, round_index=2)  # fmt: skip
        given = build_ensemble_pairs(tables, videos, 1000, mix=mix, strategy=strategy,
                                     max_pairs_per_video=cap, seed=7, round_index=2,
                                     ensemble=mix.ensemble(tables))  # fmt: skip
    old = pd.read_parquet(GOLDEN / f"pairs_{path}_{case}.parquet")
    assert list(new.columns) == list(old.columns) and len(new) == len(old) == 1000
    for column in EXACT:
        assert new[column].tolist() == old[column].tolist(), column
    for column in ("delta", "sigma_delta", "z", "soft_label"):  # the mix maps by logistic
        np.testing.assert_allclose(new[column], old[column], **FITTED)
    pd.testing.assert_frame_equal(new, given)  # an ensemble passed in is the one it would make
    if cap is not None:
        counts = pd.concat([new.first_id, new.second_id]).value_counts()
        assert counts.max() <= cap


def test_a_large_pool_fits_each_logistic_on_a_spread_sample(pool, monkeypatch) -> None:
    tables, _ = pool
    mix = TeacherMix(reference="teacher0")
    full = mix.ensemble(tables)
    monkeypatch.setattr(ens, "LOGISTIC_FIT_VIDEOS", 200)  # as if the pool had millions
    sampled = mix.ensemble(tables)
    assert sampled.video_id.tolist() == full.video_id.tolist()
    assert np.corrcoef(sampled["mean"], full["mean"])[0, 1] > 0.999
    assert not np.allclose(sampled["mean"], full["mean"], rtol=0, atol=1e-12)  # it did sample


def test_ids_that_are_not_strings_and_unsorted_ensembles(pool) -> None:
    tables = {"a": pd.DataFrame({"video_id": [3, 1, 2], "score": [0.3, 0.1, 0.2]}),
              "b": pd.DataFrame({"video_id": ["2", "3"], "score": [2.0, 3.0]})}  # fmt: skip
    out = ens.ensemble_scores(tables, mapping="zscore")
    assert out.video_id.tolist() == ["1", "2", "3"] and out.n_teachers.tolist() == [1, 2, 2]
    shuffled = out.iloc[[2, 0, 1]]
    assert ens.sample_pairs(shuffled, 3, seed=0).equals(ens.sample_pairs(out, 3, seed=0))
    with pytest.raises(ValueError, match="lists a video twice"):
        ens.sample_pairs(pd.concat([out, out.iloc[:1]]), 2)


def test_gmad_pairs_match_the_earlier_code() -> None:
    """gMAD hard cases with a student that failed on some videos and a pool missing some: the
    earlier code's table (`gmad_pairs.parquet`), pair for pair."""
    from datamodules.hard_cases import gmad_pairs

    tables, videos = synthetic_tables(3000, seed=5)
    student = tables["teacher4"].copy()
    student.loc[student.index[:50], "score"] = float("nan")
    with pytest.warns(UserWarning, match="105 videos lack"):
        new = gmad_pairs(tables["teacher0"], student, videos.iloc[100:], 0.05, 400, 2, seed=3)
    old = pd.read_parquet(GOLDEN / "gmad_pairs.parquet")
    for column in EXACT:
        assert new[column].tolist() == old[column].tolist(), column
    for column in ("delta", "sigma_delta", "z", "soft_label"):
        np.testing.assert_allclose(new[column], old[column], **ROUNDING)
