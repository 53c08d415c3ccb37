"""Pool curation: choose n videos of a pool whose histograms of simple statistics match a target
set's (the paper's §3.2: 200k of 3M web videos, matched to LSVQ on nine statistics).

Each statistic is cut into `bins` bins at the target's quantiles, so every target bin holds about
the same share; a selection of n should hold n times the target's share in each bin of each
statistic. `select` finds one by an integer program (binary x per video, sum x = n, the absolute
misses of every bin's count minimised; scipy's HiGHS `milp`) or, for pools too big for it,
greedily (add the videos that shrink the squared misses most, a small batch at a time).
`distances` says how far a selection is from the target: the total-variation distance of each
statistic's histogram (0: the same shares, 1: disjoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Method = Literal["auto", "milp", "greedy"]
MILP_MAX_VIDEOS = 20_000  # above this `auto` goes greedy: the program's size grows with the pool


@dataclass(frozen=True)
class Bins:
    """Inner bin edges per statistic, from the target's quantiles."""

    edges: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, target: np.ndarray, bins: int) -> Bins:
        """`bins` bins per column of `target` `(M, S)` at its quantiles (fewer where values tie)."""
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        qs = np.arange(1, bins) / bins
        return cls(tuple(np.unique(np.quantile(column, qs)) for column in target.T))

    def index(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin `(N, S)`; values outside the target's range go to the end bins."""
        columns = zip(self.edges, values.T, strict=True)
        return np.stack([np.searchsorted(e, v, side="right") for e, v in columns], axis=1)

    def shares(self, values: np.ndarray) -> list[np.ndarray]:
        """Per statistic, the share of `values`' rows in each bin."""
        index = self.index(values)
        return [np.bincount(index[:, s], minlength=len(e) + 1) / max(len(values), 1)
                for s, e in enumerate(self.edges)]  # fmt: skip


def select(
    pool: np.ndarray,
    target: np.ndarray,
    n: int,
    bins: int = 10,
    method: Method = "auto",
    seed: int = 0,
    time_limit: float = 30.0,
) -> tuple[np.ndarray, str]:
    """Rows of `pool` `(N, S)` (sorted) whose statistics' histograms best match `target`'s
    `(M, S)`, and the method that chose them ("milp", or "greedy" also where the program found
    no solution in `time_limit` seconds)."""
    if pool.ndim != 2 or target.ndim != 2 or pool.shape[1] != target.shape[1]:
        raise ValueError(f"pool {pool.shape} and target {target.shape}: need (N, S) and (M, S)")
    if not 0 < n <= len(pool):
        raise ValueError(f"cannot choose {n} videos from a pool of {len(pool)}")
    grid = Bins.of(target, bins)
    index, wanted = _bin_columns(grid, pool), _wanted(grid, target, n)
    if method == "milp" or (method == "auto" and len(pool) <= MILP_MAX_VIDEOS):
        chosen = _milp(index, wanted, n, time_limit)
        if chosen is not None:
            return chosen, "milp"
    return _greedy(index, wanted, n, seed), "greedy"


def distances(values: np.ndarray, target: np.ndarray, bins: int = 10) -> np.ndarray:
    """Per statistic, the total-variation distance between the histograms of `values` and of
    `target` on the target's quantile bins `(S,)`."""
    grid = Bins.of(target, bins)
    pairs = zip(grid.shares(values), grid.shares(target), strict=True)
    return np.array([0.5 * np.abs(p - q).sum() for p, q in pairs])


def random_sample(n_pool: int, n: int, seed: int = 0) -> np.ndarray:
    """The baseline: n rows drawn uniformly without replacement (sorted)."""
    return np.sort(np.random.default_rng(seed).choice(n_pool, size=n, replace=False))


def _bin_columns(grid: Bins, pool: np.ndarray) -> np.ndarray:
    """Each video's bin as one index into all statistics' bins laid end to end `(N, S)`."""
    offsets = np.cumsum([0] + [len(e) + 1 for e in grid.edges[:-1]])
    return grid.index(pool) + offsets


def _wanted(grid: Bins, target: np.ndarray, n: int) -> np.ndarray:
    """How many of n chosen videos each bin (all statistics, end to end) should hold."""
    return n * np.concatenate(grid.shares(target))


def _milp(index: np.ndarray, wanted: np.ndarray, n: int, time_limit: float) -> np.ndarray | None:
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import csr_array, hstack, identity, vstack

    videos, stats = index.shape
    k = len(wanted)
    # rows: one per bin, sum of its chosen videos - over + under = wanted; one for sum x = n
    member = csr_array((np.ones(videos * stats), (index.ravel(), np.repeat(np.arange(videos),
                       stats))), shape=(k, videos))  # fmt: skip
    eye = identity(k, format="csr")
    rows = vstack([hstack([member, -eye, eye]),
                   hstack([csr_array(np.ones((1, videos))), csr_array((1, 2 * k))])])  # fmt: skip
    bounds = np.concatenate([wanted, [n]])
    result = milp(
        c=np.concatenate([np.zeros(videos), np.ones(2 * k)]),
        constraints=LinearConstraint(rows, bounds, bounds),
        integrality=np.concatenate([np.ones(videos), np.zeros(2 * k)]),
        bounds=Bounds(0, np.concatenate([np.ones(videos), np.full(2 * k, np.inf)])),
        options={"time_limit": time_limit, "disp": False},
    )
    if result.x is None:
        return None
    chosen = np.flatnonzero(result.x[:videos] > 0.5)
    return chosen if len(chosen) == n else None


def _greedy(index: np.ndarray, wanted: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Add, a batch at a time, the videos whose bins are furthest below what they should hold.
    A video's gain is how much adding it shrinks the summed squared misses (count - wanted)^2
    (the absolute misses tie too often to choose well); ties are broken in a seeded random order.
    Batches of about n/200 keep it to 200 passes over the pool."""
    videos = len(index)
    # the keys below are int64: |gain| <= statistics * 2048 * (n + 1), times the pool's size
    if index.shape[1] * 2048 * (n + 1) * videos >= 2**63:  # about 20 million videos of nine
        raise ValueError(f"a pool of {videos} videos is too many to curate at once: split it "
                         "and give each part its share of n")  # fmt: skip
    order = np.random.default_rng(seed).permutation(videos)
    index = index[order].astype(np.int32)
    # in 1/1024ths, as integers: every sum is exact, so no CPU's rounding can reorder a tie
    wanted = np.round(wanted * 1024).astype(np.int64)
    counts = np.zeros(len(wanted), dtype=np.int64)
    free = np.ones(videos, dtype=bool)
    chosen: list[np.ndarray] = []
    left = n
    batch = max(1, n // 200)
    taken = np.iinfo(np.int64).max
    position = np.arange(videos, dtype=np.int64)
    while left:
        step = 2 * (1024 * counts - wanted) + 1024  # (K,): the change of (count - wanted)^2
        # gain, then the seeded order, as one distinct key a video: whichever selection algorithm
        # this CPU's numpy uses, the `size` smallest keys are the same videos
        key = step[index].sum(axis=1) * videos + position
        key[~free] = taken
        size = min(batch, left)
        take = np.sort(np.argpartition(key, size - 1)[:size]) if size < videos else position
        free[take] = False
        np.add.at(counts, index[take].ravel(), 1)
        chosen.append(take)
        left -= len(take)
    return np.sort(order[np.concatenate(chosen)])


def histogram_figure(
    columns: Sequence[str],
    target: np.ndarray,
    samples: dict[str, np.ndarray],
    bins: int = 10,
):
    """One panel per statistic: the target's share in each of its quantile bins against each
    sample's (`{"random": values, "curated": values}`), with each sample's distance in the legend.
    Returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = Bins.of(target, bins)
    cols = 3
    rows = -(-len(columns) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    target_shares = grid.shares(target)
    sample_shares = {name: grid.shares(v) for name, v in samples.items()}
    for s, (ax, name) in enumerate(zip(axes.ravel(), columns, strict=False)):
        x = np.arange(len(target_shares[s]))
        ax.bar(x, target_shares[s], color="0.8", label="target")
        for label, shares in sample_shares.items():
            tv = 0.5 * np.abs(shares[s] - target_shares[s]).sum()
            ax.step(x, shares[s], where="mid", label=f"{label} (TV {tv:.3f})")
        ax.set_title(name)
        ax.set_xlabel("target quantile bin")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(columns) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig
