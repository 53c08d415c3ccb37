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
"""

from __future__ import annotations

import numpy as np


def fit_pair_ridge(
    features: np.ndarray, first: np.ndarray, second: np.ndarray, delta: np.ndarray, alpha: float
) -> np.ndarray:
    """w `(F,)` minimising Σ (w·(φ_first − φ_second) − Δ)² + α‖w‖² (float64).

    `features` `(N, F)`; `first`, `second` `(pairs,)` row indices into it; `delta` `(pairs,)`."""
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
    # PᵀΔ and L = PᵀP, both per video, without the (pairs, N) matrix
    target = np.bincount(first, delta, n) - np.bincount(second, delta, n)
    laplacian = np.zeros((n, n))
    np.add.at(laplacian, (first, first), 1.0)
    np.add.at(laplacian, (second, second), 1.0)
    np.add.at(laplacian, (first, second), -1.0)
    np.add.at(laplacian, (second, first), -1.0)
    if n <= f:
        u = np.linalg.solve(laplacian @ (phi @ phi.T) + alpha * np.eye(n), target)
        return phi.T @ u
    gram = phi.T @ laplacian @ phi
    return np.linalg.solve(gram + alpha * np.eye(f), phi.T @ target)
