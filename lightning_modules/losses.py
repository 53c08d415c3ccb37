"""Pair losses that train a student on labelled video pairs, and MOS losses for fine-tuning.

`LevelCrossEntropy` is the loss of Cao et al., "Generalizable Video Quality Assessment via
Weak-to-Strong Learning" (arXiv 2505.03631): cross-entropy over five comparison levels plus a
confidence term. The others need only one score per video: an ordered-probit (Thurstone)
likelihood of the level, the fidelity loss, Bradley-Terry and a hinge. Every pair loss is called
the same way, `loss(out, level, soft_label, progress) -> (loss, logs)`; `create_pair_loss` builds
one by name.

Conventions: `level` says how the first video compares with the second (0 inferior, 1 worse,
2 similar, 3 better, 4 superior); `soft_label` is P(first is better) in [0, 1]; a score difference
is first - second; higher scores are better.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_LEVELS = 5
# exp(-1e4) is 0 in every float dtype: flooring a log-probability here changes no probability
_LOG_FLOOR = -1e4


def _compute_dtype(x: Tensor) -> torch.dtype:
    # half types cannot resolve a loss or its gradient; float64 stays float64 for reference checks
    return torch.promote_types(x.dtype, torch.float32)


class PairLoss(nn.Module):
    """A loss on a batch of labelled pairs: `loss(out, level, soft_label, progress)`.

    `needs` says what `out` is: "diff", the score difference first - second (B,), or "logits",
    five level logits (B, 5). `level` (B,) int64 and `soft_label` (B,) in [0, 1] describe each
    pair; a loss reads the one it models. `progress` is global_step / total_steps in [0, 1].
    Returns the scalar loss and a dict of detached scalars to log.
    """

    needs: ClassVar[Literal["diff", "logits"]]

    def forward(
        self, out: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError


class _LevelLikelihood(PairLoss):
    """NLL of `level` under `log_probs(out)`, optionally with the paper's confidence term.

    L = (1 - λ)·L_CE + λ·L_conf, where L_conf is the mean entropy of the level distribution,
    λ = α·min(1, progress / warmup), α = exp(L_conf/T) / (exp(L_conf/T) + exp(L_CE/T)), and T
    falls linearly from t_start to t_end over the warm-up, then stays at t_end.
    """

    def __init__(
        self, confidence: bool, warmup: float = 0.1, t_start: float = 0.5, t_end: float = 0.1
    ) -> None:
        super().__init__()
        if warmup < 0 or t_start <= 0 or t_end <= 0:
            raise ValueError(f"need warmup >= 0 and temperatures > 0, got {warmup=}, "
                             f"{t_start=}, {t_end=}")  # fmt: skip
        self.confidence = confidence
        self.warmup = warmup
        self.t_start = t_start
        self.t_end = t_end

    def log_probs(self, out: Tensor) -> Tensor:
        """Log-probabilities of the five levels (B, 5)."""
        raise NotImplementedError

    def ramp(self, progress: float) -> float:
        """How far the warm-up has gone, min(1, progress / warmup): λ = α · ramp."""
        if self.warmup == 0:
            return 1.0
        return min(1.0, max(0.0, progress / self.warmup))

    def temperature(self, progress: float) -> float:
        """T of α at this point of training: t_start to t_end over the warm-up, then t_end."""
        return self.t_start + (self.t_end - self.t_start) * self.ramp(progress)

    def forward(
        self, out: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        log_p = self.log_probs(out)  # (B, 5)
        ce = F.nll_loss(log_p, level)
        # the floor keeps 0 · log 0 at 0, with a zero gradient, for a level whose log-prob is -inf
        conf = -(log_p.exp() * log_p.clamp_min(_LOG_FLOOR)).sum(-1).mean()
        logs = {"ce": ce.detach(), "conf": conf.detach()}
        if not self.confidence:
            return ce, logs
        # α and λ are weights, so they are detached: a gradient through α would also lower L by
        # shifting weight onto the smaller term, moving L_conf - L_CE by raising either the CE or
        # the entropy, which is no part of fitting the labels.
        # sigmoid((a - b) / T) is the two-way softmax exp(a/T) / (exp(a/T) + exp(b/T)); unlike
        # exp(loss / T) it cannot overflow (fp32 exp(L/0.1) does once L passes about 8.9).
        alpha = torch.sigmoid((conf - ce).detach() / self.temperature(progress))
        lam = alpha * self.ramp(progress)
        loss = (1 - lam) * ce + lam * conf
        return loss, {**logs, "alpha": alpha, "lambda": lam}


class LevelCrossEntropy(_LevelLikelihood):
    """The paper's loss on five level logits (B, 5): cross-entropy plus the confidence term.

    `confidence=False` gives plain cross-entropy. Log-probabilities may be passed as logits: their
    logsumexp is already 0, so log_softmax returns them unchanged.
    """

    needs = "logits"

    def __init__(
        self,
        confidence: bool = True,
        warmup: float = 0.1,
        t_start: float = 0.5,
        t_end: float = 0.1,
    ) -> None:
        super().__init__(confidence, warmup, t_start, t_end)

    def log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities of the five levels (B, 5) from logits or log-probabilities (B, 5)."""
        return F.log_softmax(logits.to(_compute_dtype(logits)), dim=-1)


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 - exp(x)) for x < 0, accurate at both ends (Mächler 2012, "Accurately computing
    log(1 - exp(-|a|))")."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _log_ndtr_diff(hi: Tensor, lo: Tensor) -> Tensor:
    """log(Φ(hi) - Φ(lo)) for lo < hi, accurate even far out in either tail."""
    # Φ(hi) - Φ(lo) = Φ(-lo) - Φ(-hi): use the form whose Φ values lie below 1/2, where log_ndtr
    # keeps full precision instead of rounding both values to log(1) = 0
    upper = lo > 0
    big = torch.where(upper, -lo, hi)
    small = torch.where(upper, -hi, lo)
    log_big, log_small = torch.special.log_ndtr(big), torch.special.log_ndtr(small)
    # two Φ values that round to the same float read as one ulp apart, not as log(0)
    ratio = (log_small - log_big).clamp_max(-torch.finfo(hi.dtype).eps)
    return log_big + _log1mexp(ratio)


class OrderedProbit(_LevelLikelihood):
    """Ordered-probit (Thurstone) likelihood of the level given the score difference (B,).

    The level is where diff + ε, ε ~ N(0, 1), falls among four learned cut-points c1 < ... < c4:
    P(level = k) = Φ(c_{k+1} - diff) - Φ(c_k - diff), with c0 = -∞ and c5 = +∞. The noise is
    fixed at unit variance on the difference, not learned: the student's scores set their own
    scale, so a learned noise scale would only trade off against it and the cut-points; unit noise
    on the difference is also the model of the paper's test-time scoring, Φ(q_i - q_j).

    The cut-points are parameters: keep the loss inside the LightningModule so the optimiser sees
    them. `confidence=True` adds the same confidence term as `LevelCrossEntropy`.
    """

    needs = "diff"

    def __init__(
        self,
        confidence: bool = False,
        init_cut_points: tuple[float, float, float, float] = (-1.5, -0.5, 0.5, 1.5),
        min_gap: float = 1e-3,
        warmup: float = 0.1,
        t_start: float = 0.5,
        t_end: float = 0.1,
    ) -> None:
        super().__init__(confidence, warmup, t_start, t_end)
        cuts = torch.tensor(init_cut_points, dtype=torch.float64)  # (4,)
        if cuts.shape != (NUM_LEVELS - 1,) or (cuts.diff() <= min_gap).any():
            raise ValueError(f"need 4 cut-points more than {min_gap=} apart, got {init_cut_points}")
        self.min_gap = min_gap
        # a first cut plus positive gaps: the cut-points stay ordered whatever an optimiser does;
        # ±0.5 and ±1.5 (symmetric, one noise unit per level) put 38% on "similar" at diff 0
        self.first_cut = nn.Parameter(cuts[:1].float())  # (1,)
        # softplus⁻¹(y) = log(expm1(y)), so that cut_points() starts at init_cut_points
        self.raw_gaps = nn.Parameter(torch.log(torch.expm1(cuts.diff() - min_gap)).float())  # (3,)

    def cut_points(self) -> Tensor:
        """The four cut-points (4,), float64, strictly increasing."""
        # softplus alone underflows to a zero gap; min_gap keeps the gaps positive, and float64
        # keeps them from rounding away should a wild step send the cut-points to ±1e7
        first = self.first_cut.double()  # (1,)
        gaps = F.softplus(self.raw_gaps.double()) + self.min_gap  # (3,)
        return torch.cat([first, first + gaps.cumsum(0)])  # (4,)

    def log_probs(self, diff: Tensor) -> Tensor:
        """Log-probabilities of the five levels (B, 5) given the score difference (B,); finite,
        with finite gradients, up to |diff| ≈ 1e19 (where -diff²/2 overflows float32)."""
        # float64 inside: far out, log Φ(-x) ≈ -x²/2 is so large that float32's rounding of it
        # (±4 at x = 1e4) would scale the gradient by up to e⁴; (B, 4) values cost nothing
        z = self.cut_points() - diff.double()[:, None]  # (B, 4): c_k - diff
        lowest = torch.special.log_ndtr(z[:, :1])  # (B, 1): log Φ(c1 - diff)
        highest = torch.special.log_ndtr(-z[:, -1:])  # (B, 1): log(1 - Φ(c4 - diff))
        middle = _log_ndtr_diff(z[:, 1:], z[:, :-1])  # (B, 3)
        return torch.cat([lowest, middle, highest], dim=-1).to(_compute_dtype(diff))

    def forward(
        self, diff: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        loss, logs = super().forward(diff, level, soft_label, progress)
        cuts = self.cut_points().detach()
        return loss, {**logs, **{f"cut{k + 1}": c for k, c in enumerate(cuts)}}


class FidelityLoss(PairLoss):
    """Fidelity between P(first better) = Φ(diff / √2) and `soft_label`.

    The fidelity loss of Tsai et al. (FRank, SIGIR 2007) as UNIQUE (Zhang et al., TIP 2021) uses
    it for quality: each video's quality is its score plus unit-variance noise, hence the √2.
    `eps` keeps the gradient of each square root finite where p·y or (1-p)(1-y) is 0.
    """

    needs = "diff"

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(
        self, diff: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        dtype = _compute_dtype(diff)
        x = diff.to(dtype) / math.sqrt(2)  # (B,)
        y = soft_label.to(dtype)  # (B,)
        # 1 - p as Φ(-x), not 1 - Φ(x): it keeps its precision where p is near 1
        p, q = torch.special.ndtr(x), torch.special.ndtr(-x)
        loss = 1 - torch.sqrt(p * y + self.eps) - torch.sqrt(q * (1 - y) + self.eps)  # (B,)
        return loss.mean(), {}


class BradleyTerryLoss(PairLoss):
    """Bradley-Terry: binary cross-entropy of σ(scale · diff) against `soft_label`.

    scale ≈ 1.7 makes σ(scale · diff) close to Φ(diff), the unit-noise Thurstone model of
    `OrderedProbit`; the default 1 is the plain logistic model.
    """

    needs = "diff"

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.scale = scale

    def forward(
        self, diff: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        dtype = _compute_dtype(diff)
        logits = self.scale * diff.to(dtype)  # (B,)
        return F.binary_cross_entropy_with_logits(logits, soft_label.to(dtype)), {}


class MarginLoss(PairLoss):
    """Hinge on the score difference: each level has an interval that diff should lie in.

    With m = margin: level 4 wants diff ≥ 3m, 3 diff ≥ m, 2 |diff| ≤ m, 1 diff ≤ -m, 0 diff ≤ -3m.
    These bounds are `OrderedProbit`'s initial cut-points (±0.5, ±1.5 for m = 0.5), so both losses
    ask for the same score scale: one unit of difference per level, one unit of Thurstone noise.
    Levels 0, 1, 3 and 4 are bounded on one side only: a "better" pair scored as "superior" is
    still ordered right and costs nothing.
    """

    needs = "diff"

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def forward(
        self, diff: Tensor, level: Tensor, soft_label: Tensor, progress: float
    ) -> tuple[Tensor, dict[str, Tensor]]:
        d = diff.to(_compute_dtype(diff))  # (B,)
        m, inf = self.margin, math.inf
        lower = d.new_tensor([-inf, -inf, -m, m, 3 * m])[level]  # (B,)
        upper = d.new_tensor([-3 * m, -m, m, inf, inf])[level]  # (B,)
        loss = F.relu(lower - d) + F.relu(d - upper)  # (B,)
        return loss.mean(), {"outside": (loss > 0).float().mean()}


PAIR_LOSSES: dict[str, type[PairLoss]] = {
    "level_ce": LevelCrossEntropy,
    "ordered_probit": OrderedProbit,
    "fidelity": FidelityLoss,
    "bradley_terry": BradleyTerryLoss,
    "margin": MarginLoss,
}


def create_pair_loss(name: str, /, **kwargs: object) -> PairLoss:
    """The pair loss registered as `name`, built with `kwargs`."""
    if name not in PAIR_LOSSES:
        raise ValueError(f"unknown pair loss {name!r}; known: {', '.join(PAIR_LOSSES)}")
    return PAIR_LOSSES[name](**kwargs)


MosLossKind = Literal["l1", "mse", "plcc", "rank", "plcc+rank"]


def _standardise(x: Tensor) -> Tensor:
    var, mean = torch.var_mean(x, correction=0)
    # the floor only matters for constant x, where sqrt'(0) = inf would make the gradient NaN;
    # the +1e-8 is FAST-VQA's
    return (x - mean) / (var.clamp_min(1e-16).sqrt() + 1e-8)


def plcc_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """FAST-VQA's PLCC loss of predictions (B,) against MOS (B,): 0 for a positive linear fit.

    Both are standardised; the loss is (‖p̂ - ŷ‖²/B + ‖ρ·p̂ - ŷ‖²/B) / 8, which equals
    (1 - ρ)/4 + (1 - ρ²)/8 for the Pearson correlation ρ: from 0 (ρ = 1) up to 1/2 (ρ = -1).
    Source: `plcc_loss` in train.py of github.com/VQAssessment/FAST-VQA-and-FasterVQA; DOVER's
    training script uses the same. A batch of one has no correlation: the loss is then 0.
    """
    pred, mos = pred.to(_compute_dtype(pred)), mos.to(_compute_dtype(pred))
    if pred.numel() < 2:
        return pred.sum() * 0  # zero, yet in the graph, so backward and DDP still run
    p, y = _standardise(pred), _standardise(mos)  # (B,), (B,)
    rho = (p * y).mean()
    return (F.mse_loss(p, y) + F.mse_loss(rho * p, y)) / 8


def rank_loss(pred: Tensor, mos: Tensor) -> Tensor:
    """FAST-VQA's rank loss of predictions (B,) against MOS (B,): 0 when pred orders as MOS does.

    The mean over ordered pairs of how far pred puts a pair the wrong way round, divided by
    1 + the largest such amount. Source: `rank_loss` in train.py of
    github.com/VQAssessment/FAST-VQA-and-FasterVQA (DOVER: the same). A batch of one has no
    pairs: the loss is then 0.
    """
    pred, mos = pred.to(_compute_dtype(pred)), mos.to(_compute_dtype(pred))
    n = pred.numel()
    if n < 2:
        return pred.sum() * 0  # zero, yet in the graph, so backward and DDP still run
    # [i, j] > 0 where pred puts i above j but MOS puts i below j
    wrong = F.relu((pred[:, None] - pred[None, :]) * torch.sign(mos[None, :] - mos[:, None]))
    return wrong.sum() / (n * (n - 1)) / (1 + wrong.max())


def mos_loss(pred: Tensor, mos: Tensor, kind: MosLossKind, *, rank_weight: float = 0.3) -> Tensor:
    """A loss of predicted scores (B,) against human MOS (B,) for fine-tuning.

    "plcc+rank" is plcc + rank_weight · rank; 0.3 is DOVER's weight (FAST-VQA's train.py uses
    0.1). The correlation losses ignore the MOS scale; "l1" and "mse" need pred on the MOS scale.
    With one video in the batch "plcc" and "rank" are 0 (see `plcc_loss`, `rank_loss`).
    """
    if pred.shape != mos.shape or pred.dim() != 1:
        raise ValueError(f"need pred and mos of one shape (B,), got {tuple(pred.shape)} "
                         f"and {tuple(mos.shape)}")  # fmt: skip
    pred, mos = pred.to(_compute_dtype(pred)), mos.to(_compute_dtype(pred))
    if kind == "l1":
        return F.l1_loss(pred, mos)
    if kind == "mse":
        return F.mse_loss(pred, mos)
    if kind == "plcc":
        return plcc_loss(pred, mos)
    if kind == "rank":
        return rank_loss(pred, mos)
    if kind == "plcc+rank":
        return plcc_loss(pred, mos) + rank_weight * rank_loss(pred, mos)
    raise ValueError(f"unknown MOS loss {kind!r}; known: {', '.join(get_args(MosLossKind))}")
