"""What a training run shows while it runs: one step bar, and the curves (loss, learning rate,
gradient norm) logged every few steps.

`TrainingCurves` writes the curves to a CSV beside the student file (`OUT_curve.csv`, a table a
person can open) and hands each row to a `sink`, e.g. an MLflow client's `log_metrics`, as it goes.
Steps in the sink are offset (`offset`), so the rounds of one run draw one continuous curve. A run
resumed from a checkpoint keeps the rows up to the checkpoint's step and replays them to the sink,
so a resumed round's curve is whole in the new run too; `replay_curve` does the same for a round
that was already trained.
"""

from __future__ import annotations

import csv
import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

from datamodules._io import atomic_write
from lightning_modules._bars import StderrProgressBar

# Called with ({"train/loss": x, "train/lr": y, "train/grad_norm": z}, step).
MetricSink = Callable[[Mapping[str, float], int], None]
CURVE_COLUMNS = ("step", "loss", "lr", "grad_norm")


def curve_file(student_file: str | Path) -> Path:
    """The curve of the training that writes `student_file`: `STEM_curve.csv` beside it."""
    student_file = Path(student_file)
    return student_file.with_name(f"{student_file.stem}_curve.csv")


def read_curve(path: str | Path) -> list[dict[str, float]]:
    """The rows of a curve CSV (`step` as an int); none when the file does not exist, or when it
    is not a curve table (said in a warning naming the file: the curve is only a record of
    training, so it starts over rather than stopping the round)."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != CURVE_COLUMNS:
                raise ValueError(f"columns {reader.fieldnames}, expected {list(CURVE_COLUMNS)}")
            return [
                {k: int(v) if k == "step" else float(v) for k, v in row.items()} for row in reader
            ]
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:  # TypeError: a short row
        warnings.warn(
            f"{path}: not a training curve table ({type(err).__name__}: {err}); its rows are "
            "left out and the curve is written anew",
            stacklevel=2,
        )
        return []


def replay_curve(path: str | Path, sink: MetricSink, offset: int = 0) -> int:
    """Send every row of a curve CSV to `sink` (steps + `offset`); returns how many rows."""
    rows = read_curve(path)
    for row in rows:
        sink(_metrics(row), offset + int(row["step"]))
    return len(rows)


def _metrics(row: Mapping[str, float]) -> dict[str, float]:
    return {f"train/{k}": float(v) for k, v in row.items() if k != "step"}


class TrainingCurves(L.Callback):
    """Every `every` optimiser steps (and at the last): the mean loss and gradient norm over those
    steps and the learning rate of the last one, on global rank 0. The gradient norm is the L2 norm
    of all gradients before clipping; under DeepSpeed, the engine's global norm."""

    def __init__(
        self, every: int, csv_file: str | Path, sink: MetricSink | None = None, offset: int = 0
    ) -> None:
        if every < 1:
            raise ValueError(f"curves are logged every N >= 1 steps, not every {every}")
        self.every, self.csv_file, self.sink, self.offset = every, Path(csv_file), sink, offset
        self.rows: list[dict[str, float]] = []
        self._losses: list[float] = []
        self._norms: list[float] = []
        self._lr = math.nan
        self._last_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step  # > 0 when resumed from a checkpoint
        if not trainer.is_global_zero:
            return
        # rows past the checkpoint are trained again (and logged again) from here
        self.rows = [r for r in read_curve(self.csv_file) if r["step"] <= self._last_step]
        for row in self.rows:
            self._send(row)
        self._write()

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        self._lr = float(optimizer.param_groups[0]["lr"])  # the student's (first) part
        grads = [p.grad.detach().float() for p in pl_module.parameters() if p.grad is not None]
        if grads:
            self._norms.append(float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g) for g in grads]))))  # fmt: skip

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if loss is not None:
            self._losses.append(float(loss))
        step = trainer.global_step
        if step == self._last_step:  # accumulating gradients: no optimiser step yet
            return
        self._last_step = step
        engine = getattr(trainer.strategy, "deepspeed_engine", None)
        if not self._norms and engine is not None:  # ZeRO keeps gradients in its own buffers
            norm = engine.get_global_grad_norm()
            if norm is not None:
                self._norms.append(float(norm))
        if step % self.every == 0 or step >= (trainer.max_steps or math.inf):
            self._flush(trainer, step)

    def _flush(self, trainer: L.Trainer, step: int) -> None:
        row = {"step": step, "loss": _mean(self._losses), "lr": self._lr,
               "grad_norm": _mean(self._norms)}  # fmt: skip
        self._losses, self._norms = [], []
        if not trainer.is_global_zero:
            return
        self.rows.append(row)
        self._send(row)
        self._write()

    def _send(self, row: Mapping[str, float]) -> None:
        if self.sink is not None:
            self.sink(_metrics(row), self.offset + int(row["step"]))

    def _write(self) -> None:
        def write(path: Path) -> None:
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CURVE_COLUMNS)
                writer.writeheader()
                writer.writerows(self.rows)

        atomic_write(self.csv_file, write)  # a kill leaves the last whole table


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


class TrainingProgressBar(StderrProgressBar):
    """One bar for the whole fit, counted in optimiser steps ("round 2: train 37/150"), not
    Lightning's per-epoch bar ("Epoch 2/-2" on an endless stream); the loss beside it."""

    def init_train_tqdm(self) -> Tqdm:
        trainer = self.trainer
        return self.stderr_bar(self.description, trainer.max_steps, "step", trainer.global_step)

    def init_validation_tqdm(self) -> Tqdm:
        return self.stderr_bar(f"{self.description}: validate", None, "batch", leave=False)

    def on_validation_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:  # fmt: skip
        changed = self.has_dataloader_changed(dataloader_idx)  # (it updates the tracker)
        if changed:  # Lightning's would name it "Validation DataLoader 0"
            bar = self.val_progress_bar
            bar.reset(total=convert_inf(self.total_val_batches_current_dataloader))
            bar.set_description(f"{self.description}: validate on set {dataloader_idx + 1}")

    def on_train_epoch_start(self, trainer: L.Trainer, *_: Any) -> None:
        pass  # Lightning's would reset the bar at every pass over the pair tables

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        bar = self.train_progress_bar
        if bar is not None and not bar.disable and trainer.global_step != bar.n:
            bar.n = trainer.global_step
            bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
            bar.refresh()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pass  # the bar lives for the whole fit; it closes at on_train_end
