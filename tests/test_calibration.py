"""Scores on a MOS scale: `w2svqa calibrate` stores a 4-parameter logistic in a real student file,
`w2svqa score` then writes `mos` = that logistic of the raw `score` (scale named) and a percentile
against reference scores; an uncalibrated student says so once; files written before calibrations
existed still load."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.torch import save_file
from scipy.stats import percentileofscore

from datamodules.ensemble import logistic4
from experiments.cli import main
from lightning_modules.calibration import (
    VMAF_SCALE,
    Calibration,
    CalibrationError,
    fit_calibration,
    label_scale,
    percentile,
)
from lightning_modules.checkpoints import SPEC_KEY, load_student, read_calibration, save_student
from lightning_modules.students.compact import CompactStudent
from tests.students import blur_ladder

TRUTH = (90.0, 10.0)  # β1, β2 of the labels made from raw scores: a 10-90 MOS scale


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, Path]:
    """18 real clips (3 sources x 6 blur levels), a broken file beside them, and a student file
    written as before calibrations existed: the weights and the spec, nothing else."""
    root = tmp_path_factory.mktemp("calibration")
    (root / "videos").mkdir()
    videos = blur_ladder(root / "videos", frames=4, height=48)
    (root / "videos" / "broken.mp4").write_bytes(b"\x00" * 100)
    student = CompactStudent(frames=2, size=64, hidden=16)  # packaged weights, untrained head
    state = {k: v.detach().contiguous().clone() for k, v in student.state_dict().items()}
    old = root / "old_student.safetensors"
    save_file(state, str(old), metadata={SPEC_KEY: json.dumps(student.spec())})
    return root, videos, old


@pytest.fixture(scope="module")
def raw(ladder) -> tuple[pd.DataFrame, str]:
    """`w2svqa score` of the folder with the old (uncalibrated) file: the table and its stderr."""
    root, _, old = ladder
    out = root / "raw.csv"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        main(["score", "--checkpoint", str(old), "--output", str(out), "--workers", "0",
              str(root / "videos")])  # fmt: skip
    return pd.read_csv(out), err.getvalue()


def test_an_old_student_file_loads_and_scores_raw_saying_so_once(ladder, raw) -> None:
    _, videos, old = ladder
    assert read_calibration(old) is None
    load_student(old)  # no calibration key: loads as before
    table, stderr = raw
    assert list(table.columns) == ["path", "score", "error"]
    assert len(table) == len(videos) + 1 and table.score.notna().sum() == len(videos)
    assert stderr.count("no calibration") == 1  # one line for the run, not one per video
    assert f"w2svqa calibrate {old} --labels TABLE" in stderr


def test_calibrate_then_score_writes_mos_and_percentile(ladder, raw, tmp_path, capsys) -> None:
    root, videos, old = ladder
    table, _ = raw
    scores = table.dropna(subset=["score"]).set_index("path").score
    x = videos.path.map(scores).to_numpy()
    assert np.ptp(x) > 0
    truth = (*TRUTH, float(np.median(x)), float(x.std() / 2))
    labels = videos.assign(mos=logistic4(x, *truth))[["video_id", "path", "mos"]]
    labels.to_parquet(tmp_path / "labels.parquet", index=False)
    calibrated = tmp_path / "calibrated.safetensors"
    main(["calibrate", str(old), "--labels", str(tmp_path / "labels.parquet"), "--scale",
          "test MOS 10-90", "--output", str(calibrated), "--workers", "0"])  # fmt: skip
    assert "onto test MOS 10-90" in capsys.readouterr().out
    assert read_calibration(old) is None  # --output: the source file is left as it was

    calibration = read_calibration(calibrated)
    assert calibration.scale == "test MOS 10-90" and calibration.videos == len(videos)
    assert calibration.fitted_on == "labels.parquet"
    # noise-free labels: the fit finds the curve they were made with
    assert calibration(x) == pytest.approx(labels.mos.to_numpy(), abs=0.05)

    reference = root / "raw.csv"  # the old file's scores of the same folder as the reference set
    out = tmp_path / "mos.csv"
    main(["score", "--checkpoint", str(calibrated), "--output", str(out), "--reference",
          str(reference), "--workers", "0", str(root / "videos")])  # fmt: skip
    stderr = capsys.readouterr().err
    assert "no calibration" not in stderr and stderr.count("onto test MOS 10-90") == 1
    got = pd.read_csv(out)
    assert list(got.columns) == ["path", "score", "mos", "scale", "percentile", "error"]
    same = got.merge(table, on="path", suffixes=("", "_old"))
    assert (same.score - same.score_old).abs().max() < 1e-5  # same weights, same raw scores
    ok = got.score.notna()
    assert got.mos[ok].to_numpy() == pytest.approx(
        logistic4(got.score[ok].to_numpy(), *calibration.params), abs=1e-9
    )
    assert (got.scale[ok] == "test MOS 10-90").all()
    ref = pd.read_csv(reference).score.dropna().to_numpy()
    expected = [percentileofscore(ref, s, kind="weak") for s in got.score[ok]]
    assert got.percentile[ok].to_numpy() == pytest.approx(expected)
    broken = got[~ok].iloc[0]
    assert broken.path.endswith("broken.mp4") and pd.isna(broken.mos) and pd.isna(broken.scale)
    assert pd.isna(broken.percentile) and isinstance(broken.error, str)

    # in place, with the default scale name of a VMAF-labelled table
    vmaf = labels.rename(columns={"mos": "vmaf"})
    vmaf.to_parquet(tmp_path / "vmaf.parquet", index=False)
    inplace = tmp_path / "inplace.safetensors"
    inplace.write_bytes(old.read_bytes())
    main(["calibrate", str(inplace), "--labels", str(tmp_path / "vmaf.parquet"),
          "--workers", "0"])  # fmt: skip
    assert read_calibration(inplace).scale == VMAF_SCALE
    assert read_calibration(inplace).params == pytest.approx(calibration.params)


def test_calibrate_refuses_labels_it_cannot_fit(ladder, tmp_path) -> None:
    _, videos, old = ladder
    flat = tmp_path / "flat.csv"
    videos.assign(mos=3.0)[["path", "mos"]].to_csv(flat, index=False)
    with pytest.raises(SystemExit, match="flat.csv: the 4-parameter logistic cannot be fitted"):
        main(["calibrate", str(old), "--labels", str(flat), "--workers", "0"])
    assert read_calibration(old) is None
    with pytest.raises(SystemExit, match="give --labels TABLE"):
        main(["calibrate", str(old)])


def test_score_names_a_bad_reference_file(ladder, tmp_path) -> None:
    root, _, old = ladder
    bad = tmp_path / "ref.csv"
    pd.DataFrame({"path": ["a"], "mos": [1.0]}).to_csv(bad, index=False)
    with pytest.raises(SystemExit, match="ref.csv: no score column"):
        main(["score", "--checkpoint", str(old), "--reference", str(bad), str(root / "videos")])


def test_a_calibration_round_trips_through_a_saved_student(tmp_path) -> None:
    x = np.linspace(-2, 0.6, 30)
    calibration = fit_calibration(x, logistic4(x, 5.0, 1.0, -0.7, 0.3), "MOS 1-5", "set.csv")
    assert calibration.params == pytest.approx((5.0, 1.0, -0.7, 0.3), rel=1e-3)
    assert calibration.rmse < 1e-6
    student = CompactStudent(frames=2, size=64, hidden=16)
    path = save_student(student, tmp_path / "s.safetensors", calibration=calibration)
    assert read_calibration(path) == calibration
    assert Calibration.from_json(calibration.to_json()) == calibration
    load_student(path)
    with pytest.raises(CalibrationError, match="not a calibration"):
        Calibration.from_json('{"params": [1, 2, 3], "scale": "x"}')


def test_percentile_and_scale_names(tmp_path) -> None:
    ref = np.array([1.0, 2.0, 2.0, 4.0])
    got = percentile([0.0, 2.0, 3.0, 4.0, np.nan], ref)
    assert got[:4].tolist() == [0.0, 75.0, 75.0, 100.0] and np.isnan(got[4])
    table = tmp_path / "konvid.csv"
    pd.DataFrame({"path": ["a", "b"], "mos": [1.2, 4.8]}).to_csv(table, index=False)
    assert label_scale(table, [1.2, 4.8]) == "mos as in konvid.csv (1.2 to 4.8)"


def test_a_calibration_is_never_a_step() -> None:
    """Labels in two clusters make the least-squares logistic a step (every video on one of two
    values); a calibration stays at least a tenth of the raw scores' spread wide."""
    from datamodules.ensemble import fit_logistic4
    from lightning_modules.calibration import CALIBRATION_MIN_WIDTH, fit_calibration

    rng = np.random.default_rng(0)
    raw = np.sort(rng.normal(size=40))
    labels = np.where(raw < 0.2, 38.0, 90.0) + rng.normal(0, 1, 40)
    free, _ = fit_logistic4(raw, labels)
    assert free is not None and abs(free[3]) < 0.01 * raw.std()  # the unconstrained fit: a step
    calibration = fit_calibration(raw, labels, "VMAF 0-100", "clusters")
    assert abs(calibration.params[3]) >= CALIBRATION_MIN_WIDTH * raw.std() * 0.999
    mos = calibration(raw)
    assert np.all(np.diff(mos) > 0)  # every raw score keeps its own place
