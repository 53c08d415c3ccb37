"""A linear scorer fitted in closed form to pairs: ridge regression on score differences.

Given per-video features Φ `(N, F)` and pairs (i, j) with a target difference Δ, find w that
minimises

    Σ_pairs (w·φ_i − w·φ_j − Δ_ij)² + α‖w‖²

— the squared pairwise rank loss (RankRLS) with an L2 penalty. With P the `(pairs, N)` incidence
matrix (+1 at i, −1 at j) and L = PᵀP (the pair graph's Laplacian), the solution is

    w = (ΦᵀLΦ + αI)⁻¹ ΦᵀPᵀΔ          (F x F: the "features" form)
      = Φᵀ (LΦΦᵀ + αI)⁻¹ PᵀΔ          (N x N: the "videos" form, by the push-through identity)

so its cost grows with the number of distinct videos or features, whichever is smaller, never with
the number of pairs: a million pairs among ten thousand videos is one 10k x 10k solve.
Why a closed form: the features are frozen and the loss is quadratic, so the exact minimiser is
one solve away, deterministic, and free of learning rates and step counts.

Some pairs say only which video is worse (a synthetic rendition at a higher level): fitted to a
difference, they would pull a pair that the scorer already orders by a wide gap back to the small
target. Marked `one_sided`, their Δ is a margin instead, the squared hinge of a ranking SVM
(Chapelle and Keerthi, "Efficient algorithms for ranking with SVMs", 2010): no cost once a pair is
ordered by |Δ| or more. The loss is then piecewise quadratic, and Newton's method on it is a short
sequence of the solves above, each on the pairs that fall short of their margin.
"""

from __future__ import annotations

import numpy as np


def fit_pair_ridge(
    features: np.ndarray, first: np.ndarray, second: np.ndarray, delta: np.ndarray, alpha: float,
    one_sided: np.ndarray | None = None, max_steps: int = 100,
) -> np.ndarray:  # fmt: skip
    """w `(F,)` minimising Σ (w·(φ_first − φ_second) − Δ)² + α‖w‖² (float64).

    `features` `(N, F)`; `first`, `second` `(pairs,)` row indices into it; `delta` `(pairs,)`.
    `one_sided` `(pairs,)` bool: those pairs' Δ is a margin, not a difference to match: such a
    pair costs max(0, |Δ| − sign(Δ)·w·(φ_first − φ_second))², nothing once it is ordered by |Δ|
    or more (the squared hinge of a ranking SVM); one with Δ = 0 says "equal" and stays squared.
    With one-sided pairs the fit is Newton's method on the squared hinge (each step one solve of
    the form above, on the pairs that fall short of their margin), to the exact minimiser."""
    phi = np.asarray(features, np.float64)
    first, second = np.asarray(first, np.int64), np.asarray(second, np.int64)
    delta = np.asarray(delta, np.float64)
    n, f = phi.shape
    if not len(first) == len(second) == len(delta):
        raise ValueError(f"{len(first)} first, {len(second)} second and {len(delta)} deltas")
    if len(delta) == 0:
        raise ValueError("no pairs to fit")
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    if not np.isfinite(delta).all():
        raise ValueError("every pair's delta must be finite")
    for name, rows in (("first", first), ("second", second)):
        if rows.min() < 0 or rows.max() >= n:
            raise ValueError(f"{name} indexes outside the {n} videos")
    margin = np.zeros(len(delta), bool) if one_sided is None else np.asarray(one_sided, bool)
    if margin.shape != delta.shape:
        raise ValueError(f"one_sided has {margin.size} entries for {len(delta)} pairs")
    margin = margin & (delta != 0)  # a new array: the caller's one_sided stays as it was
    fit = _RidgeForm(phi, first, second, alpha)
    coef = fit.solve(np.ones(len(delta), bool), delta)  # every pair as a difference to match
    if not margin.any():
        return fit.weight(coef)

    def costing(c: np.ndarray) -> np.ndarray:  # the pairs that cost something at coefficients c
        return ~margin | (np.sign(delta) * fit.differences(c) < np.abs(delta))

    cost, active = fit.objective(coef, delta, margin), costing(coef)
    for _ in range(max_steps):
        step = fit.solve(active, delta) - coef
        t = 1.0  # the full Newton step, halved while it does not lower the cost
        while (new := fit.objective(coef + t * step, delta, margin)) > cost and t > 1e-6:
            t /= 2
        if new > cost:
            break
        coef, cost, before = coef + t * step, new, active
        active = costing(coef)
        if t == 1.0 and np.array_equal(active, before):
            break  # the same pairs fall short: coef is the minimiser on them, so everywhere
    return fit.weight(coef)


class _RidgeForm:
    """The pair ridge's solve in the cheaper of its two forms: coefficients c with scores Φw = Kc
    and w = Φᵀc (N <= F, K = ΦΦᵀ), or w = c itself (N > F)."""

    def __init__(self, phi: np.ndarray, first: np.ndarray, second: np.ndarray, alpha: float):
        self.phi, self.first, self.second, self.alpha = phi, first, second, alpha
        self.n, f = phi.shape
        self.videos_form = self.n <= f
        self.gram = phi @ phi.T if self.videos_form else None

    def solve(self, used: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """The minimiser over the `used` pairs, each fitted to its Δ."""
        i, j, t, n = self.first[used], self.second[used], delta[used], self.n
        # PᵀΔ and L = PᵀP (the pair graph's Laplacian), both per video, without P itself
        target = np.bincount(i, t, n) - np.bincount(j, t, n)
        laplacian = np.zeros((n, n))
        np.add.at(laplacian, (i, i), 1.0)
        np.add.at(laplacian, (j, j), 1.0)
        np.add.at(laplacian, (i, j), -1.0)
        np.add.at(laplacian, (j, i), -1.0)
        if self.videos_form:
            return np.linalg.solve(laplacian @ self.gram + self.alpha * np.eye(n), target)
        gram = self.phi.T @ laplacian @ self.phi
        return np.linalg.solve(gram + self.alpha * np.eye(len(gram)), self.phi.T @ target)

    def scores(self, coef: np.ndarray) -> np.ndarray:
        return self.gram @ coef if self.videos_form else self.phi @ coef

    def differences(self, coef: np.ndarray) -> np.ndarray:
        s = self.scores(coef)
        return s[self.first] - s[self.second]

    def weight(self, coef: np.ndarray) -> np.ndarray:
        return self.phi.T @ coef if self.videos_form else coef

    def objective(self, coef: np.ndarray, delta: np.ndarray, margin: np.ndarray) -> float:
        d = self.differences(coef)
        miss = np.where(margin, np.maximum(np.abs(delta) - np.sign(delta) * d, 0.0), d - delta)
        norm = coef @ self.gram @ coef if self.videos_form else coef @ coef
        return float(miss @ miss + self.alpha * norm)
