"""Hard cases for the next round (paper: "Iterative weak-to-strong training"): the synthetic pairs
the current student orders wrongly, and real pairs chosen gMAD-style where a weak teacher and the
student disagree.

Decisions the paper leaves open:
- Bins are on rank-normalised scores in [0, 1] (rank among the videos both models scored), not on
  raw scores: `bin_width` then means the same for every teacher whatever its scale (0.05: twenty
  quality levels of equal count), and the student, whose scores have no published scale, is binned
  the same way.
- "Teacher sees them as equal, student far apart": within each teacher bin, the video the student
  rates lowest is paired with the one it rates highest, the second lowest with the second highest,
  and so on, so pairs come in order of student spread and no video is used twice in a bin. Only
  pairs the student puts in different bins of its own are kept (a real disagreement). The reverse
  swaps the roles: within a student bin, pairs the teacher rates furthest apart, in different
  teacher bins. The `n_pairs` largest spreads win over all bins; half (rounded up) go to the first
  kind, the rest to the reverse.
- Labels are the student's judgement, since it is the next round's teacher: Δ is the difference of
  the student's rank-normalised scores (first − second) and σ_Δ is `bin_width` for every pair, the
  same resolution at which the teacher is said to see videos as equal; the ensemble's five-level
  rule and soft label then apply unchanged. Far-apart pairs mostly come out superior / inferior,
  reverse pairs mostly similar.
- Synthetic pairs keep their own (ground-truth) labels; only `source` and `round` change. A tie
  in the student's scores counts as wrong; a pair labelled similar (2) makes no order claim and is
  never "wrong".
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from datamodules.ensemble import (
    PAIR_COLUMNS,
    align_ids,
    arrow_strings,
    five_level,
    take_strings,
    z_and_soft_label,
)


@dataclass(frozen=True)
class HardCaseConfig:
    """Which hard cases the next round gets, and how gMAD pairs are chosen."""

    bin_width: float = 0.05
    """Width of a quality bin on rank-normalised [0, 1] scores: videos in one teacher bin are
    "equal" to the teacher. 0.05 gives 20 equal-count levels, fine enough that a bin holds
    near-ties yet big enough (5% of the pool) to offer many pairs; also the student's σ_Δ."""
    n_gmad_pairs: int = 5_000
    """gMAD pairs per round, both kinds together (the paper's stage-2/3 synthetic groups: 5k)."""
    include_synthetic: bool = True
    """Also return the synthetic pairs the student orders wrongly."""
    seed: int = 0
    """Seed for tie-breaking and for which video of a gMAD pair comes first."""

    def __post_init__(self) -> None:
        if not 0 < self.bin_width <= 1:
            raise ValueError(f"bin_width must be in (0, 1], got {self.bin_width}")
        if self.n_gmad_pairs < 0:
            raise ValueError(f"n_gmad_pairs must be >= 0, got {self.n_gmad_pairs}")


def wrong_synthetic_pairs(pairs: pd.DataFrame, student: pd.DataFrame, round: int) -> pd.DataFrame:
    """The pairs of `pairs` (a pair table) whose order the student gets wrong, as a pair table
    with `source` "hard_synthetic" and `round` `round`.

    Wrong: student score first − second ≤ 0 for level 3/4, ≥ 0 for level 0/1. Pairs with a video
    the student did not score are left out, with a warning that counts them."""
    score = _score_series(student, "student")
    d1 = pairs.first_id.astype(str).map(score).astype(float)
    d2 = pairs.second_id.astype(str).map(score).astype(float)
    missing = (d1.isna() | d2.isna()).to_numpy()
    if missing.any():
        warnings.warn(
            f"{missing.sum()} of {len(pairs)} synthetic pairs have a video the student did not "
            "score; left out",
            stacklevel=2,
        )
    diff = (d1 - d2).to_numpy(float)
    level = pairs.level.to_numpy()
    wrong = ~missing & (((level >= 3) & ~(diff > 0)) | ((level <= 1) & ~(diff < 0)))
    out = pairs.loc[wrong, list(PAIR_COLUMNS)].reset_index(drop=True)
    out["source"] = "hard_synthetic"
    out["round"] = np.int64(round)
    return out


def gmad_pairs(
    teacher: pd.DataFrame,
    student: pd.DataFrame,
    videos: pd.DataFrame,
    bin_width: float,
    n_pairs: int,
    round: int,
    seed: int,
) -> pd.DataFrame:
    """`n_pairs` gMAD pairs (source "hard_gmad") labelled by the student: teacher-equal pairs the
    student rates furthest apart, then student-equal pairs the teacher rates furthest apart.

    Uses videos with finite scores from both models and a path in `videos` (`video_id`, `path`);
    others are left out with a warning. Seeded; no self-pairs or repeated unordered pairs; fewer
    pairs than asked, with a warning, where the videos do not disagree enough."""
    if not 0 < bin_width <= 1:
        raise ValueError(f"bin_width must be in (0, 1], got {bin_width}")
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    # Ids aligned as the ensemble aligns them (Arrow, sorted once): pools of millions stay fast.
    (t_ids, t_score), (s_ids, s_score) = _scores(teacher, "teacher"), _scores(student, "student")
    universe, at = align_ids({"teacher": t_ids, "student": s_ids})
    t_all, s_all = _on(universe, at["teacher"], t_score), _on(universe, at["student"], s_score)
    pool_ids = arrow_strings(videos.video_id)
    row = pc.index_in(universe, value_set=pool_ids).fill_null(-1).to_numpy().astype(np.int64)
    scored = np.isfinite(t_all) & np.isfinite(s_all)
    both = np.flatnonzero(scored & (row >= 0))  # ascending: in video-id order
    left_out = int((np.isfinite(t_all) | np.isfinite(s_all)).sum()) - len(both)
    if left_out:
        warnings.warn(
            f"{left_out} videos lack a teacher score, a student score or a path; left out",
            stacklevel=2,
        )
    rng = np.random.default_rng(seed)
    # A random order that breaks score ties, fixed by the seed: the same inputs, the same pairs.
    tiebreak = rng.permutation(len(both))
    t_rank, s_rank = _rank01(t_all[both], tiebreak), _rank01(s_all[both], tiebreak)
    t_bin, s_bin = _bins(t_rank, bin_width), _bins(s_rank, bin_width)
    n_first = (n_pairs + 1) // 2
    i1, j1 = _spread_pairs(t_bin, s_rank, s_bin, n_first)  # (i lower, j higher) by the student
    i2, j2 = _spread_pairs(s_bin, t_rank, t_bin, n_pairs - n_first)
    i, j = np.concatenate([i1, i2]), np.concatenate([j1, j2])
    if len(i) < n_pairs:
        warnings.warn(f"asked for {n_pairs} gMAD pairs, found {len(i)}", stacklevel=2)
    swap = rng.random(len(i)) < 0.5  # which video comes first: no positional cue to learn
    first, second = np.where(swap, j, i), np.where(swap, i, j)
    delta = s_rank[first] - s_rank[second]
    sigma = np.full(len(delta), float(bin_width))
    z, soft = z_and_soft_label(delta, sigma)
    paths = arrow_strings(videos.path)
    return pd.DataFrame(
        {
            "first_id": take_strings(universe, both[first]),
            "second_id": take_strings(universe, both[second]),
            "first_path": take_strings(paths, row[both[first]]),
            "second_path": take_strings(paths, row[both[second]]),
            "level": five_level(delta, sigma),
            "source": "hard_gmad",
            "round": np.int64(round),
            "delta": delta,
            "sigma_delta": sigma,
            "z": z,
            "soft_label": soft,
        },
        columns=list(PAIR_COLUMNS),
    )


def build_hard_cases(
    config: HardCaseConfig,
    teacher: pd.DataFrame,
    student: pd.DataFrame,
    videos: pd.DataFrame,
    synthetic: pd.DataFrame | None,
    round: int,
) -> pd.DataFrame:
    """One round's hard cases: the gMAD pairs, then (if configured) the wrong synthetic pairs."""
    # gMAD pairs come from `videos`; the student's other scores (renditions) serve the synthetic
    in_pool = student[student.video_id.astype(str).isin(videos.video_id.astype(str))]
    parts = [
        gmad_pairs(
            teacher, in_pool, videos, config.bin_width, config.n_gmad_pairs, round, config.seed
        )
    ]
    if config.include_synthetic and synthetic is not None:
        parts.append(wrong_synthetic_pairs(synthetic, student, round))
    return pd.concat(parts, ignore_index=True)[list(PAIR_COLUMNS)]


def _scores(table: pd.DataFrame, name: str) -> tuple[pa.Array, np.ndarray]:
    """(video ids, scores; NaN where not finite) of the rows that scored."""
    table = _scored_rows(table, name)
    return arrow_strings(table.video_id), pd.to_numeric(table.score, errors="coerce").to_numpy(
        float
    )


def _score_series(table: pd.DataFrame, name: str) -> pd.Series:
    """Finite scores by video id, of the rows that scored."""
    table = _scored_rows(table, name)
    ids = table.video_id.astype(str)
    if ids.duplicated().any():
        raise ValueError(f"{name} score table lists {ids[ids.duplicated()].iloc[0]} twice")
    score = pd.Series(pd.to_numeric(table.score, errors="coerce").to_numpy(float), index=ids)
    return score[np.isfinite(score.to_numpy())]


def _scored_rows(table: pd.DataFrame, name: str) -> pd.DataFrame:
    """The table's rows, without those whose `status` is not "ok"; its columns checked."""
    if not {"video_id", "score"} <= set(table.columns):
        raise ValueError(f"{name} score table needs columns video_id, score")
    return table[table.status.eq("ok")] if "status" in table.columns else table


def _on(universe: pa.Array, at: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Scores laid out on the sorted ids (NaN for a video without one)."""
    out = np.full(len(universe), np.nan)
    out[at] = np.where(np.isfinite(score), score, np.nan)
    return out


def _rank01(x: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1], ties broken by `tiebreak`; a lone video sits at 0.5."""
    n = len(x)
    rank = np.empty(n, float)
    rank[np.lexsort((tiebreak, x))] = np.arange(n)
    return rank / (n - 1) if n > 1 else rank + 0.5


def _bins(rank: np.ndarray, width: float) -> np.ndarray:
    # The top rank (1.0) joins the last full bin rather than opening a bin of its own.
    return np.minimum(np.floor(rank / width), np.ceil(1 / width) - 1).astype(np.int64)


def _spread_pairs(
    group: np.ndarray, value: np.ndarray, value_bin: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Up to `n` pairs (lower, higher `value`) within a `group`, largest spread first: in each
    group lowest with highest, second lowest with second highest, ...; only pairs whose
    `value_bin`s differ. `value` holds distinct ranks, so the order is total."""
    lo_all: list[np.ndarray] = []
    hi_all: list[np.ndarray] = []
    for g in np.unique(group):
        members = np.flatnonzero(group == g)
        members = members[np.argsort(value[members])]
        half = len(members) // 2
        lo, hi = members[:half], members[::-1][:half]
        keep = value_bin[lo] != value_bin[hi]
        lo_all.append(lo[keep])
        hi_all.append(hi[keep])
    lo = np.concatenate(lo_all) if lo_all else np.zeros(0, np.int64)
    hi = np.concatenate(hi_all) if hi_all else np.zeros(0, np.int64)
    order = np.argsort(-(value[hi] - value[lo]), kind="stable")[:n]
    return lo[order], hi[order]
