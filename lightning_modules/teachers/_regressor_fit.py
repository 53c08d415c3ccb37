"""Fitting the supervised weak teacher's regression (scikit-learn), kept as the arrays that
`_regressor_file.RegressorModel` predicts from."""

from __future__ import annotations

from typing import Any

import numpy as np

from lightning_modules.teachers._regressor_file import RegressorModel


def fit_regressor(
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    meta: dict[str, Any],
    svr_c: float = 3.0,
    svr_epsilon: float = 0.1,
    ridge_alpha: float | None = None,
    shared_scale: bool = False,
) -> RegressorModel:
    """Fit `kind` ("svr" or "ridge") with scikit-learn on features `(N, D)` and labels `(N,)`,
    both standardised, and keep only the arrays prediction needs.

    `shared_scale`: divide every feature by one scale (the mean of their stds) instead of each by
    its own. For the dimensions of one embedding: a channel that barely moved over a few dozen
    training videos (std 1e-4) would turn a new content's activation of 0.9 into z = 6000, which
    puts every new video outside the RBF kernel's reach (the SVR then predicts a constant)."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    scaler = StandardScaler().fit(x)  # a constant feature gets scale 1, as sklearn does
    if shared_scale:
        scaler.scale_ = np.full_like(scaler.scale_, max(float(x.std(0).mean()), 1e-12))
    z = scaler.transform(x)
    y_mean, y_scale = float(y.mean()), float(y.std())
    t = (y - y_mean) / y_scale  # standardised: C and epsilon mean the same on any MOS scale
    arrays = {"x_mean": scaler.mean_, "x_scale": scaler.scale_, "y_mean": np.array(y_mean),
              "y_scale": np.array(y_scale)}  # fmt: skip
    if kind == "svr":
        gamma = 1.0 / (z.shape[1] * max(float(z.var()), 1e-12))  # sklearn's "scale", as a number
        est = SVR(kernel="rbf", C=svr_c, epsilon=svr_epsilon, gamma=gamma).fit(z, t)
        arrays |= {"support_vectors": est.support_vectors_, "dual_coef": est.dual_coef_[0],
                   "gamma": np.array(gamma), "intercept": np.array(est.intercept_[0])}  # fmt: skip
    else:
        # None: one unit of penalty per feature, so that 11 handcrafted features and 2560 deep
        # ones are shrunk alike. (Leave-one-out picks alpha 0.01 on the deep ones: clips of one
        # content sit on both sides of it, so it rewards memorising the content.)
        alpha = float(ridge_alpha if ridge_alpha is not None else z.shape[1])
        est = Ridge(alpha=alpha).fit(z, t)
        arrays |= {"coef": est.coef_, "intercept": np.array(est.intercept_)}
        meta = {**meta, "ridge_alpha": alpha}
    arrays = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    return RegressorModel({**meta, "regressor": kind, "num_features": int(x.shape[1])}, arrays)
