"""Raw scores onto a MOS scale: a 4-parameter logistic fitted on a labelled set, kept in a student.

A student's raw output has no unit (the quickstart's runs from about -2 to 0.6 on real clips);
users want a MOS. The field's map is the 4-parameter logistic (reference/datasets.md), the same
fit as the evaluation's `plcc_fitted` (`datamodules.ensemble.fit_logistic4`). It is monotone, so
rankings (SRCC) do not change. A calibration names its scale ("VMAF 0-100", "KoNViD-1k MOS 1-5")
and the set it was fitted on, and travels in the student file's metadata (`checkpoints`), so
`w2svqa score` writes `score` (raw) and `mos`. No line or other fallback where the logistic fails:
a MOS from a map the field does not use would not compare with anyone's.

A percentile against a reference set of raw scores (`--reference`) needs no calibration.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from datamodules.ensemble import fit_logistic4, logistic4
from datamodules.errors import UserError

VMAF_SCALE = "VMAF 0-100"


class CalibrationError(UserError, ValueError):
    """A calibration that cannot be fitted or read, with the reason."""


@dataclass(frozen=True)
class Calibration:
    """β1..β4 of `logistic4` from raw scores onto `scale`, and what they were fitted on."""

    params: tuple[float, float, float, float]
    scale: str
    """The scale the MOS is on, e.g. "VMAF 0-100" or "KoNViD-1k MOS 1-5"."""
    fitted_on: str
    """The labelled set the logistic was fitted on (its file name)."""
    videos: int
    """Videos with both a raw score and a label in that set."""
    rmse: float
    """RMSE of the calibrated scores against the labels on that set (in `scale` units)."""

    def __call__(self, raw: Any) -> np.ndarray:
        return logistic4(np.asarray(raw, dtype=float), *self.params)

    def describe(self) -> str:
        return (f"mos = a 4-parameter logistic of the raw score onto {self.scale}, fitted on "
                f"{self.videos} videos of {self.fitted_on} (RMSE {self.rmse:.3g})")  # fmt: skip

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Calibration:
        try:
            value = json.loads(text)
            params = tuple(float(p) for p in value["params"])
            if len(params) != 4 or not np.isfinite(params).all():
                raise ValueError(f"params {value['params']!r} are not 4 finite numbers")
            return cls(params, str(value["scale"]), str(value["fitted_on"]),
                       int(value["videos"]), float(value["rmse"]))  # fmt: skip
        except (KeyError, TypeError, ValueError) as err:
            raise CalibrationError(f"not a calibration ({type(err).__name__}: {err})") from err


CALIBRATION_MIN_WIDTH = 0.1  # the least |β4| of a calibration, in raw-score standard deviations


def fit_calibration(raw: Any, mos: Any, scale: str, fitted_on: str) -> Calibration:
    """The logistic from `raw` scores onto labels `mos` (same videos, in order; NaN pairs are
    left out); CalibrationError where it cannot be fitted."""
    x, y = np.asarray(raw, dtype=float), np.asarray(mos, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    # at least a tenth of the raw scores' spread wide: a calibration that maps every video onto
    # one of two values (the unconstrained least squares on 40 videos) ranks nothing
    params, reason = fit_logistic4(x, y, min_width=CALIBRATION_MIN_WIDTH)
    if params is None:
        raise CalibrationError(f"{fitted_on}: the 4-parameter logistic cannot be fitted ({reason})")
    rmse = float(np.sqrt(np.mean((logistic4(x, *params) - y) ** 2)))
    return Calibration(tuple(float(p) for p in params), scale, fitted_on, len(x), rmse)


def label_scale(table: str | os.PathLike, mos: Any) -> str:
    """A name for the scale of a labelled table's labels: VMAF's own for a `vmaf` column, else the
    column, the file and the range its labels span (give a better name where you know one)."""
    from datamodules.video_table import LABEL_COLUMNS

    table = Path(table)
    columns: list[str] = ["mos"]  # a DOVER labels.txt
    if table.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        columns = pq.read_schema(table).names
    elif table.suffix.lower() == ".csv":
        columns = list(pd.read_csv(table, nrows=0).columns)
    column = next((c for c in LABEL_COLUMNS if c in columns), "mos")
    if column == "vmaf":
        return VMAF_SCALE
    low, high = np.nanmin(mos) + 0.0, np.nanmax(mos) + 0.0  # + 0.0: no "-0"
    return f"{column} as in {table.name} ({low:.3g} to {high:.3g})"


def percentile(raw: Any, reference: np.ndarray) -> np.ndarray:
    """Percent of the `reference` scores at or below each raw score (0-100; NaN stays NaN)."""
    ref = np.sort(np.asarray(reference, dtype=float))
    x = np.asarray(raw, dtype=float)
    out = np.searchsorted(ref, x, side="right") * (100.0 / len(ref))
    return np.where(np.isfinite(x), out, np.nan)


def read_reference(path: str | os.PathLike) -> np.ndarray:
    """The finite raw scores of a reference set: a `w2svqa score` CSV, a score table (its `ok`
    rows) or any .csv/.parquet with a `score` column."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"{path}: no such reference score file")
    try:
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except Exception as err:  # pandas and pyarrow raise several types for an unreadable file
        raise CalibrationError(f"{path}: cannot read as .csv or .parquet ({err})") from err
    if "score" not in table.columns:
        raise CalibrationError(
            f"{path}: no score column (columns: {', '.join(map(str, table.columns))})"
        )
    if "status" in table.columns:
        table = table[table.status == "ok"]
    scores = pd.to_numeric(table.score, errors="coerce").to_numpy(dtype=float)
    scores = scores[np.isfinite(scores)]
    if len(scores) == 0:
        raise CalibrationError(f"{path}: no finite scores to compare with")
    return scores


def score_columns(
    rows: pd.DataFrame, calibration: Calibration | None, reference: np.ndarray | None
) -> pd.DataFrame:
    """`w2svqa score`'s table: `path, score` then `mos, scale` (with a calibration) and
    `percentile` (with a reference), then `error`."""
    out = rows[["path", "score"]].copy()
    if calibration is not None:
        out["mos"] = calibration(out.score)
        out["scale"] = np.where(out.score.notna(), calibration.scale, None)
    if reference is not None:
        out["percentile"] = percentile(out.score, reference)
    out["error"] = rows["error"].to_numpy()
    return out


def calibrate_student(
    student: str | os.PathLike,
    labelled: pd.DataFrame,
    scale: str,
    fitted_on: str,
    out: str | os.PathLike | None = None,
    batch_size: int = 8,
    workers: int = 2,
    anchors: list[str] | None = None,
    trainer: dict[str, Any] | None = None,
) -> tuple[Path, Calibration]:
    """Score `labelled` (`video_id, path, mos`) with the student at `student`, fit the logistic,
    and write the student with that calibration to `out` (default: in place); returns both."""
    import tempfile

    from lightning_modules.checkpoints import write_calibration
    from lightning_modules.scoring import label_videos, read_scores
    from lightning_modules.teachers.student import StudentTeacher

    teacher = StudentTeacher(student, anchors=anchors)
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "scores.parquet"
        what = f"calibrate {teacher.name} on {fitted_on}: {len(labelled)} videos"
        label_videos(teacher, labelled, table, batch_size, workers, trainer=trainer,
                     description=what)  # fmt: skip
        scores = read_scores(table)
    ok = scores[scores.status == "ok"].set_index("video_id").score
    raw = labelled.video_id.astype(str).map(ok)
    calibration = fit_calibration(raw, labelled.mos, scale, fitted_on)
    return write_calibration(student, calibration, out), calibration
