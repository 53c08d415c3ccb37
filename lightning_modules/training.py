"""The training LightningModule: pairs in, rank loss out; labelled sets in, SRCC/PLCC/KRCC out.

It receives its student and its loss (lightning-hydra-template style) rather than building them, so
the same module trains the compact CPU student and the LLaVA-OneVision student, with any pair loss:
a comparator's level logits feed a "logits" loss (the paper's cross-entropy + confidence term), a
scorer's score difference `s(first) - s(second)` feeds a "diff" loss (ordered probit, fidelity,
Bradley-Terry, margin). AdamW with linear warm-up then cosine decay; each part of the student (e.g.
the vision tower) may have its own learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.regression import KendallRankCorrCoef, PearsonCorrCoef, SpearmanCorrCoef

from datamodules._faults import kill_point
from lightning_modules.losses import PairLoss
from lightning_modules.students.base import Student


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with warm-up and cosine decay."""

    lr: float = 1e-3
    """Base learning rate (the paper: 1e-4; its released script: 1e-5 for the 7B student)."""
    part_lr: dict[str, float] = field(default_factory=dict)
    """Learning rate per student part, e.g. {vision_tower: 2e-6} as in the released script."""
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: float = 0.03
    """Fraction of the steps spent warming up linearly (the paper: 3%)."""
    min_lr_ratio: float = 0.0
    """The cosine decays to lr * min_lr_ratio at the last step."""


def warmup_cosine(step: int, total: int, warmup: float, min_ratio: float = 0.0) -> float:
    """The learning-rate multiplier at `step` of `total`: linear warm-up, then cosine decay."""
    warm = max(1, round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _correlations() -> MetricCollection:
    # torchmetrics keeps every prediction (cat states), so DDP ranks are gathered correctly.
    return MetricCollection(
        {"srcc": SpearmanCorrCoef(), "plcc": PearsonCorrCoef(), "krcc": KendallRankCorrCoef()}
    )


class PairwiseTrainingModule(L.LightningModule):
    """Trains a student on pairs with a pair loss; validates on labelled video sets."""

    def __init__(
        self,
        student: Student,
        loss: PairLoss,
        optim: OptimConfig | None = None,
        val_names: list[str] | None = None,
        total_steps: int | None = None,
    ) -> None:
        """`val_names`: one name per validation loader (metrics log as `val/NAME/srcc`);
        `total_steps`: for the schedule; by default the trainer's estimate (set `max_steps` when
        the pair stream has no length)."""
        super().__init__()
        if loss.needs == "logits" and student.readout != "comparator":
            raise ValueError(
                f"loss {type(loss).__name__} needs level logits, but student {student.name!r} is "
                "a scorer: use a score-difference loss (ordered_probit, fidelity, bradley_terry, "
                "margin), or ordered_probit with confidence=True for the paper's confidence term"
            )
        self.student, self.loss = student, loss
        self.optim = optim or OptimConfig()
        self.val_names = list(val_names or ["val"])
        self.total_steps = total_steps
        self.val_metrics = nn.ModuleList(_correlations() for _ in self.val_names)

    # -- training --------------------------------------------------------------------------
    def pair_output(self, batch: dict[str, Any]) -> torch.Tensor:
        """Level logits `(B, 5)` for a logits loss, else score differences `(B,)`."""
        if self.loss.needs == "logits":
            return self.student.compare(batch["first"], batch["second"])
        return self.student(batch["first"]) - self.student(batch["second"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        out = self.pair_output(batch)
        loss, parts = self.loss(out.float(), batch["level"], batch["soft_label"], self.progress)
        size = len(batch["level"])
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=size)
        self.log("train/skipped_pairs", float(batch["skipped"]), reduce_fx="sum", batch_size=size)
        return loss

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1] (drives the schedule and the confidence term)."""
        return min(1.0, self.global_step / max(1, self._total_steps()))

    def _total_steps(self) -> int:
        if self.total_steps is not None:
            return self.total_steps
        estimate = self.trainer.estimated_stepping_batches
        if not math.isfinite(estimate):
            raise ValueError(
                "the pair stream has no length, so the schedule needs a step count: set the "
                "trainer's max_steps (or total_steps)"
            )
        return int(estimate)

    # -- validation ------------------------------------------------------------------------
    def validation_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0):
        if "video" not in batch:  # every video of this batch was unreadable
            return
        scores = self.student(batch["video"]).float()
        self.val_metrics[dataloader_idx].update(scores, batch["mos"])

    def on_validation_epoch_end(self) -> None:
        for name, metrics in zip(self.val_names, self.val_metrics, strict=True):
            if metrics["srcc"].preds:  # nothing scored in this set (e.g. a sanity check)
                self.log_dict({f"val/{name}/{k}": v for k, v in metrics.compute().items()})
            metrics.reset()

    # -- optimisation ----------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        groups = self.student.parameter_groups()
        unknown = set(self.optim.part_lr) - set(groups)
        if unknown:
            raise ValueError(
                f"optim.part_lr names parts {sorted(unknown)} that student {self.student.name!r} "
                f"does not train; its trainable parts: {sorted(groups)}"
            )
        params = [
            {"params": ps, "lr": self.optim.part_lr.get(name, self.optim.lr), "name": name}
            for name, ps in groups.items()
        ]
        loss_params = [p for p in self.loss.parameters() if p.requires_grad]
        if loss_params:  # e.g. the ordered probit's cut-points; no decay towards zero for them
            params.append({"params": loss_params, "lr": self.optim.lr, "weight_decay": 0.0,
                           "name": "loss"})  # fmt: skip
        optimizer = torch.optim.AdamW(
            params, lr=self.optim.lr, betas=self.optim.betas, weight_decay=self.optim.weight_decay
        )
        total = self._total_steps()
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda step: warmup_cosine(step, total, self.optim.warmup, self.optim.min_lr_ratio),
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    # -- checkpoints -----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # How to rebuild the student, as plain data: checkpoints load with weights_only=True.
        checkpoint["student_spec"] = self.student.spec()
        # dropout's random state, so a resumed run draws what an uninterrupted one would have
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # set at the first batch, not now: making the loader's iterator draws from it first
        self._resume_rng = checkpoint.get("torch_rng_state")

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        kill_point("train")  # after the step (and any checkpoint of it)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if getattr(self, "_resume_rng", None) is not None:
            torch.set_rng_state(self._resume_rng)
            self._resume_rng = None
