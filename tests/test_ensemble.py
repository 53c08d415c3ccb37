"""The teacher ensemble: common scales, weighted mean and variance, the five-level rule at its
boundaries, pair sampling invariants, and the pair table (deterministic to the byte)."""

from __future__ import annotations

import warnings
from argparse import ArgumentError
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from datamodules import ensemble as ens
from datamodules.ensemble import (
    PAIR_COLUMNS,
    TeacherMix,
    build_ensemble_pairs,
    ensemble_scores,
    five_level,
    logistic4,
    sample_pairs,
)


def above(x: float) -> float:
    """The next float after x: just past a boundary."""
    return float(np.nextafter(x, np.inf))


def below(x: float) -> float:
    return float(np.nextafter(x, -np.inf))


def table(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"video_id": list(scores), "score": list(scores.values())})


def ids(n: int) -> list[str]:
    return [f"v{i:03d}" for i in range(n)]


def pool(n: int, seed: int = 0) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Three noisy teachers on different scales over n videos, and the video table."""
    rng = np.random.default_rng(seed)
    q = rng.uniform(0, 1, n)
    names = ids(n)
    tables = {
        "mos": pd.DataFrame({"video_id": names, "score": 1 + 4 * q + rng.normal(0, 0.3, n)}),
        "dover": pd.DataFrame({"video_id": names, "score": 100 * q + rng.normal(0, 8, n)}),
        "fast": pd.DataFrame({"video_id": names, "score": np.tanh(3 * q) + rng.normal(0, 0.1, n)}),
    }
    videos = pd.DataFrame({"video_id": names, "path": [f"/pool/{v}.mp4" for v in names]})
    return tables, videos


# --- the five-level rule ---------------------------------------------------------------------

BOUNDARIES = [
    # (delta, sigma, level) at and either side of ±σ and ±2σ, σ = 1.5
    (above(3.0), 1.5, 4),
    (3.0, 1.5, 3),  # Δ = 2σ: better, not superior
    (2.0, 1.5, 3),
    (above(1.5), 1.5, 3),
    (1.5, 1.5, 2),  # Δ = σ: similar
    (0.0, 1.5, 2),
    (-1.5, 1.5, 2),
    (below(-1.5), 1.5, 1),
    (-3.0, 1.5, 1),  # Δ = −2σ: worse, not inferior
    (below(-3.0), 1.5, 0),
    (-100.0, 1.5, 0),
    # σ_Δ = 0: the inequalities read literally
    (1e-12, 0.0, 4),
    (-1e-12, 0.0, 0),
    (0.0, 0.0, 2),
]


@pytest.mark.parametrize(("delta", "sigma", "level"), BOUNDARIES)
def test_five_level_at_the_boundaries(delta: float, sigma: float, level: int) -> None:
    assert five_level(delta, sigma) == level


def test_five_level_is_vectorised_and_antisymmetric() -> None:
    d, s, expected = map(np.array, zip(*BOUNDARIES, strict=True))
    np.testing.assert_array_equal(five_level(d, s), expected)
    rng = np.random.default_rng(0)
    delta, sigma = rng.normal(0, 2, (40, 30)), rng.uniform(0, 2, (40, 30))
    levels = five_level(delta, sigma)
    assert levels.shape == (40, 30) and levels.dtype == np.int64
    # Swapping the two videos mirrors the level (except exactly at a boundary, measure zero).
    np.testing.assert_array_equal(five_level(-delta, sigma), 4 - levels)
    assert five_level(np.array([1.0, -1.0]), 0.4).tolist() == [4, 0]  # broadcasts
    with pytest.raises(ValueError, match="sigma"):
        five_level(1.0, -0.1)
    with pytest.raises(ValueError, match="delta"):
        five_level(np.nan, 1.0)


# --- ensemble scores --------------------------------------------------------------------------


def test_weighted_mean_and_variance_across_teachers() -> None:
    a = table({"x": 1.0, "y": 2.0, "z": 4.0, "w": 7.0})
    b = table({"x": 3.0, "y": 1.0, "z": 2.0, "w": np.nan})  # w failed for b
    out = ensemble_scores({"a": a, "b": b}, {"a": 3.0, "b": 1.0}, "zscore").set_index("video_id")
    za = (a.score - a.score.mean()) / a.score.std(ddof=0)
    b_ok = b.score[:3]
    zb = (b_ok - b_ok.mean()) / b_ok.std(ddof=0)
    for k, vid in enumerate("xyz"):
        values = np.array([za[k], zb[k]])
        assert out.loc[vid, "mean"] == pytest.approx(np.average(values, weights=[3, 1]))
        assert out.loc[vid, "var"] == pytest.approx(np.cov(values, aweights=[3, 1], ddof=0))
        assert out.loc[vid, "n_teachers"] == 2
    # Seen by one teacher: its value, variance 0.
    assert (out.loc["w", "mean"], out.loc["w", "var"], out.loc["w", "n_teachers"]) == (
        pytest.approx(za[3]),
        0.0,
        1,
    )
    assert list(out.index) == sorted(out.index)
    only_two = ensemble_scores({"a": a, "b": b}, mapping="zscore", min_teachers=2)
    assert set(only_two.video_id) == {"x", "y", "z"}


def test_weights_scale_free_and_zero_weight_drops_a_teacher() -> None:
    tables, _ = pool(60)
    one = ensemble_scores(tables, {"mos": 1, "dover": 2, "fast": 1}, "rank")
    two = ensemble_scores(tables, {"mos": 5, "dover": 10, "fast": 5}, "rank")
    pd.testing.assert_frame_equal(one, two)
    without = ensemble_scores(tables, {"mos": 1, "dover": 0, "fast": 1}, "rank")
    pd.testing.assert_frame_equal(
        without, ensemble_scores({k: tables[k] for k in ("mos", "fast")}, mapping="rank")
    )
    assert (without.n_teachers == 2).all()


@pytest.mark.parametrize("mapping", ["zscore", "rank"])
def test_teachers_that_agree_up_to_scale_have_no_variance(mapping: str) -> None:
    q = np.random.default_rng(1).uniform(size=30)
    a = pd.DataFrame({"video_id": ids(30), "score": q})
    linear = pd.DataFrame({"video_id": ids(30), "score": 40 * q + 7})
    monotone = pd.DataFrame({"video_id": ids(30), "score": np.exp(5 * q)})
    tables = {"a": a, "b": linear} if mapping == "zscore" else {"a": a, "b": monotone}
    out = ensemble_scores(tables, mapping=mapping)
    assert out["var"].max() < 1e-20
    if mapping == "rank":
        assert out["mean"].min() == 0 and out["mean"].max() == 1


def test_logistic_maps_each_teacher_onto_the_reference() -> None:
    x = np.random.default_rng(2).uniform(0, 1, 80)
    truth = (90.0, 10.0, 0.45, 0.12)  # a saturating relation, as between two VQA models
    ref = pd.DataFrame({"video_id": ids(80), "score": logistic4(x, *truth)})
    other = pd.DataFrame({"video_id": ids(80), "score": x})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean fit: no fallback warning
        out = ensemble_scores({"ref": ref, "other": other}, mapping="logistic")
    np.testing.assert_allclose(out["mean"], ref.score, atol=1e-3)
    assert out["var"].max() < 1e-5
    # Reference chosen by name: the result is on the other teacher's scale instead.
    flipped = ensemble_scores({"ref": ref, "other": other}, mapping="logistic", reference="other")
    assert flipped["mean"].between(-0.1, 1.1).all()


def test_logistic_fallbacks_never_give_nan() -> None:
    ref = table({f"v{i}": float(i) for i in range(10)})
    few = table({"v1": 2.0, "v2": 4.0, "v3": 7.0, "new": 9.0})  # 3 shared videos: a line
    with pytest.warns(UserWarning, match="few: logistic fit failed .*3 videos.*linear fit"):
        out = ensemble_scores({"ref": ref, "few": few}).set_index("video_id")
    slope, intercept = np.polyfit([2.0, 4.0, 7.0], [1.0, 2.0, 3.0], 1)
    assert out.loc["new", "mean"] == pytest.approx(intercept + slope * 9.0)
    flat = table({f"v{i}": 5.0 for i in range(10)})  # constant: nothing fits
    with (
        pytest.warns(UserWarning, match="flat: logistic fit failed .*mean and spread"),
        pytest.warns(UserWarning, match="flat: all scores are equal"),
    ):
        out = ensemble_scores({"ref": ref, "flat": flat})
    assert np.isfinite(out[["mean", "var"]].to_numpy()).all()
    apart = table({"u1": 1.0, "u2": 3.0})  # no video in common with the reference
    with pytest.warns(UserWarning, match="apart: .*0 videos shared"):
        out = ensemble_scores({"ref": ref, "apart": apart}).set_index("video_id")
    std = ref.score.std(ddof=0)
    assert out.loc[["u1", "u2"], "mean"].tolist() == pytest.approx([4.5 - std, 4.5 + std])


def test_logistic_falls_back_to_a_line_when_curve_fit_fails(monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(ens, "curve_fit", fail)
    tables, _ = pool(40)
    with pytest.warns(UserWarning, match="RuntimeError: Optimal parameters not found"):
        out = ensemble_scores(tables, reference="dover").set_index("video_id")
    mos, dover = (tables[k].set_index("video_id").score for k in ("mos", "dover"))
    slope, intercept = np.polyfit(mos, dover, 1)
    fast = tables["fast"].set_index("video_id").score
    fast_line = np.polyfit(fast, dover, 1)
    expected = (dover + intercept + slope * mos + np.polyval(fast_line, fast)) / 3
    np.testing.assert_allclose(out["mean"], expected[out.index])


def test_reversed_teacher_is_flagged() -> None:
    tables, _ = pool(50)
    tables["fast"] = tables["fast"].assign(score=-tables["fast"].score)
    with pytest.warns(UserWarning, match="fast: maps onto mos in reverse order"):
        ensemble_scores(tables)


def test_bad_inputs() -> None:
    a = table({"x": 1.0, "y": 2.0})
    with pytest.raises(ValueError, match="lists x twice"):
        ensemble_scores({"a": pd.concat([a, a])}, mapping="rank")
    with pytest.raises(ValueError, match="columns video_id, score"):
        ensemble_scores({"a": a.rename(columns={"score": "mos"})})
    with pytest.raises(ValueError, match="no finite scores"):
        ensemble_scores({"a": a, "b": table({"x": np.nan})})
    with pytest.raises(ValueError, match="missing: b"):
        ensemble_scores({"a": a, "b": a}, {"a": 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        ensemble_scores({"a": a, "b": a}, {"a": 1.0, "b": -1.0})
    with pytest.raises(ValueError, match="reference teacher 'c'"):
        ensemble_scores({"a": a, "b": a}, reference="c")


# --- pair sampling ----------------------------------------------------------------------------


def check_pairs(pairs: pd.DataFrame, cap: int | None = None) -> None:
    assert (pairs.first_id != pairs.second_id).all()
    unordered = {frozenset(p) for p in zip(pairs.first_id, pairs.second_id, strict=True)}
    assert len(unordered) == len(pairs)
    if cap is not None:
        assert pd.concat([pairs.first_id, pairs.second_id]).value_counts().max() <= cap


@pytest.mark.parametrize("enumerate_limit", [ens.ENUMERATE_LIMIT, 0])  # 0: the big-pool path
@pytest.mark.parametrize("strategy", ["uniform", "stratified"])
def test_sampling_invariants(monkeypatch, strategy: str, enumerate_limit: int) -> None:
    monkeypatch.setattr(ens, "ENUMERATE_LIMIT", enumerate_limit)
    tables, _ = pool(120)
    scores = ensemble_scores(tables, mapping="zscore")
    pairs = sample_pairs(scores, 300, strategy, max_pairs_per_video=6, seed=3)
    assert len(pairs) == 300
    check_pairs(pairs, cap=6)
    # The order inside a pair is a coin flip, not the ids' order.
    assert 0.4 < (pairs.first_id < pairs.second_id).mean() < 0.6
    again = sample_pairs(scores.sample(frac=1, random_state=9), 300, strategy, 6, seed=3)
    pd.testing.assert_frame_equal(pairs, again)  # same seed, any row order: same pairs
    assert not pairs.equals(sample_pairs(scores, 300, strategy, 6, seed=4))


def test_sampling_stops_at_what_the_pool_allows() -> None:
    five = pd.DataFrame({"video_id": ids(5), "mean": np.arange(5.0)})
    with pytest.warns(UserWarning, match="asked for 20 pairs, 5 videos allow 10"):
        pairs = sample_pairs(five, 20)
    check_pairs(pairs)
    assert len(pairs) == 10
    ten = pd.DataFrame({"video_id": ids(10), "mean": np.arange(10.0)})
    with pytest.warns(UserWarning, match="allow [1-5] "):
        capped = sample_pairs(ten, 8, max_pairs_per_video=1)
    check_pairs(capped, cap=1)
    assert sample_pairs(five.iloc[:1], 0).empty


@pytest.mark.parametrize("enumerate_limit", [ens.ENUMERATE_LIMIT, 0])
def test_stratified_spreads_pairs_over_quality_bins(monkeypatch, enumerate_limit: int) -> None:
    monkeypatch.setattr(ens, "ENUMERATE_LIMIT", enumerate_limit)
    n, k = 100, 4
    scores = pd.DataFrame({"video_id": ids(n), "mean": np.random.default_rng(5).normal(size=n)})
    bin_of = dict(zip(scores.sort_values("mean").video_id, np.arange(n) * k // n, strict=True))

    def cells(strategy: str) -> pd.Series:
        pairs = sample_pairs(scores, 1000, strategy, seed=0, n_bins=k)
        a, b = pairs.first_id.map(bin_of), pairs.second_id.map(bin_of)
        return (np.minimum(a, b) * k + np.maximum(a, b)).value_counts()

    stratified, uniform = cells("stratified"), cells("uniform")
    assert len(stratified) == k * (k + 1) // 2  # every pair of bins, a bin with itself included
    # `stratified`: 10 bin pairs share 1000 pairs evenly, 100 each. `uniform`: a within-bin cell
    # holds C(25,2)/C(100,2) = 6% of pairs (about 61), a cross-bin one 12.6% (about 126).
    assert stratified.between(70, 130).all()
    within = [c * k + c for c in range(k)]
    assert stratified[within].mean() > 85 and uniform[within].mean() < 75


# --- the pair table ---------------------------------------------------------------------------


def test_pair_table_labels_follow_the_rule() -> None:
    tables, videos = pool(80)
    mix = TeacherMix(teachers={"mos": 1.0, "dover": 1.0, "fast": 0.5}, mapping="logistic")
    pairs = build_ensemble_pairs(tables, videos, 200, mix=mix, seed=1, round_index=2)
    assert list(pairs.columns) == list(PAIR_COLUMNS) and len(pairs) == 200
    check_pairs(pairs)
    stats = mix.ensemble(tables).set_index("video_id")
    first, second = stats.loc[pairs.first_id], stats.loc[pairs.second_id]
    np.testing.assert_allclose(pairs.delta, first["mean"].to_numpy() - second["mean"].to_numpy())
    sigma = np.sqrt(first["var"].to_numpy() + second["var"].to_numpy())
    np.testing.assert_allclose(pairs.sigma_delta, sigma)
    np.testing.assert_array_equal(pairs.level, five_level(pairs.delta, pairs.sigma_delta))
    np.testing.assert_allclose(pairs.z, pairs.delta / pairs.sigma_delta)
    np.testing.assert_allclose(pairs.soft_label, np.clip(norm.cdf(pairs.z), 1e-3, 1 - 1e-3))
    assert (pairs.first_path == "/pool/" + pairs.first_id + ".mp4").all()
    assert (pairs.second_path == "/pool/" + pairs.second_id + ".mp4").all()
    assert set(pairs.source) == {"ensemble"} and set(pairs["round"]) == {2}
    assert pairs.level.dtype == np.int64 and set(pairs.level) <= set(range(5))
    # Levels agree with the direction of Δ.
    assert (pairs.delta[pairs.level >= 3] > 0).all() and (pairs.delta[pairs.level <= 1] < 0).all()


def test_single_teacher_videos_have_infinite_z_and_clipped_soft_labels() -> None:
    one = table({"a": 1.0, "b": 2.0, "c": 2.0})
    videos = pd.DataFrame({"video_id": ["a", "b", "c"], "path": ["A", "B", "C"]})
    pairs = build_ensemble_pairs({"only": one}, videos, 3, mix=TeacherMix(mapping="zscore"))
    assert (pairs.sigma_delta == 0).all()
    by_pair = {
        frozenset((f, s)): row
        for f, s, row in zip(pairs.first_id, pairs.second_id, pairs.itertuples(), strict=True)
    }
    tie = by_pair[frozenset("bc")]
    assert (tie.level, tie.z, tie.soft_label) == (2, 0.0, 0.5)
    for row in (by_pair[frozenset("ab")], by_pair[frozenset("ac")]):
        better_first = row.first_id != "a"
        assert row.level == (4 if better_first else 0)
        assert row.z == (np.inf if better_first else -np.inf)
        assert row.soft_label == (0.999 if better_first else 0.001)


def test_pair_table_is_deterministic_to_the_byte(tmp_path: Path) -> None:
    tables, videos = pool(150)
    kwargs = dict(mix=TeacherMix(mapping="logistic"), strategy="stratified", seed=11)
    written = []
    for k in range(2):
        pairs = build_ensemble_pairs(tables, videos, 400, max_pairs_per_video=10, **kwargs)
        pairs.to_parquet(tmp_path / f"{k}.parquet")
        written.append(tmp_path / f"{k}.parquet")
    first, second = (pd.read_parquet(p) for p in written)
    assert first.equals(second)
    assert written[0].read_bytes() == written[1].read_bytes()
    other = build_ensemble_pairs(
        tables, videos, 400, max_pairs_per_video=10, **kwargs | {"seed": 12}
    )
    assert not other.equals(first)


def test_mix_selects_teachers_and_unknown_videos_are_dropped() -> None:
    tables, videos = pool(30)
    mix = TeacherMix(teachers={"dover": 1.0, "fast": 1.0}, mapping="rank")
    pd.testing.assert_frame_equal(
        mix.ensemble(tables),
        ensemble_scores({k: tables[k] for k in ("dover", "fast")}, mapping="rank"),
    )
    with pytest.raises(ValueError, match="mapping: unknown 'minmax'"):
        TeacherMix(mapping="minmax")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        TeacherMix(teachers={"dover": -1.0})
    with pytest.raises(ValueError, match="reference: 'mos' is not one of the teachers"):
        TeacherMix(teachers={"dover": 1.0}, reference="mos")
    with pytest.raises(ValueError, match="no score table for teacher.*niqe"):
        TeacherMix(teachers={"niqe": 1.0}).ensemble(tables)
    with pytest.warns(UserWarning, match="10 scored videos are not in the video table"):
        pairs = build_ensemble_pairs(tables, videos.iloc[:20], 50, mix=mix)
    assert set(pairs.first_id) | set(pairs.second_id) <= set(videos.video_id[:20])


def test_config_from_yaml_names_teachers_and_fails_on_a_wrong_value(tmp_path: Path) -> None:
    from jsonargparse import ArgumentParser

    from lightning_modules.teachers import Teacher

    (tmp_path / "dover.csv").write_text("path,score\na.mp4,1\n")
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--teacher", type=Teacher)
    parser.add_argument("--mix", type=TeacherMix, default=TeacherMix())
    config = parser.parse_string(
        "teacher:\n"
        "  class_path: lightning_modules.teachers.tables.ScoreTableTeacher\n"
        f"  init_args: {{table: {tmp_path / 'dover.csv'}, name: dover}}\n"
        "mix: {teachers: {dover: 2, fast: 1}, mapping: rank}\n"
    )
    built = parser.instantiate(config)
    assert built.teacher.name == "dover"
    assert built.mix == TeacherMix(teachers={"dover": 2.0, "fast": 1.0}, mapping="rank")
    with pytest.raises(ArgumentError, match="mix.mapping"):
        parser.parse_string("mix: {mapping: minmax}\n")
