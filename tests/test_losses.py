"""Pair losses and MOS losses: right orderings cost less, huge inputs stay finite, and each formula
matches a direct float64 reference (scipy where there is one)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import norm, pearsonr

from lightning_modules.losses import (
    NUM_LEVELS,
    PAIR_LOSSES,
    BradleyTerryLoss,
    FidelityLoss,
    LevelCrossEntropy,
    MarginLoss,
    OrderedProbit,
    PairLoss,
    create_pair_loss,
    mos_loss,
    plcc_loss,
    rank_loss,
)

LEVELS = range(NUM_LEVELS)
SOFT_LABEL = {0: 0.0, 1: 0.25, 2: 0.5, 3: 0.75, 4: 1.0}  # P(first better) that goes with a level
RIGHT_DIFF = {0: -3.0, 1: -1.0, 2: 0.0, 3: 1.0, 4: 3.0}
WRONG_DIFF = {0: 3.0, 1: 1.0, 2: 3.0, 3: -1.0, 4: -3.0}


def _pair_output(loss: PairLoss, levels: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """What `loss` reads for pairs at `levels`: `value` (B,) as the score difference, or logits
    (B, 5) that put `value` on the labelled level and -`value` on the others."""
    if loss.needs == "diff":
        return value
    on_level = F.one_hot(levels, NUM_LEVELS).bool()  # (B, 5)
    return torch.where(on_level, value[:, None], -value[:, None])


def _soft(levels: torch.Tensor) -> torch.Tensor:
    return torch.tensor([SOFT_LABEL[int(k)] for k in levels])


# --- every registered loss ---------------------------------------------------------------------


def test_registry_names_and_needs() -> None:
    names = {"level_ce", "ordered_probit", "fidelity", "bradley_terry", "margin"}
    assert set(PAIR_LOSSES) == names
    assert {cls.needs for cls in PAIR_LOSSES.values()} == {"diff", "logits"}
    assert create_pair_loss("margin", margin=1.0).margin == 1.0
    with pytest.raises(ValueError, match="level_ce, ordered_probit, fidelity, bradley_terry"):
        create_pair_loss("hinge")


@pytest.mark.parametrize("progress", [0.0, 0.5])
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_right_order_costs_less_than_wrong(name: str, level: int, progress: float) -> None:
    loss_fn = create_pair_loss(name)
    levels = torch.tensor([level])
    if loss_fn.needs == "diff":
        right, wrong = torch.tensor([RIGHT_DIFF[level]]), torch.tensor([WRONG_DIFF[level]])
    else:  # logits peaked on the labelled level vs on a level two steps away
        right = 5 * F.one_hot(levels, NUM_LEVELS).float()
        wrong = 5 * F.one_hot((levels + 2) % NUM_LEVELS, NUM_LEVELS).float()
    loss_right, _ = loss_fn(right, levels, _soft(levels), progress)
    loss_wrong, _ = loss_fn(wrong, levels, _soft(levels), progress)
    assert loss_right < loss_wrong


@pytest.mark.parametrize("sign", [1.0, -1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", PAIR_LOSSES)
def test_huge_inputs_give_finite_loss_and_gradients(
    name: str, dtype: torch.dtype, sign: float
) -> None:
    loss_fn = create_pair_loss(name)
    levels = torch.arange(NUM_LEVELS)
    out = _pair_output(loss_fn, levels, torch.full((NUM_LEVELS,), sign * 1e4))
    out = out.to(dtype).requires_grad_()
    loss, logs = loss_fn(out, levels, _soft(levels), 0.5)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(out.grad).all()
    assert all(torch.isfinite(v).all() for v in logs.values())
    assert all(torch.isfinite(p.grad).all() for p in loss_fn.parameters())


# fidelity is bounded by 1 whatever the input, so it never reaches a large loss
@pytest.mark.parametrize("name", [n for n in PAIR_LOSSES if n != "fidelity"])
def test_large_loss_keeps_gradients_finite(name: str) -> None:
    loss_fn = create_pair_loss(name)
    levels = torch.tensor([0, 1, 3, 4])
    # every pair ordered the wrong way round, by a wide margin
    value = torch.tensor([1e4, 1e4, -1e4, -1e4]) if loss_fn.needs == "diff" else -1e4
    out = _pair_output(loss_fn, levels, torch.as_tensor(value).expand(4)).requires_grad_()
    loss, _ = loss_fn(out, levels, _soft(levels), 0.5)
    loss.backward()
    assert 100 < loss < math.inf
    assert torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0


def test_fidelity_is_bounded_and_finite_at_saturation() -> None:
    diff = torch.tensor([1e4, -1e4], requires_grad=True)
    loss, _ = FidelityLoss()(diff, torch.tensor([0, 4]), torch.tensor([0.0, 1.0]), 0.0)
    loss.backward()
    assert loss.item() == pytest.approx(1.0, abs=1e-3)  # the worst a fidelity loss can be
    assert torch.isfinite(diff.grad).all()


# --- LevelCrossEntropy -------------------------------------------------------------------------


@pytest.fixture
def logits_batch() -> tuple[torch.Tensor, torch.Tensor]:
    # leaning to the labelled level, so that L_CE ≈ L_conf and α is well inside (0, 1)
    gen = torch.Generator().manual_seed(0)
    levels = torch.randint(0, NUM_LEVELS, (16,), generator=gen)
    noise = torch.randn(16, NUM_LEVELS, generator=gen, dtype=torch.float64)
    return noise + 1.5 * F.one_hot(levels, NUM_LEVELS), levels


def test_level_ce_is_plain_cross_entropy_at_start_or_without_confidence(logits_batch) -> None:
    logits, levels = logits_batch
    plain = F.cross_entropy(logits, levels)
    at_start, logs = LevelCrossEntropy()(logits, levels, _soft(levels), 0.0)
    assert at_start == pytest.approx(plain.item(), rel=1e-12)
    assert logs["lambda"] == 0
    later, _ = LevelCrossEntropy(confidence=False)(logits, levels, _soft(levels), 0.7)
    assert later == pytest.approx(plain.item(), rel=1e-12)


def test_level_ce_accepts_log_probabilities(logits_batch) -> None:
    logits, levels = logits_batch
    loss_fn = LevelCrossEntropy()
    from_logits, _ = loss_fn(logits, levels, _soft(levels), 0.3)
    from_log_probs, _ = loss_fn(F.log_softmax(logits, -1), levels, _soft(levels), 0.3)
    assert from_log_probs.item() == pytest.approx(from_logits.item(), rel=1e-12)


def test_temperature_schedule() -> None:
    loss_fn = LevelCrossEntropy(warmup=0.1, t_start=0.5, t_end=0.1)
    temps = [loss_fn.temperature(p) for p in (0.0, 0.05, 0.1, 1.0)]
    assert temps == pytest.approx([0.5, 0.3, 0.1, 0.1])


@pytest.mark.parametrize("progress", [0.0, 0.025, 0.05, 0.1, 0.6, 1.0])
def test_lambda_ramps_over_warmup(logits_batch, progress: float) -> None:
    logits, levels = logits_batch
    _, logs = LevelCrossEntropy(warmup=0.1)(logits, levels, _soft(levels), progress)
    ramp = min(1.0, progress / 0.1)
    assert logs["lambda"].item() == pytest.approx(logs["alpha"].item() * ramp, rel=1e-12)
    assert 0 < logs["alpha"] < 1


def test_alpha_and_loss_match_float64_reference(logits_batch) -> None:
    logits, levels = logits_batch
    progress = 0.03  # inside the warm-up: T = 0.5 - 0.4 · 0.3 = 0.38, ramp 0.3
    loss, logs = LevelCrossEntropy()(logits, levels, _soft(levels), progress)
    x = logits.numpy()
    p = np.exp(x) / np.exp(x).sum(1, keepdims=True)
    ce = -np.log(p[np.arange(len(x)), levels.numpy()]).mean()
    conf = -(p * np.log(p)).sum(1).mean()
    t = 0.38
    alpha = np.exp(conf / t) / (np.exp(conf / t) + np.exp(ce / t))  # the paper's formula as is
    lam = alpha * 0.3
    assert 0.1 < alpha < 0.9
    assert logs["alpha"].item() == pytest.approx(alpha, rel=1e-10)
    assert loss.item() == pytest.approx((1 - lam) * ce + lam * conf, rel=1e-10)


def test_alpha_stays_finite_when_cross_entropy_is_huge() -> None:
    levels = torch.tensor([0, 3])
    logits = (1000 * F.one_hot(levels + 1, NUM_LEVELS).float()).requires_grad_()  # CE ≈ 1000
    loss, logs = LevelCrossEntropy()(logits, levels, _soft(levels), 1.0)
    loss.backward()
    assert logs["ce"].item() == pytest.approx(1000, rel=1e-3)
    assert torch.isfinite(logs["alpha"]) and logs["alpha"] < 1e-6  # exp(1000/0.1) would be inf
    assert loss.item() == pytest.approx(logs["ce"].item(), rel=1e-6)
    assert torch.isfinite(logits.grad).all()


def test_alpha_and_lambda_act_as_constant_weights(logits_batch) -> None:
    logits, levels = logits_batch
    logits = logits.clone().requires_grad_()
    loss, logs = LevelCrossEntropy()(logits, levels, _soft(levels), 0.03)
    (grad,) = torch.autograd.grad(loss, logits)
    log_p = logits.log_softmax(-1)
    ce, conf = F.nll_loss(log_p, levels), -(log_p.exp() * log_p).sum(-1).mean()
    (grad_ce,) = torch.autograd.grad(ce, logits, retain_graph=True)
    (grad_conf,) = torch.autograd.grad(conf, logits)
    lam = logs["lambda"]
    assert 0.1 < lam < 0.9
    torch.testing.assert_close(grad, (1 - lam) * grad_ce + lam * grad_conf)


# --- OrderedProbit -----------------------------------------------------------------------------


DIFFS = torch.cat([torch.linspace(-12, 12, 97), torch.tensor([-1e4, 1e4])])


def test_probit_probabilities_sum_to_one_and_are_never_log_zero() -> None:
    log_p = OrderedProbit().log_probs(DIFFS)  # (99, 5)
    assert torch.isfinite(log_p).all()
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(len(DIFFS)), atol=1e-6)


def test_probit_expected_level_increases_with_diff() -> None:
    diffs = torch.linspace(-6, 6, 49)
    expected = (OrderedProbit().log_probs(diffs).exp() * torch.arange(NUM_LEVELS)).sum(-1)
    assert (expected.diff() > 0).all()
    assert expected[24].item() == pytest.approx(2.0, abs=1e-6)  # symmetric cut-points at diff 0


def test_probit_matches_scipy_normal_cdf() -> None:
    diffs = torch.tensor([-4.0, -1.2, 0.0, 0.3, 2.5], dtype=torch.float64)
    loss_fn = OrderedProbit(init_cut_points=(-2.0, -0.4, 0.7, 1.9))
    cuts = np.concatenate([[-np.inf], [-2.0, -0.4, 0.7, 1.9], [np.inf]])
    cdf = norm.cdf(cuts[None, :] - diffs.numpy()[:, None])  # (5, 6)
    expected = np.log(cdf[:, 1:] - cdf[:, :-1])
    got = loss_fn.log_probs(diffs).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_probit_confidence_term_is_the_shared_mix() -> None:
    diffs, levels = torch.tensor([0.2, -1.0, 2.0]), torch.tensor([2, 1, 4])
    loss, logs = OrderedProbit(confidence=True)(diffs, levels, _soft(levels), 1.0)
    lam = logs["lambda"]
    assert lam > 0
    assert loss.item() == pytest.approx(((1 - lam) * logs["ce"] + lam * logs["conf"]).item())


def test_probit_cut_points_stay_ordered_after_a_wild_step() -> None:
    loss_fn = OrderedProbit()
    before = loss_fn.cut_points().detach().clone()
    opt = torch.optim.SGD(loss_fn.parameters(), lr=1e4)
    # levels 0 and 4 at diff 0 pull c1 up and c4 down, towards crossing
    levels = torch.tensor([0, 4] * 8)
    for _ in range(3):
        opt.zero_grad()
        loss, _ = loss_fn(torch.zeros(16), levels, _soft(levels), 0.0)
        loss.backward()
        opt.step()
    cuts = loss_fn.cut_points().detach()
    assert not torch.allclose(cuts, before)
    assert torch.isfinite(cuts).all() and (cuts.diff() > 0).all()


def test_probit_training_lowers_the_loss() -> None:
    loss_fn = OrderedProbit()
    levels = torch.tensor([0, 1, 2, 3, 4, 2, 3, 1])
    diff = torch.zeros(len(levels), requires_grad=True)  # a free score difference per pair
    opt = torch.optim.Adam([diff, *loss_fn.parameters()], lr=0.05)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss, _ = loss_fn(diff, levels, _soft(levels), 0.0)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert (loss_fn.cut_points().diff() > 0).all()


# --- the losses on score differences -----------------------------------------------------------


@pytest.fixture
def diff_batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    diffs = 2 * torch.randn(32, generator=gen, dtype=torch.float64)
    return diffs, torch.rand(32, generator=gen, dtype=torch.float64)


def test_fidelity_matches_float64_formula(diff_batch) -> None:
    diffs, y = diff_batch
    p = norm.cdf(diffs.numpy() / math.sqrt(2))
    yn = y.numpy()
    expected = (1 - np.sqrt(p * yn + 1e-8) - np.sqrt((1 - p) * (1 - yn) + 1e-8)).mean()
    loss, _ = FidelityLoss()(diffs, torch.zeros(32, dtype=torch.long), y, 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss32, _ = FidelityLoss()(diffs.float(), torch.zeros(32, dtype=torch.long), y.float(), 0.0)
    assert loss32.item() == pytest.approx(expected, rel=1e-4)


def test_bradley_terry_matches_float64_formula(diff_batch) -> None:
    diffs, y = diff_batch
    s = 1 / (1 + np.exp(-1.7 * diffs.numpy()))
    yn = y.numpy()
    expected = -(yn * np.log(s) + (1 - yn) * np.log(1 - s)).mean()
    loss, _ = BradleyTerryLoss(scale=1.7)(diffs, torch.zeros(32, dtype=torch.long), y, 0.0)
    assert loss.item() == pytest.approx(expected, rel=1e-10)


def test_margin_intervals() -> None:
    diffs = torch.tensor([1.0, 1.0, 0.3, -0.8, -2.0, 2.0, -1.0])
    levels = torch.tensor([4, 3, 2, 2, 0, 1, 0])
    loss, logs = MarginLoss(margin=0.5)(diffs, levels, _soft(levels), 0.0)
    # short of 1.5 by 0.5; inside; inside; past 0.5 by 0.3; inside; past -0.5 by 2.5; short by 0.5
    assert loss.item() == pytest.approx((0.5 + 0 + 0 + 0.3 + 0 + 2.5 + 0.5) / 7)
    assert logs["outside"].item() == pytest.approx(4 / 7)


# --- MOS losses --------------------------------------------------------------------------------


@pytest.fixture
def mos() -> torch.Tensor:
    return torch.rand(16, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 4 + 1


def test_plcc_loss_is_zero_for_a_linear_fit(mos) -> None:
    assert plcc_loss(3 * mos - 2, mos).item() == pytest.approx(0, abs=1e-12)
    assert plcc_loss(-mos, mos).item() == pytest.approx(0.5, abs=1e-7)  # the worst case


def test_plcc_loss_follows_pearson_r(mos) -> None:
    noise = torch.randn(16, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    pred = mos + noise
    r = pearsonr(pred.numpy(), mos.numpy()).statistic
    assert plcc_loss(pred, mos).item() == pytest.approx((1 - r) / 4 + (1 - r**2) / 8, rel=1e-6)


def test_rank_loss_matches_pairwise_reference(mos) -> None:
    pred = torch.exp(mos)  # same order, not linear
    assert rank_loss(pred, mos).item() == 0
    pred = mos + torch.randn(16, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    p, y = pred.tolist(), mos.tolist()
    wrong = [max(0.0, (p[i] - p[j]) * np.sign(y[j] - y[i])) for i in range(16) for j in range(16)]
    expected = sum(wrong) / (16 * 15) / (1 + max(wrong))
    assert rank_loss(pred, mos).item() == pytest.approx(expected, rel=1e-12)
    assert mos_loss(pred, mos, "plcc+rank").item() == pytest.approx(
        (plcc_loss(pred, mos) + 0.3 * rank_loss(pred, mos)).item()
    )


KINDS = ["l1", "mse", "plcc", "rank", "plcc+rank"]


@pytest.mark.parametrize("kind", KINDS)
def test_mos_loss_with_one_video(kind: str) -> None:
    pred = torch.tensor([3.0], requires_grad=True)
    loss = mos_loss(pred, torch.tensor([4.0]), kind)
    loss.backward()
    assert loss.item() == (1.0 if kind in ("l1", "mse") else 0.0)  # no order or correlation in one
    assert pred.grad is not None and torch.isfinite(pred.grad).all()


@pytest.mark.parametrize("kind", KINDS)
def test_mos_loss_with_constant_predictions(kind: str, mos) -> None:
    pred = torch.full((16,), 0.3, requires_grad=True)
    loss = mos_loss(pred, mos.float(), kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


def test_mos_loss_rejects_unknown_kind_and_shapes(mos) -> None:
    with pytest.raises(ValueError, match="l1, mse, plcc, rank, plcc\\+rank"):
        mos_loss(mos, mos, "srcc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="one shape"):
        mos_loss(mos[:, None], mos, "l1")
