"""The compact student's ridge head: the closed-form pair fit is the ridge it claims to be, the head
learns the order of real blurred footage in one solve, ensemble pairs are fitted to their Δ and
other pairs to their level, a broken video loses only its pairs, and student files of the MLP head
(saved before the ridge head existed) still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from sklearn.linear_model import Ridge

from experiments.train import fit_file, fit_readout_on_pairs, replay_fit, train_student
from lightning_modules.checkpoints import SPEC_KEY, load_student, save_student
from lightning_modules.losses import OrderedProbit
from lightning_modules.pair_ridge import fit_pair_ridge
from lightning_modules.students.compact import CompactStudent
from tests.students import blur_ladder, ladder_pairs

RIDGE = {"representation": "stage_stats", "frames": 2, "head": "ridge", "alpha": 10.0}


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("ladder")
    videos = blur_ladder(folder, frames=2)
    return videos, ladder_pairs(videos, folder / "pairs.parquet")


@pytest.mark.parametrize("n_videos", [12, 60])  # fewer videos than features, and more
def test_the_pair_fit_is_ridge_on_the_difference_rows(n_videos: int) -> None:
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(n_videos, 20))
    first, second = rng.integers(0, n_videos, 80), rng.integers(0, n_videos, 80)
    delta = rng.normal(size=80)
    w = fit_pair_ridge(phi, first, second, delta, alpha=3.0)
    reference = Ridge(alpha=3.0, fit_intercept=False).fit(phi[first] - phi[second], delta)
    np.testing.assert_allclose(w, reference.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("n_videos", [12, 60])
def test_one_sided_pairs_fit_the_squared_hinge_exactly(n_videos: int) -> None:
    from scipy.optimize import minimize

    rng = np.random.default_rng(1)
    phi = rng.normal(size=(n_videos, 20))
    first, second = rng.integers(0, n_videos, 120), rng.integers(0, n_videos, 120)
    score = phi @ rng.normal(size=20)
    delta = score[first] - score[second] + rng.normal(size=120)
    one_sided = rng.random(120) < 0.5
    delta[one_sided] *= 0.1  # small margins: pairs ordered by more than them cost nothing
    rows, sign = phi[first] - phi[second], np.sign(delta)

    def cost_and_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
        d = rows @ w
        miss = np.where(one_sided, np.maximum(np.abs(delta) - sign * d, 0.0), d - delta)
        grad = rows.T @ (2 * miss * np.where(one_sided, -sign, 1.0)) + 2 * 0.3 * w
        return float(miss @ miss + 0.3 * w @ w), grad

    w = fit_pair_ridge(phi, first, second, delta, alpha=0.3, one_sided=one_sided)
    reference = minimize(cost_and_gradient, np.zeros(20), jac=True, method="L-BFGS-B",
                         options={"gtol": 1e-12, "maxiter": 10_000})  # fmt: skip
    assert cost_and_gradient(w)[0] <= reference.fun + 1e-9
    np.testing.assert_allclose(w, reference.x, atol=2e-4)
    squared = fit_pair_ridge(phi, first, second, delta, alpha=0.3)
    assert np.abs(w - squared).max() > 0.01 * np.abs(w).max()  # the margins changed the fit


def test_the_pair_fit_refuses_what_it_cannot_solve() -> None:
    phi = np.ones((3, 2))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        fit_pair_ridge(phi, [0], [1], [1.0], alpha=0)
    with pytest.raises(ValueError, match="outside the 3 videos"):
        fit_pair_ridge(phi, [0], [3], [1.0], alpha=1)
    with pytest.raises(ValueError, match="finite"):
        fit_pair_ridge(phi, [0], [1], [np.nan], alpha=1)
    with pytest.raises(ValueError, match="no pairs"):
        fit_pair_ridge(phi, [], [], [], alpha=1)
    with pytest.raises(ValueError, match="one_sided has 2 entries for 1 pairs"):
        fit_pair_ridge(phi, [0], [1], [1.0], alpha=1, one_sided=[True, False])


def test_the_ridge_head_learns_the_blur_order_in_one_solve(ladder, tmp_path: Path) -> None:
    videos, pairs = ladder
    student = CompactStudent(**RIDGE, feature_cache=str(tmp_path / "features"))
    assert student.fits_in_closed_form and student.parameter_groups() == {}
    out = tmp_path / "student.safetensors"
    result = train_student(student, OrderedProbit(), [pairs], out, val_sets={"ladder": videos},
                           workers=0)  # fmt: skip
    assert result.steps == 0 and result.fit["pairs"] == len(pd.read_parquet(pairs))
    assert result.fit["videos"] == len(videos) and result.fit["pair_accuracy"] > 0.9
    assert not abs(result.before["ladder/srcc"]) > 1e-6  # unfitted: every score 0 (SRCC 0 or NaN)
    assert result.after["ladder/srcc"] > 0.9
    sent: list[tuple[dict[str, float], int]] = []  # what a run that skips the round logs
    assert replay_fit(fit_file(out), lambda m, step: sent.append((m, step)), 7)
    assert sent == [({f"train/{k}": v for k, v in result.fit.items()}, 7)]
    loaded = load_student(out)
    assert loaded.spec() == student.spec() and loaded.spec()["args"]["head"] == "ridge"
    x = torch.stack([student.cached_input(p) for p in videos.path[:5]])
    with torch.no_grad():
        assert torch.allclose(loaded(x), student.eval()(x), atol=1e-6)


def test_a_missing_or_broken_fit_record_is_not_logged(tmp_path: Path) -> None:
    sent: list[int] = []
    assert not replay_fit(tmp_path / "none_fit.json", lambda m, step: sent.append(step), 0)
    broken = tmp_path / "broken_fit.json"
    broken.write_text("[1, 2")
    with pytest.warns(UserWarning, match="broken_fit.json: not a fit record"):
        assert not replay_fit(broken, lambda m, step: sent.append(step), 0)
    assert sent == []


def test_ensemble_pairs_follow_their_delta_and_others_their_level(ladder, tmp_path: Path):
    videos, _ = ladder
    a, b, c = videos.path[[0, 2, 4]]  # three renditions of one source, blurred 0, 2, 4
    table = pd.DataFrame({
        "first_path": [a, b, a], "second_path": [b, c, c],
        # the ensemble says a - b = -1 and b - c = -1 against their levels; the synthetic pair
        # says a is better than c by 2 steps of 0.05
        "level": [4, 4, 4], "source": ["ensemble", "ensemble", "spatial"],
        "delta": [-1.0, -1.0, 99.0],  # a synthetic pair's own delta is not read
    })  # fmt: skip
    table.to_parquet(tmp_path / "pairs.parquet")
    student = CompactStudent(**{**RIDGE, "alpha": 1e-3}, level_step=0.05)
    fit_readout_on_pairs(student, [tmp_path / "pairs.parquet"], progress=False)
    with torch.no_grad():
        s = student(torch.stack([student.prepare(*_clip(p, student)) for p in (a, b, c)]))
    diffs = np.array([s[0] - s[1], s[1] - s[2], s[0] - s[2]])
    # the three cannot all hold: the least-squares compromise of -1, -1 and 0.1 is -0.3 each
    np.testing.assert_allclose(diffs, [-0.3, -0.3, -0.6], atol=0.02)


@pytest.mark.parametrize(("level_loss", "expected"), [
    # squared: the least-squares compromise of 1, 1 and 0.1 (x, x, 2x with x = 4.4 / 12)
    ("squared", [0.367, 0.367, 0.733]),
    # hinge: a - c = 2 already exceeds the synthetic pair's margin of 0.1, so it pulls nothing
    ("hinge", [1.0, 1.0, 2.0]),
])  # fmt: skip
def test_a_synthetic_pair_as_a_margin_pulls_nothing_once_it_is_met(
    ladder, tmp_path: Path, level_loss: str, expected: list[float]
) -> None:
    videos, _ = ladder
    a, b, c = videos.path[[0, 2, 4]]
    table = pd.DataFrame({
        "first_path": [a, b, a], "second_path": [b, c, c],
        "level": [4, 4, 4], "source": ["ensemble", "ensemble", "spatial"],
        "delta": [1.0, 1.0, 99.0],  # the ensemble agrees with the level, by a wide gap
    })  # fmt: skip
    table.to_parquet(tmp_path / "pairs.parquet")
    student = CompactStudent(**{**RIDGE, "alpha": 1e-3}, level_step=0.05, level_loss=level_loss)
    fit_readout_on_pairs(student, [tmp_path / "pairs.parquet"], progress=False)
    with torch.no_grad():
        s = student(torch.stack([student.prepare(*_clip(p, student)) for p in (a, b, c)]))
    np.testing.assert_allclose([s[0] - s[1], s[1] - s[2], s[0] - s[2]], expected, atol=0.02)


def test_a_broken_video_loses_only_its_pairs_and_is_named(ladder, tmp_path: Path) -> None:
    videos, pairs = ladder
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    table = pd.read_parquet(pairs)
    extra = table.iloc[:2].assign(second_path=str(broken))
    pd.concat([table, extra]).to_parquet(tmp_path / "with_broken.parquet")
    student = CompactStudent(**RIDGE)
    with pytest.warns(UserWarning, match="broken.mp4"):
        fit = fit_readout_on_pairs(student, [tmp_path / "with_broken.parquet"], progress=False)
    assert fit["pairs"] == len(table) and fit["videos"] == len(videos)


def test_the_ridge_head_refuses_what_it_cannot_fit() -> None:
    for bad in ({"trainable_blocks": 1}, {"standardize": True}, {"log_variance": True}):
        with pytest.raises(ValueError, match="head 'ridge'"):
            CompactStudent(weights=None, head="ridge", **bad)  # the pooled representation
    with pytest.raises(ValueError, match="'mlp' or 'ridge'"):
        CompactStudent(weights=None, head="lasso")
    with pytest.raises(ValueError, match="'squared' or 'hinge'"):
        CompactStudent(weights=None, head="ridge", level_loss="absolute")
    with pytest.raises(ValueError, match="set head 'ridge'"):
        CompactStudent(weights=None, level_loss="hinge")  # the MLP trains on a pair loss
    mlp = CompactStudent(weights=None, frames=2, size=64, hidden=8)
    with pytest.raises(ValueError, match="head is 'mlp'"):
        mlp.fit_readout([torch.zeros(2, 1280)], np.array([0]), np.array([0]), np.array([1.0]))


def test_a_student_file_from_before_the_ridge_head_loads_as_the_mlp(tmp_path: Path) -> None:
    student = CompactStudent(weights=None, frames=2, size=64, hidden=8).eval()
    path = save_student(student, tmp_path / "new.safetensors")
    spec = student.spec()
    for added in ("head", "alpha", "level_step", "level_loss"):  # what an older file's spec lacks
        del spec["args"][added]
    old = tmp_path / "old.safetensors"
    save_file(load_file(path), str(old), metadata={SPEC_KEY: json.dumps(spec)})
    loaded = load_student(old)
    assert not loaded.fits_in_closed_form and loaded.spec() == student.spec()
    x = torch.randn(2, 2, 1280)
    with torch.no_grad():
        assert torch.allclose(loaded(x), student(x))


def _clip(path: str, student: CompactStudent) -> tuple[np.ndarray, str]:
    from datamodules.frame_sampling import read_clip

    return read_clip(path, student.sampler()), path
