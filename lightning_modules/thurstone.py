"""Thurstone Case V scores from a preference matrix by MAP, as the paper scores a test video.

`M[i, j]` is the probability that item i is preferred to item j (the diagonal is ignored). Under
Thurstone Case V, P(i over j) = Φ(q_i − q_j). The paper's MAP estimate with a standard normal prior:

    maximise  Σ_{i≠j} M_ij log Φ(q_i − q_j) − prior · Σ_i q_i² / 2   subject to  Σ_i q_i = 0

The objective is concave (log Φ is concave and the prior strictly so), so Newton's method on a
basis of the sum-to-zero subspace converges in a handful of steps to machine precision, and the
answer does not depend on a starting point or a learning rate.

The released code instead minimises with a logistic link (sigmoid in place of Φ, log clamped at
1e-6), no constraint, 50 Adam steps at lr 0.1 from a uniform random start: `method="released_code"`
reproduces it (seeded) so the two can be compared.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch

Method = Literal["paper", "released_code"]


def thurstone_map(
    preferences: torch.Tensor | np.ndarray,
    prior: float = 1.0,
    method: Method = "paper",
    tol: float = 1e-10,
    max_iter: int = 100,
    steps: int = 50,
    seed: int = 0,
) -> torch.Tensor:
    """Scores `(n,)` (float64 for "paper", float32 for "released_code") from preferences `(n, n)`.

    `prior`: weight of Σ q²/2 (the inverse variance of the Gaussian prior; 0 gives the maximum
    likelihood estimate, which diverges when one item wins every comparison). "paper": Newton to a
    gradient norm below `tol`. "released_code": `steps` Adam steps from a start drawn by `seed`."""
    m = torch.as_tensor(preferences)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(f"expected a square (n, n) preference matrix, n >= 2: {tuple(m.shape)}")
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    if method == "paper":
        return _newton(m.detach().double().cpu(), prior, tol, max_iter)
    if method == "released_code":
        return _released_adam(m.detach().float().cpu(), prior, steps, seed)
    raise ValueError(f"method must be 'paper' or 'released_code', got {method!r}")


def thurstone_objective(q: torch.Tensor, m: torch.Tensor, prior: float = 1.0) -> torch.Tensor:
    """The paper's log posterior Σ_{i≠j} M_ij log Φ(q_i − q_j) − prior · Σ q²/2."""
    d = q[:, None] - q[None, :]  # (n, n): d_ij = q_i − q_j
    m = m * (1 - torch.eye(len(q), dtype=m.dtype))
    return (m * torch.special.log_ndtr(d)).sum() - prior * q.square().sum() / 2


def _sum_to_zero_basis(n: int) -> torch.Tensor:
    """`(n, n-1)` orthonormal columns spanning {q : Σ q = 0} (Helmert contrasts)."""
    u = torch.zeros(n, n - 1, dtype=torch.float64)
    for k in range(1, n):
        u[:k, k - 1] = 1.0
        u[k, k - 1] = -k
        u[:, k - 1] /= math.sqrt(k * (k + 1))
    return u


def _grad_hess(q: torch.Tensor, m: torch.Tensor, prior: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient `(n,)` and Hessian `(n, n)` of `thurstone_objective` in q."""
    d = q[:, None] - q[None, :]
    log_pdf = -0.5 * d.square() - 0.5 * math.log(2 * math.pi)
    r = torch.exp(log_pdf - torch.special.log_ndtr(d))  # φ/Φ, stable far into the lower tail
    a = m * r  # d/dd log Φ(d) = φ/Φ
    b = m * (-r * (d + r))  # d²/dd² log Φ(d) = −(φ/Φ)(d + φ/Φ) <= 0
    grad = a.sum(1) - a.sum(0) - prior * q
    hess = torch.diag(b.sum(1) + b.sum(0)) - b - b.T - prior * torch.eye(len(q), dtype=q.dtype)
    return grad, hess


def _newton(m: torch.Tensor, prior: float, tol: float, max_iter: int) -> torch.Tensor:
    n = len(m)
    m = m * (1 - torch.eye(n, dtype=m.dtype))
    u = _sum_to_zero_basis(n)  # q = u @ z keeps Σ q = 0 exactly
    z = torch.zeros(n - 1, dtype=torch.float64)
    value = thurstone_objective(u @ z, m, prior)
    for _ in range(max_iter):
        grad, hess = _grad_hess(u @ z, m, prior)
        gz, hz = u.T @ grad, u.T @ hess @ u  # (n-1,), (n-1, n-1)
        if gz.abs().max() < tol:
            break
        step = -torch.linalg.solve(hz, gz)  # ascent direction: hz is negative definite
        t = 1.0
        while t > 1e-12:  # backtracking (Armijo) keeps each step an improvement
            new_value = thurstone_objective(u @ (z + t * step), m, prior)
            if new_value >= value + 1e-4 * t * float(gz @ step):
                break
            t /= 2
        z, value = z + t * step, new_value
    return u @ z


def _released_adam(m: torch.Tensor, prior: float, steps: int, seed: int) -> torch.Tensor:
    # The scoring job may run under inference_mode; this solver needs autograd.
    with torch.inference_mode(False), torch.enable_grad():
        m = m.clone()
        gen = torch.Generator().manual_seed(seed)
        q = torch.rand(len(m), generator=gen).requires_grad_()
        opt = torch.optim.Adam([q], lr=0.1)
        floor = torch.tensor(1e-6)
        for _ in range(steps):
            opt.zero_grad()
            win = torch.maximum(torch.sigmoid(q[:, None] - q[None, :]), floor)
            loss = -((m * win.log()).sum() - prior * q.square().sum() / 2)
            loss.backward()
            opt.step()
        return q.detach().clone()
