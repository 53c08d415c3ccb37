"""The small ZeRO fits of tests/test_deepspeed_cpu.py, and one rank of its two-process runs.

As a program, `python -m tests._zero_worker OUT RUN...` is one rank of a job that a test launches
the way torchrun would, with RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT set per
process. Each RUN ("2", "3", "3-offload") is one fit of `make_module()` under that ZeRO stage; every
rank saves its shard of the checkpoint into OUT/RUN.zero, and rank 0 writes OUT/RUN.pt with the step
losses and the trained student's scores on `probe()`.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from datamodules.pair_datamodule import collate_pairs
from lightning_modules.losses import OrderedProbit
from lightning_modules.strategies import zero_strategy
from lightning_modules.students.compact import CompactStudent
from lightning_modules.training import OptimConfig, PairwiseTrainingModule

# The random backbone never runs: the pairs are backbone features (B, T, 1280) already. No
# dropout, so the steps are the same whatever the number of ranks.
STUDENT = {"backbone": "tf_efficientnet_lite0", "weights": None, "hidden": 16, "frames": 2,
           "dropout": 0.0}  # fmt: skip
STEPS = 4
BATCH = 4  # pairs per optimiser step, over all ranks
FEATURES = 1280  # tf_efficientnet_lite0's pooled features


def pair_samples(n: int = STEPS * BATCH, seed: int = 0) -> list[dict[str, Any]]:
    """`n` pairs of random frozen-backbone features, as the pair stream yields them."""
    g = torch.Generator().manual_seed(seed)
    t = STUDENT["frames"]
    return [
        {"first": torch.randn(t, FEATURES, generator=g),
         "second": torch.randn(t, FEATURES, generator=g),
         "level": int(torch.randint(0, 5, (), generator=g)),
         "soft_label": float(torch.rand((), generator=g)),
         "first_id": f"a{i}", "second_id": f"b{i}", "source": "random", "skipped": 0}
        for i in range(n)
    ]  # fmt: skip


def probe() -> torch.Tensor:
    """Features of 6 videos `(6, T, 1280)` on which trained students are compared."""
    return torch.randn(6, STUDENT["frames"], FEATURES, generator=torch.Generator().manual_seed(1))


def make_module() -> PairwiseTrainingModule:
    """The same initial weights in every process: a compact student with the ordered-probit loss
    (whose cut-points train too)."""
    torch.manual_seed(0)
    student = CompactStudent(**STUDENT)
    return PairwiseTrainingModule(student, OrderedProbit(), OptimConfig(lr=1e-2), total_steps=STEPS)


class LossRecorder(L.Callback):
    """The training loss of every step this rank took."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, *args: Any) -> None:
        self.values.append(float(outputs["loss"]))


def fit(
    module: PairwiseTrainingModule,
    strategy: Any = "auto",
    devices: int = 1,
    precision: str = "32-true",
    rank: int = 0,
) -> tuple[L.Trainer, list[float]]:
    """`STEPS` steps of `BATCH` pairs, split over `devices` processes (this one is `rank`); the
    trainer and the losses this rank saw."""
    losses = LossRecorder()
    trainer = L.Trainer(
        accelerator="cpu", devices=devices, strategy=strategy, precision=precision,
        max_steps=STEPS, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[losses], use_distributed_sampler=False,
    )  # fmt: skip
    # Rank r takes pairs r, r + ranks, ... in order (Lightning's own sampler would shuffle), so
    # the ranks' batches of each step together are the one-process batch of that step.
    pairs = pair_samples()[rank::devices]
    loader = DataLoader(pairs, batch_size=BATCH // devices, collate_fn=collate_pairs)
    trainer.fit(module, loader)
    return trainer, losses.values


def main(out: str, runs: list[str]) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    for run in runs:
        stage, _, offload = run.partition("-")
        # a rank whose peer died fails after the timeout instead of waiting for ever
        timeout = timedelta(seconds=120)
        strategy = zero_strategy(int(stage), offload == "offload", cpu=True, timeout=timeout)
        module = make_module()
        trainer, losses = fit(module, strategy, devices=world, rank=rank)
        trainer.save_checkpoint(Path(out) / f"{run}.zero")  # every rank writes its shard
        with torch.no_grad():  # under ZeRO-3 every rank takes part in gathering the weights
            scores = module.eval().student(probe())
        if trainer.is_global_zero:
            torch.save({"losses": losses, "scores": scores}, Path(out) / f"{run}.pt")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
