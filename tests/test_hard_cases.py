"""Hard cases: wrong synthetic pairs and gMAD pairs on hand-made score tables whose answer is
known, determinism, empty inputs and missing scores."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from datamodules.ensemble import PAIR_COLUMNS
from datamodules.hard_cases import (
    HardCaseConfig,
    build_hard_cases,
    gmad_pairs,
    wrong_synthetic_pairs,
)


def scores(mapping: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"video_id": list(mapping), "score": list(mapping.values())})


def videos(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"video_id": ids, "path": [f"/v/{i}.mp4" for i in ids]})


def synthetic(rows: list[tuple[str, str, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "first_id": [a for a, _, _ in rows],
            "second_id": [b for _, b, _ in rows],
            "first_path": [f"/r/{a}.mp4" for a, _, _ in rows],
            "second_path": [f"/r/{b}.mp4" for _, b, _ in rows],
            "level": np.array([lv for _, _, lv in rows], np.int64),
            "source": "spatial",
            "round": np.int64(1),
            "delta": [float(lv - 2) for _, _, lv in rows],
            "sigma_delta": np.nan,
            "z": np.nan,
            "soft_label": [float(lv > 2) for _, _, lv in rows],
        }
    )[list(PAIR_COLUMNS)]


# --- wrong synthetic pairs --------------------------------------------------------------------

PAIRS = synthetic([("a", "b", 4), ("c", "d", 3), ("e", "f", 0), ("g", "h", 1), ("a", "c", 2)])


def test_student_that_inverts_two_pairs_gets_exactly_those_back() -> None:
    # Right on a>b and g<h; inverted on c<d (says better) and e>f (says inferior).
    student = scores(dict(a=9, b=1, c=2, d=5, e=7, f=3, g=1, h=2))
    out = wrong_synthetic_pairs(PAIRS, student, round=2)
    assert list(out.columns) == list(PAIR_COLUMNS)
    assert list(zip(out.first_id, out.second_id, strict=True)) == [("c", "d"), ("e", "f")]
    assert (out.source == "hard_synthetic").all() and (out["round"] == 2).all()
    assert list(out.level) == [3, 0]  # the ground-truth labels are kept


def test_ties_are_wrong_and_similar_pairs_never_are() -> None:
    student = scores(dict(a=5, b=5, c=5, d=1, e=1, f=5, g=3, h=3))
    out = wrong_synthetic_pairs(PAIRS, student, round=1)
    assert list(out.first_id) == ["a", "g"]  # a=b and g=h ties; (a, c) is level 2


def test_pairs_with_unscored_videos_are_left_out_and_counted() -> None:
    student = pd.DataFrame(
        {
            "video_id": list("abcdefgh"),
            "score": [1.0, 9.0, np.nan, 1.0, 9.0, 1.0, 1.0, 2.0],
            "status": ["ok", "ok", "ok", "ok", "ok", "ok", "error", "ok"],
        }
    )
    with pytest.warns(UserWarning, match="3 of 5 synthetic pairs"):
        out = wrong_synthetic_pairs(PAIRS, student, round=1)
    assert list(out.first_id) == ["a", "e"]  # c is NaN, g failed: (c,d), (g,h), (a,c) go


def test_wrong_synthetic_pairs_of_nothing_is_an_empty_table() -> None:
    out = wrong_synthetic_pairs(PAIRS.iloc[:0], scores({}), round=1)
    assert out.empty and list(out.columns) == list(PAIR_COLUMNS)


# --- gMAD pairs -------------------------------------------------------------------------------


# Teacher: A, B, C together at the bottom (one bin of width 0.5 on ranks), D, E, F on top.
# The student spreads A..C over its whole scale (A lowest, C highest).
TEACHER = scores(dict(A=1.0, B=1.1, C=1.2, D=5.0, E=5.1, F=5.2))
STUDENT = scores(dict(A=0.0, B=2.5, C=10.0, D=3.0, E=4.0, F=5.0))


def test_teacher_equal_student_apart_pairs_come_first_spread_largest_first() -> None:
    out = gmad_pairs(TEACHER, STUDENT, videos(list("ABCDEF")), 0.5, 1, round=3, seed=0)
    assert {out.first_id[0], out.second_id[0]} == {"A", "C"}
    row = out.iloc[0]
    c_first = row.first_id == "C"
    # Student ranks 0 and 1: |Δ| = 1 = 2σ, the better/worse edge (superior needs Δ > 2σ).
    assert row.delta == (1.0 if c_first else -1.0) and row.level == (3 if c_first else 1)
    assert row.source == "hard_gmad" and row["round"] == 3 and row.sigma_delta == 0.5


def test_reverse_pairs_are_student_equal_teacher_apart_and_labelled_similar() -> None:
    # Student sees all four as two close levels; the teacher disagrees most on (P, S).
    teacher = scores(dict(P=0.0, Q=1.0, R=2.0, S=3.0))
    student = scores(dict(P=2.0, S=2.1, Q=5.0, R=5.1))
    out = gmad_pairs(teacher, student, videos(list("PQRS")), 0.5, 2, round=1, seed=0)
    # Forward kind: teacher bins {P,Q}, {R,S}; student puts P and Q in different bins.
    # Reverse kind: student bins {P,S}, {Q,R}; the teacher is further apart on P, S (1 vs 1/3).
    pairs = [frozenset(p) for p in zip(out.first_id, out.second_id, strict=True)]
    assert pairs[0] in ({"P", "Q"}, {"R", "S"}) and pairs[1] == {"P", "S"}
    assert out.level.iloc[1] == 2  # one student rank step (1/3) against σ = 0.5: similar
    assert abs(out.delta.iloc[1]) == pytest.approx(1 / 3)


def test_gmad_is_deterministic_without_self_or_repeated_pairs() -> None:
    rng = np.random.default_rng(7)
    ids = [f"v{k:03d}" for k in range(200)]
    truth = rng.normal(size=200)
    teacher = scores(dict(zip(ids, truth + rng.normal(scale=0.8, size=200), strict=True)))
    student = scores(dict(zip(ids, truth + rng.normal(scale=0.3, size=200), strict=True)))
    pool = videos(ids)
    a = gmad_pairs(teacher, student, pool, 0.1, 60, round=2, seed=5)
    b = gmad_pairs(teacher, student.sample(frac=1, random_state=1), pool, 0.1, 60, round=2, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 60 and (a.first_id != a.second_id).all()
    unordered = {frozenset(p) for p in zip(a.first_id, a.second_id, strict=True)}
    assert len(unordered) == len(a)
    assert (a.first_path == "/v/" + a.first_id + ".mp4").all()
    assert ((a.soft_label > 0.5) == (a.delta > 0)).all() and (a.sigma_delta == 0.1).all()
    assert 0 < (a.first_id > a.second_id).mean() < 1  # order is a coin flip, not sorted
    c = gmad_pairs(teacher, student, pool, 0.1, 60, round=2, seed=6)
    assert set(map(frozenset, zip(c.first_id, c.second_id, strict=True))) == unordered


def test_gmad_with_missing_scores_and_empty_inputs() -> None:
    teacher = pd.concat([TEACHER, scores(dict(X=9.0, Z=1.0))])
    student = pd.concat([STUDENT, scores(dict(Y=3.0, Z=2.0))])
    with pytest.warns(UserWarning, match="3 videos lack"):  # X, Y unscored; Z has no path
        out = gmad_pairs(teacher, student, videos(list("ABCDEFXY")), 0.5, 1, round=1, seed=0)
    assert {out.first_id[0], out.second_id[0]} == {"A", "C"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        empty = gmad_pairs(scores({}), scores({}), videos([]), 0.1, 10, round=1, seed=0)
    assert empty.empty and list(empty.columns) == list(PAIR_COLUMNS)
    none = gmad_pairs(TEACHER, STUDENT, videos(list("ABCDEF")), 0.5, 0, round=1, seed=0)
    assert none.empty


def test_build_hard_cases_and_config() -> None:
    student = scores(dict(A=0.0, B=2.5, C=10.0, D=3.0, E=4.0, F=5.0, c=2, d=5))
    pairs = synthetic([("c", "d", 3)])  # c is better; the student scores it lower: wrong
    pool = videos(list("ABCDEF"))
    config = HardCaseConfig(bin_width=0.5, n_gmad_pairs=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # c, d have no teacher score: left out of gMAD
        out = build_hard_cases(config, TEACHER, student, pool, pairs, round=2)
        off = HardCaseConfig(bin_width=0.5, n_gmad_pairs=1, include_synthetic=False)
        alone = build_hard_cases(off, TEACHER, student, pool, pairs, round=2)
    assert list(out.source) == ["hard_gmad", "hard_synthetic"]
    assert list(alone.source) == ["hard_gmad"] and (out["round"] == 2).all()
    with pytest.raises(ValueError, match="bin_width"):
        HardCaseConfig(bin_width=0)
