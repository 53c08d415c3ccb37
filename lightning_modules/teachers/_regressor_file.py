"""The fitted regressor's file: plain arrays in an `.npz` (scaler, target scale, support vectors
and dual coefficients or ridge weights) with a JSON metadata entry. Predictions are computed with
numpy from those arrays: model files may come from anyone, so nothing is unpickled, and every
array is checked (names, dtypes, shapes, finiteness) before it is used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from datamodules._io import atomic_write

FORMAT_VERSION = 1  # bump when the file layout or a feature's definition changes


class RegressorModel:
    """A fitted regression as arrays: standardise x, kernel or linear map, un-standardise y."""

    ARRAYS = {"svr": ("support_vectors", "dual_coef", "gamma"), "ridge": ("coef",)}
    COMMON = ("x_mean", "x_scale", "y_mean", "y_scale", "intercept")

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.meta, self.arrays = meta, arrays
        self.kind: str = meta["regressor"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores `(N,)` of features `(N, D)`, on the scale of the labels it was fitted on."""
        a = self.arrays
        z = (np.asarray(x, np.float64) - a["x_mean"]) / a["x_scale"]  # (N, D)
        if self.kind == "svr":
            sv = a["support_vectors"]  # (S, D)
            d2 = (z * z).sum(1)[:, None] - 2 * z @ sv.T + (sv * sv).sum(1)[None, :]  # (N, S)
            f = np.exp(-a["gamma"] * np.maximum(d2, 0)) @ a["dual_coef"]  # RBF kernel, (N,)
        else:
            f = z @ a["coef"]  # (N,)
        return (f + a["intercept"]) * a["y_scale"] + a["y_mean"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically as `.npz` (a file handle: numpy would append `.npz`)."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(self.meta)), **self.arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegressorModel:
        """Read and check a model file; any problem is an error naming the file and the fix."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such regressor teacher model; fit the teacher first "
                "(RegressorTeacher.fit) or set model= to an existing .npz"
            )
        refit = "fit the teacher again to write a new one"
        try:
            with np.load(path, allow_pickle=False) as npz:
                loaded = {k: npz[k] for k in npz.files}
            meta = json.loads(str(loaded.pop("meta")))
            version = meta.get("format")
        except Exception as err:  # zip, JSON and numpy errors all mean: not our file
            raise ValueError(
                f"{path}: not a regressor teacher model ({type(err).__name__}: {err}); {refit}"
            ) from err
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: regressor model format {version!r}, this code reads {FORMAT_VERSION}; "
                f"{refit}"
            )
        problem = _check_arrays(meta, loaded)
        if problem:
            raise ValueError(f"{path}: broken regressor teacher model ({problem}); {refit}")
        return cls(meta, {k: v.astype(np.float64) for k, v in loaded.items()})


def _check_arrays(meta: dict[str, Any], a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a loaded model's arrays, or None."""
    kind = meta.get("regressor")
    if kind not in RegressorModel.ARRAYS:
        return f"unknown regressor {kind!r}"
    missing = [k for k in (*RegressorModel.COMMON, *RegressorModel.ARRAYS[kind]) if k not in a]
    if missing:
        return f"missing arrays {missing}"
    d = meta.get("num_features")
    shapes = {"x_mean": (d,), "x_scale": (d,), "coef": (d,)}
    if kind == "svr":
        s = len(a["dual_coef"]) if a["dual_coef"].ndim == 1 else -1
        shapes |= {"support_vectors": (s, d), "dual_coef": (s,)}
    for k, v in a.items():
        if v.dtype.kind != "f":
            return f"{k} is {v.dtype}, not floating point"
        if v.shape != shapes.get(k, ()):
            return f"{k} has shape {v.shape}, expected {shapes.get(k, ())}"
        if not np.isfinite(v).all():
            return f"{k} holds NaN or infinite values"
    if (a["x_scale"] <= 0).any() or a["y_scale"] <= 0:
        return "a scale is not positive"
    return None
