"""The teacher ensemble and its pseudo-labelled pairs (paper: "Pseudo-labelling from the teacher
ensemble").

Per video, the teachers' scores are mapped to a common scale and combined into a weighted mean ȳ
and variance σ²; a pair (A, B) gets Δ = ȳ_A − ȳ_B, σ_Δ = sqrt(σ_A² + σ_B²) and one of five levels,
"how the first compares with the second": 0 inferior (Δ < −2σ_Δ), 1 worse (−2σ_Δ ≤ Δ < −σ_Δ),
2 similar (|Δ| ≤ σ_Δ), 3 better (σ_Δ < Δ ≤ 2σ_Δ), 4 superior (Δ > 2σ_Δ).

Decisions the paper leaves open:
- σ_Δ = 0 (every teacher agrees on both videos, or each video was scored by one teacher): the
  same inequalities read literally, so any Δ > 0 is superior, any Δ < 0 inferior, Δ = 0 similar.
- A video scored by only some teachers uses those present; seen by one, its variance is 0, so it
  adds no uncertainty to its pairs: pairs of two such videos are always superior, inferior or
  similar. `min_teachers` drops such videos where that is unwanted.
- Variance is the weighted population variance Σw(y − ȳ)²/Σw (equal weights: the plain one).
- How candidate pairs are drawn is not stated: here uniformly, or spread evenly over pairs of
  quality bins (`stratified`), seeded, with an optional cap on pairs per video.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import ArrayLike
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import norm, rankdata

ScaleMapping = Literal["logistic", "zscore", "rank"]
PairStrategy = Literal["uniform", "stratified"]
LEVELS = ("inferior", "worse", "similar", "better", "superior")
PAIR_COLUMNS = (
    "first_id", "second_id", "first_path", "second_path", "level", "source", "round",
    "delta", "sigma_delta", "z", "soft_label",
)  # fmt: skip
MIN_LOGISTIC_POINTS = 5  # 4 parameters: with fewer shared videos the "fit" only interpolates
ENUMERATE_LIMIT = 2_000_000  # up to this many candidate pairs (about 2,000 videos) draw exactly
LOGISTIC_FIT_VIDEOS = 20_000  # a teacher's logistic is fitted on at most this many shared videos


@dataclass(frozen=True)
class TeacherMix:
    """Which teachers make the ensemble, how much each counts, and their common scale."""

    teachers: dict[str, float] = field(default_factory=dict)
    """Teacher name -> weight (>= 0); empty: every score table given, equally weighted."""
    mapping: ScaleMapping = "logistic"
    """Common scale: `logistic` (4-parameter logistic onto the reference teacher, the paper's
    later version), `zscore` (each teacher standardised) or `rank` (ranks scaled to [0, 1])."""
    reference: str | None = None
    """The teacher whose scale `logistic` maps the others onto; None: the first one."""

    def __post_init__(self) -> None:
        # A wrong value fails when the config is read, before any work starts.
        if self.mapping not in ("logistic", "zscore", "rank"):
            raise ValueError(f"mapping: unknown {self.mapping!r}; use logistic, zscore or rank")
        bad = {k: w for k, w in self.teachers.items() if not (np.isfinite(w) and w >= 0)}
        if bad:
            raise ValueError(f"teachers: weights must be finite and >= 0, got {bad}")
        if self.teachers and self.reference is not None and self.reference not in self.teachers:
            raise ValueError(f"reference: {self.reference!r} is not one of the teachers")

    def select(self, tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
        """The tables this mix uses, in its order; a named teacher without a table fails."""
        if not self.teachers:
            return dict(tables)
        missing = [name for name in self.teachers if name not in tables]
        if missing:
            raise ValueError(
                f"no score table for teacher(s) {', '.join(missing)}; "
                f"tables: {', '.join(tables) or 'none'}"
            )
        return {name: tables[name] for name in self.teachers}

    def ensemble(self, tables: Mapping[str, pd.DataFrame], min_teachers: int = 1) -> pd.DataFrame:
        """`ensemble_scores` of the selected tables with this mix's weights and scale."""
        weights = dict(self.teachers) or None
        return ensemble_scores(
            self.select(tables), weights, self.mapping, self.reference, min_teachers=min_teachers
        )


def ensemble_scores(
    tables: Mapping[str, pd.DataFrame],
    weights: Mapping[str, float] | None = None,
    mapping: ScaleMapping = "logistic",
    reference: str | None = None,
    *,
    min_teachers: int = 1,
) -> pd.DataFrame:
    """Per video: `video_id`, weighted `mean` and `var` across teachers, and `n_teachers`.

    `tables`: teacher name -> DataFrame[`video_id`, `score`], higher is better; rows whose score
    is NaN (failed) are dropped. Teachers with weight 0 are left out. Sorted by `video_id`.

    Built for pools of millions: the ids are hashed and sorted once (Arrow), and every teacher
    becomes a pair of arrays (positions among the sorted ids, scores) added in turn."""
    if not tables:
        raise ValueError("no score tables to ensemble")
    weights = _check_weights(tables, weights)
    used = [name for name in tables if weights[name] > 0]
    ids, positions = align_ids({name: _clean_ids(name, tables[name]) for name in used})

    def load(name: str) -> _Scores:
        return _Scores.of(name, positions.pop(name), tables[name].score)

    n = len(ids)
    w_sum, mean, m2 = np.zeros(n), np.zeros(n), np.zeros(n)
    n_teachers = np.zeros(n, np.int64)
    # One teacher at a time (a pool of millions holds one teacher's mapped scores, not all), with
    # West's weighted update of mean and sum of squared deviations: no E[y²] − ȳ² cancellation,
    # and a video seen by one teacher gets exactly 0, as the σ_Δ = 0 rule needs.
    for name, s in _to_common_scale(used, load, mapping, reference):
        w, at = weights[name], s.at  # `at` holds each video once: fancy updates are safe
        total = w_sum[at] + w
        delta = s.y - mean[at]
        mean[at] += delta * (w / total)
        m2[at] += w * delta * (s.y - mean[at])
        w_sum[at] = total
        n_teachers[at] += 1
    seen = n_teachers > 0  # a video whose every score failed is not in the ensemble
    var = np.divide(m2, w_sum, out=np.zeros(n), where=seen)
    keep = seen & (n_teachers >= min_teachers)
    return pd.DataFrame(
        {"video_id": ids.filter(pa.array(keep)).to_pandas(), "mean": mean[keep],
         "var": var[keep], "n_teachers": n_teachers[keep]}
    )  # fmt: skip


@dataclass(frozen=True)
class _Scores:
    """One teacher's scores: `y[k]` is the score of the video at sorted position `at[k]`; `at`
    ascends, so the scores run in video-id order."""

    at: np.ndarray
    y: np.ndarray

    @staticmethod
    def of(name: str, at: np.ndarray, score: pd.Series) -> _Scores:
        """Teacher `name`'s finite scores (failed rows, NaN, dropped), in id order."""
        y = pd.to_numeric(score, errors="coerce").to_numpy(float)
        ok = np.isfinite(y)
        if not ok.any():
            raise ValueError(f"score table of {name!r} has no finite scores (every row failed?)")
        order = np.argsort(at[ok], kind="stable")
        return _Scores(at[ok][order], y[ok][order])

    def on(self, at: np.ndarray) -> np.ndarray:
        """The scores at the sorted positions `at` (each one present here)."""
        return self.y[np.searchsorted(self.at, at)]


def align_ids(
    per_teacher: Mapping[str, pa.Array],
) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Every video id of any teacher (or any table of ids), sorted; and each one's rows'
    positions in it. One Arrow dictionary encoding hashes every id once, in C++; sorting the
    distinct ids gives each code its position. (pandas' object-string sort and groupby made
    millions slow.)"""
    encoded = pa.chunked_array(list(per_teacher.values()), type=pa.large_string())
    encoded = encoded.dictionary_encode()
    # every chunk's codes index one dictionary: the last chunk's holds every id
    unique = (
        encoded.chunks[-1].dictionary if encoded.num_chunks else pa.array([], pa.large_string())
    )
    order = pc.sort_indices(unique)  # UTF-8 byte order is Python's str order
    # a code's position among the sorted ids; int32 while it fits: half the memory at millions
    position = np.empty(len(unique), np.int32 if len(unique) < 2**31 else np.int64)
    position[order.to_numpy()] = np.arange(len(unique), dtype=position.dtype)
    chunks = [c.indices.to_numpy(zero_copy_only=False) for c in encoded.chunks]
    lengths = [len(ids) for ids in per_teacher.values()]
    if [len(c) for c in chunks] != lengths:  # Arrow merged or dropped (empty) chunks: split anew
        every = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
        chunks = np.split(every, np.cumsum(lengths)[:-1])
    positions = {}
    for name, codes in zip(per_teacher, chunks, strict=True):
        twice = np.flatnonzero(np.bincount(codes, minlength=len(unique)) > 1)
        if len(twice):
            raise ValueError(f"score table of {name!r} lists {unique[int(twice[0])]} twice")
        positions[name] = position[codes]
    return unique.take(order), positions


def five_level(delta: ArrayLike, sigma: ArrayLike) -> np.ndarray:
    """The paper's level (0 inferior ... 4 superior) of Δ against σ_Δ, elementwise (int64).

    σ_Δ = 0 applies the same inequalities: Δ > 0 superior, Δ < 0 inferior, Δ = 0 similar."""
    d, s = np.broadcast_arrays(np.asarray(delta, float), np.asarray(sigma, float))
    if not np.isfinite(d).all():
        raise ValueError("delta must be finite")
    if np.isnan(s).any() or (s < 0).any():
        raise ValueError("sigma must be >= 0")
    level = np.full(d.shape, 2, np.int64)
    level[d > s] = 3
    level[d > 2 * s] = 4
    level[d < -s] = 1
    level[d < -2 * s] = 0
    return level


def z_and_soft_label(
    delta: np.ndarray, sigma: np.ndarray, clip: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """z = Δ/σ_Δ (±inf where σ_Δ = 0 and Δ ≠ 0; 0 where both are 0) and P(first is better) =
    Φ(z) clipped to [clip, 1 − clip], so that a cross-entropy on it stays finite."""
    d, s = np.asarray(delta, float), np.asarray(sigma, float)
    z = np.divide(d, s, out=np.where(d > 0, np.inf, np.where(d < 0, -np.inf, 0.0)), where=s > 0)
    return z, np.clip(norm.cdf(z), clip, 1 - clip)


def sample_pairs(
    ensemble: pd.DataFrame,
    n_pairs: int,
    strategy: PairStrategy = "uniform",
    max_pairs_per_video: int | None = None,
    seed: int = 0,
    *,
    n_bins: int = 5,
) -> pd.DataFrame:
    """`n_pairs` pairs (`first_id`, `second_id`) of distinct videos of `ensemble`, seeded.

    No unordered pair twice; each pair's order is a coin flip; no video in more than
    `max_pairs_per_video` pairs. `uniform`: every unordered pair equally likely. `stratified`:
    videos fall into `n_bins` equal-count bins of ensemble `mean`, and each pair of bins (a bin
    with itself included) gets the same share of pairs, so similar-quality pairs (which give the
    `similar` level) are as common as far-apart ones. Fewer pairs than asked, with a warning,
    where the videos and the cap do not allow more. The input's row order does not matter."""
    table, ids = _by_id(ensemble)
    first, second = _pair_positions(
        table["mean"].to_numpy(float), n_pairs, strategy, max_pairs_per_video, seed, n_bins
    )
    return pd.DataFrame(
        {"first_id": take_strings(ids, first), "second_id": take_strings(ids, second)}
    )


def take_strings(ids: pa.Array, rows: np.ndarray) -> pd.Series:
    """`ids[rows]` as a pandas string column, without a Python object per string."""
    return ids.take(pa.array(rows)).to_pandas()


def _by_id(ensemble: pd.DataFrame) -> tuple[pd.DataFrame, pa.Array]:
    """The ensemble sorted by video id (as str), checked for repeats, and its ids; as it is when
    it already is (ensemble_scores' own output), which saves sorting millions of strings again."""
    ids = arrow_strings(ensemble.video_id)
    table = ensemble.reset_index(drop=True)
    if len(ids) > 1 and not pc.all(pc.greater(ids[1:], ids[:-1])).as_py():  # not increasing
        order = pc.sort_indices(ids).to_numpy()
        table, ids = table.iloc[order].reset_index(drop=True), ids.take(order)
        if not pc.all(pc.greater(ids[1:], ids[:-1])).as_py():  # sorted, so a repeat is adjacent
            raise ValueError("the ensemble lists a video twice")
    return table, ids


def _pair_positions(
    mean: np.ndarray, n_pairs: int, strategy: PairStrategy, cap: int | None, seed: int,
    n_bins: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """`sample_pairs` on positions: (first, second) rows of the id-sorted ensemble."""
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    if cap is not None and cap < 1:
        raise ValueError(f"max_pairs_per_video must be >= 1, got {cap}")
    if strategy not in ("uniform", "stratified"):
        raise ValueError(f"unknown pair strategy {strategy!r}; use uniform or stratified")
    n = len(mean)
    bins = _quality_bins(mean, n_bins) if strategy == "stratified" else np.zeros(n, np.int64)
    rng = np.random.default_rng(seed)
    if n * (n - 1) // 2 <= ENUMERATE_LIMIT:
        lo, hi = _draw_enumerated(bins, n_pairs, cap, rng)
    else:
        lo, hi = _draw_rejecting(bins, n_pairs, cap, rng)
    if len(lo) < n_pairs:
        warnings.warn(
            f"asked for {n_pairs} pairs, {n} videos allow {len(lo)} (max_pairs_per_video={cap})",
            stacklevel=3,
        )
    swap = rng.random(len(lo)) < 0.5
    return np.where(swap, hi, lo), np.where(swap, lo, hi)


def build_ensemble_pairs(
    tables: Mapping[str, pd.DataFrame],
    videos: pd.DataFrame,
    n_pairs: int,
    *,
    mix: TeacherMix | None = None,
    strategy: PairStrategy = "uniform",
    max_pairs_per_video: int | None = None,
    n_bins: int = 5,
    seed: int = 0,
    round_index: int = 0,
    min_teachers: int = 1,
    soft_clip: float = 1e-3,
    ensemble: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The pair table of one round: ensemble, sample, label. Columns: `PAIR_COLUMNS`.

    `videos`: DataFrame[`video_id`, `path`] (the pool); scored videos missing from it are left
    out with a warning. `ensemble`: `mix.ensemble(tables, min_teachers)` when the caller has it
    already (it is the slow part at millions of videos). Same inputs and seed give the same
    table."""
    video_ids = arrow_strings(videos.video_id)
    if pc.count_distinct(video_ids).as_py() != len(video_ids):
        raise ValueError("the video table lists a video id twice")
    if ensemble is None:
        ensemble = (mix or TeacherMix()).ensemble(tables, min_teachers=min_teachers)
    ensemble, ids = _by_id(ensemble)
    # each scored video's row of the pool, or -1
    row = pc.index_in(ids, value_set=video_ids).fill_null(-1).to_numpy().astype(np.int64)
    known = row >= 0
    if not known.all():
        warnings.warn(
            f"{(~known).sum()} scored videos are not in the video table and are left out, "
            f"e.g. {', '.join(ensemble.video_id[~known][:3])}",
            stacklevel=2,
        )
        ensemble, row = ensemble[known].reset_index(drop=True), row[known]
        ids = ids.filter(pa.array(known))
    mean, var = ensemble["mean"].to_numpy(float), ensemble["var"].to_numpy(float)
    first, second = _pair_positions(mean, n_pairs, strategy, max_pairs_per_video, seed, n_bins)
    delta = mean[first] - mean[second]
    sigma = np.sqrt(var[first] + var[second])
    z, soft = z_and_soft_label(delta, sigma, soft_clip)
    paths = arrow_strings(videos.path)
    return pd.DataFrame(
        {
            "first_id": take_strings(ids, first),
            "second_id": take_strings(ids, second),
            "first_path": take_strings(paths, row[first]),
            "second_path": take_strings(paths, row[second]),
            "level": five_level(delta, sigma),
            "source": "ensemble",
            "round": np.int64(round_index),
            "delta": delta,
            "sigma_delta": sigma,
            "z": z,
            "soft_label": soft,
        },
        columns=list(PAIR_COLUMNS),
    )


# --- scores onto a common scale ---------------------------------------------------------------


def logistic4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """ŷ = β2 + (β1 − β2) / (1 + exp(−(x − β3)/|β4|)) (reference/datasets.md)."""
    t = np.clip(-(x - b3) / (abs(b4) + 1e-12), -500, 500)  # clip: exp overflows past ~709
    return b2 + (b1 - b2) / (1 + np.exp(t))


def fit_logistic4(
    x: np.ndarray, y: np.ndarray, min_width: float = 0.0
) -> tuple[np.ndarray | None, str | None]:
    """(β1..β4 of `logistic4` fitted from `x` onto `y`, None) or (None, why it cannot be fitted).
    `min_width`: the least |β4|, in units of x's standard deviation; 0 lets the curve become a
    step (the least squares of a small set often is one: every video on one of two values)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    reason = _logistic_unfit(x, y)
    if reason is not None:
        return None, reason
    p0 = [y.max(), y.min(), x.mean(), x.std() / 4]  # datasets.md's initialisation
    low = min_width * x.std()
    bounds = ([-np.inf] * 3 + [low], [np.inf] * 4) if low > 0 else (-np.inf, np.inf)
    p0[3] = max(p0[3], low * 1.01)
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", OptimizeWarning)  # covariance, unused here
            # trf, not the default lm: lm's finite-difference step stalls on a parameter
            # that starts at exactly 0 (β3 = mean(x) of centred scores)
            params, _ = curve_fit(
                logistic4, x, y, p0=p0, bounds=bounds, maxfev=20_000, method="trf"
            )
    except (RuntimeError, ValueError, FloatingPointError) as err:
        return None, f"{type(err).__name__}: {err}"
    fitted = logistic4(x, *params)
    if not (np.isfinite(params).all() and np.isfinite(fitted).all()):
        return None, "non-finite parameters"
    if np.ptp(fitted) == 0:
        return None, "a flat curve"
    return params, None


def fit_to_reference(
    x: np.ndarray, y: np.ndarray, name: str = "teacher"
) -> Callable[[np.ndarray], np.ndarray] | None:
    """A map from a teacher's scores `x` onto the reference's `y` (same videos, in order).

    The 4-parameter logistic; where it cannot be fitted, a straight line (with a warning); where
    no line fits either (fewer than 2 shared videos, constant `x`), None with a warning, and the
    caller matches mean and spread instead. A returned map never gives NaN for finite input."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    params, reason = fit_logistic4(x, y)
    if params is not None:
        return lambda v: logistic4(np.asarray(v, float), *params)
    if len(x) >= 2 and x.std() > 0:
        slope, intercept = np.polyfit(x, y, 1)
        warnings.warn(f"{name}: logistic fit failed ({reason}); linear fit instead", stacklevel=3)
        return lambda v: intercept + slope * np.asarray(v, float)
    warnings.warn(
        f"{name}: logistic fit failed ({reason}); matching mean and spread instead", stacklevel=3
    )
    return None


def _logistic_unfit(x: np.ndarray, y: np.ndarray) -> str | None:
    if len(x) < MIN_LOGISTIC_POINTS:
        return f"{len(x)} videos shared with the reference, {MIN_LOGISTIC_POINTS} needed"
    if x.std() == 0 or y.std() == 0:
        return "constant scores on the shared videos"
    return None


def _to_common_scale(
    names: list[str], load: Callable[[str], _Scores], mapping: ScaleMapping, reference: str | None
) -> Iterator[tuple[str, _Scores]]:
    """Each teacher's scores on the common scale, one teacher at a time, in `names`' order."""
    if reference is not None and reference not in names:
        raise ValueError(
            f"reference teacher {reference!r} is not among the weighted teachers "
            f"({', '.join(names)})"
        )
    if mapping not in ("logistic", "zscore", "rank"):
        raise ValueError(f"unknown mapping {mapping!r}; use logistic, zscore or rank")
    reference = names[0] if reference is None else reference
    ref = load(reference) if mapping == "logistic" else None
    for name in names:
        s = ref if name == reference and ref is not None else load(name)
        if mapping == "zscore":
            yield name, _Scores(s.at, _zscore(name, s.y))
        elif mapping == "rank":  # ranks (ties averaged) to [0, 1]; a lone score sits in the middle
            rank = (rankdata(s.y) - 1) / (len(s.y) - 1) if len(s.y) > 1 else np.full(len(s.y), 0.5)
            yield name, _Scores(s.at, rank)
        elif name == reference:
            yield name, s
        else:
            yield name, _Scores(s.at, _onto_reference(name, s, reference, ref))


def _onto_reference(name: str, s: _Scores, reference: str, ref: _Scores) -> np.ndarray:
    """Teacher `name`'s scores mapped onto the reference's by a logistic fitted on shared videos."""
    shared = _fit_sample(np.intersect1d(s.at, ref.at, assume_unique=True))
    fn = fit_to_reference(s.on(shared), ref.on(shared), name)
    # without a map, the teacher's z-scores on the reference's mean and spread
    y = ref.y.mean() + ref.y.std() * _zscore(name, s.y) if fn is None else fn(s.y)
    if y[np.argmax(s.y)] < y[np.argmin(s.y)]:
        warnings.warn(
            f"{name}: maps onto {reference} in reverse order; do the two agree on which "
            "direction is better (higher_is_better)?",
            stacklevel=4,
        )
    return y


def _fit_sample(shared: np.ndarray) -> np.ndarray:
    """At most `LOGISTIC_FIT_VIDEOS` of the shared videos, evenly spread in id order: four
    parameters need no million points, and the fit's cost grows with them."""
    if len(shared) <= LOGISTIC_FIT_VIDEOS:
        return shared
    return shared[np.linspace(0, len(shared) - 1, LOGISTIC_FIT_VIDEOS).round().astype(np.int64)]


def _zscore(name: str, y: np.ndarray) -> np.ndarray:
    std = y.std()
    if not std > 0:
        warnings.warn(f"{name}: all scores are equal; z-scores are 0", stacklevel=4)
        return y * 0.0
    return (y - y.mean()) / std


def _check_weights(
    tables: Mapping[str, pd.DataFrame], weights: Mapping[str, float] | None
) -> dict[str, float]:
    if weights is None:
        return dict.fromkeys(tables, 1.0)
    unknown = set(weights) - set(tables)
    missing = [name for name in tables if name not in weights]
    if unknown or missing:
        raise ValueError(
            f"weights must name exactly the teachers with tables ({', '.join(tables)}); "
            f"unknown: {', '.join(sorted(unknown)) or '-'}, missing: {', '.join(missing) or '-'}"
        )
    bad = {k: w for k, w in weights.items() if not (np.isfinite(w) and w >= 0)}
    if bad:
        raise ValueError(f"weights must be finite and >= 0, got {bad}")
    if not any(w > 0 for w in weights.values()):
        raise ValueError("at least one teacher needs a weight > 0")
    return {name: float(weights[name]) for name in tables}


def _clean_ids(name: str, table: pd.DataFrame) -> pa.Array:
    """Teacher `name`'s video ids as an Arrow string array (its columns checked)."""
    if not {"video_id", "score"} <= set(table.columns):
        raise ValueError(
            f"score table of {name!r} needs columns video_id, score; has {', '.join(table.columns)}"
        )
    return arrow_strings(table.video_id)  # repeats are found with the others' ids


def arrow_strings(column: pd.Series) -> pa.Array:
    """A column of ids or paths as an Arrow large-string array (zero-copy for pandas' str)."""
    try:
        ids = pa.array(column, type=pa.large_string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings: ids as `str` would spell them
        ids = pa.array(column.astype(str), type=pa.large_string())
    ids = ids.cast(pa.large_string())  # pandas may hand over chunks of another string type
    if isinstance(ids, pa.ChunkedArray):  # one chunk (pandas' usual): that chunk, not a copy
        return ids.chunk(0) if ids.num_chunks == 1 else ids.combine_chunks()
    return ids


# --- pair drawing -----------------------------------------------------------------------------


def _quality_bins(mean: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-count quantile bins of `mean` (ties split by video order, so bins never empty)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    n = len(mean)
    position = np.empty(n, np.int64)
    position[np.argsort(mean, kind="stable")] = np.arange(n)
    return position * min(n_bins, max(n, 1)) // max(n, 1)


def _draw_enumerated(
    bins: np.ndarray, n_pairs: int, cap: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted draw without replacement over every unordered pair: exponential clocks
    (Exp(1)/w, smallest first) order the pairs as successive weighted draws would."""
    i, j = np.triu_indices(len(bins), k=1)
    cell = _bin_pair(bins[i], bins[j], int(bins.max(initial=0)) + 1)
    weight = 1.0 / np.bincount(cell)[cell]  # each bin pair gets the same total weight
    order = np.argsort(rng.standard_exponential(len(i)) / weight, kind="stable")
    return _take(i[order], j[order], n_pairs, cap, len(bins))


def _draw_rejecting(
    bins: np.ndarray, n_pairs: int, cap: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """For pools too big to enumerate: draw a bin pair, then a video from each, in batches;
    repeats, self-pairs and capped videos are skipped. Stops when batches stop adding pairs."""
    n, n_cells = len(bins), int(bins.max(initial=0)) + 1
    members = np.argsort(bins, kind="stable")
    size = np.bincount(bins, minlength=n_cells)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    a, b = np.triu_indices(n_cells)
    usable = np.where(a == b, size[a] >= 2, (size[a] > 0) & (size[b] > 0))
    a, b = a[usable], b[usable]
    taken = np.empty(0, np.int64)  # p * n + q of every pair drawn, sorted
    count = np.zeros(n, np.int64)
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    drawn, stale = 0, 0
    while drawn < n_pairs and stale < 5 and len(a):
        k = max(1024, 2 * (n_pairs - drawn))
        cell = rng.integers(len(a), size=k)
        i = members[start[a[cell]] + (rng.random(k) * size[a[cell]]).astype(np.int64)]
        j = members[start[b[cell]] + (rng.random(k) * size[b[cell]]).astype(np.int64)]
        p, q = np.minimum(i, j), np.maximum(i, j)
        keep = _new_pairs(p, q, n, taken)  # in draw order: what a loop over them would keep
        if cap:
            keep = _under_cap(p[keep], q[keep], count, cap, keep)
        keep = keep[: n_pairs - drawn]
        np.add.at(count, p[keep], 1)
        np.add.at(count, q[keep], 1)
        taken = np.union1d(taken, p[keep] * n + q[keep])
        out_i.append(p[keep])
        out_j.append(q[keep])
        drawn += len(keep)
        stale = stale + 1 if len(keep) == 0 else 0
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i), np.concatenate(out_j)


def _new_pairs(p: np.ndarray, q: np.ndarray, n: int, taken: np.ndarray) -> np.ndarray:
    """Indices, in order, of the candidates (p < q) that are no self-pair, not drawn before and
    not a repeat of an earlier candidate of this batch."""
    code = p * n + q
    ok = np.flatnonzero(p != q)
    _, first = np.unique(code[ok], return_index=True)
    ok = ok[np.sort(first)]
    if len(taken):
        ok = ok[~np.isin(code[ok], taken, assume_unique=True)]
    return ok


def _under_cap(
    p: np.ndarray, q: np.ndarray, count: np.ndarray, cap: int, index: np.ndarray
) -> np.ndarray:
    """The entries of `index` whose pair (p, q) keeps both videos within `cap` pairs, taken in
    order (a pair refused for one full video does not count for the other)."""
    counts = count.copy()
    keep = []
    for k, (x, y) in enumerate(zip(p.tolist(), q.tolist(), strict=True)):
        if counts[x] < cap and counts[y] < cap:
            counts[x] += 1
            counts[y] += 1
            keep.append(k)
    return index[np.asarray(keep, np.int64)]


def _take(
    i: np.ndarray, j: np.ndarray, n_pairs: int, cap: int | None, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first `n_pairs` of the ordered candidates whose videos are under the cap."""
    if cap is None:
        return i[:n_pairs], j[:n_pairs]
    count = [0] * n
    keep: list[int] = []
    for k, (p, q) in enumerate(zip(i.tolist(), j.tolist(), strict=True)):
        if count[p] < cap and count[q] < cap:
            count[p] += 1
            count[q] += 1
            keep.append(k)
            if len(keep) == n_pairs:
                break
    return i[keep], j[keep]


def _bin_pair(bin_i: np.ndarray, bin_j: np.ndarray, n_cells: int) -> np.ndarray:
    return np.minimum(bin_i, bin_j) * n_cells + np.maximum(bin_i, bin_j)
