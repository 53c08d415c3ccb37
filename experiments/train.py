"""Train one student on pair tables, validate on labelled sets, save it as a student file.

This is one round's training stage; the round runner calls it, and `w2svqa train` exposes it. The
student is validated before and after training, so every run reports what training bought.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch

from datamodules._io import atomic_write
from datamodules._progress import show_progress
from datamodules.pair_datamodule import PairDataModule
from lightning_modules.checkpoints import save_student
from lightning_modules.losses import PairLoss
from lightning_modules.students.base import Student
from lightning_modules.training import OptimConfig, PairwiseTrainingModule
from lightning_modules.training_callbacks import (
    MetricSink,
    TrainingCurves,
    TrainingProgressBar,
    curve_file,
)


@dataclass(frozen=True)
class TrainResult:
    """What one training stage produced."""

    checkpoint: Path
    before: dict[str, float]  # validation metrics of the untrained student: {"NAME/srcc": x, ...}
    after: dict[str, float]
    steps: int
    seconds: float
    # a closed-form fit's pairs, videos and pair accuracy; empty after SGD
    fit: dict[str, float] = field(default_factory=dict)


def train_student(
    student: Student,
    loss: PairLoss,
    train_pairs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    val_sets: Mapping[str, str | os.PathLike | pd.DataFrame] | None = None,
    optim: OptimConfig | None = None,
    steps: int = 200,
    batch_size: int = 8,
    workers: int = 2,
    seed: int = 0,
    trainer: Mapping[str, Any] | None = None,
    checkpoint_every: int | None = None,
    curve_every: int = 10,
    log_metrics: MetricSink | None = None,
    step_offset: int = 0,
    description: str = "train",
    progress: bool | None = None,
) -> TrainResult:
    """Fit `student` for `steps` optimiser steps on the pairs of `train_pairs`; write `out`
    (`.safetensors`). `trainer`: extra `lightning.Trainer` arguments (accelerator, devices,
    strategy, precision, logger, ...). `checkpoint_every`: save a resumable checkpoint every so
    many steps beside `out` (`OUT.lightning/last.ckpt`); a call after a kill resumes from it,
    mid-epoch, with the same pairs and random draws, and the folder goes once `out` is written.
    `curve_every`: every so many steps, the loss, learning rate and gradient norm go to
    `OUT_curve.csv` and to `log_metrics(metrics, step_offset + step)` (e.g. an MLflow run's), and
    so do the validation metrics before (at `step_offset`) and after training. `description`:
    what the step bar says ("round 2: train"); `progress`: show it (None: when stderr is a
    terminal, and never with `trainer={"enable_progress_bar": False}`)."""
    start = time.perf_counter()
    out = Path(out)
    folder = out.parent / f"{out.stem}.lightning"
    L.seed_everything(seed, workers=True, verbose=False)
    data = PairDataModule.for_student(
        student, train_pairs, val_sets=val_sets, batch_size=batch_size, workers=workers, seed=seed
    )
    module = PairwiseTrainingModule(student, loss, optim, val_names=data.val_names)
    settings = {
        "accelerator": "cpu", "devices": 1, "max_steps": steps, "max_epochs": -1,
        "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
        "default_root_dir": str(folder),
        "reload_dataloaders_every_n_epochs": 1,  # a new pair order every pass over the tables
        "limit_val_batches": 0,  # validation runs before and after fit, not per epoch
        "num_sanity_val_steps": 0, **(trainer or {}),
    }  # fmt: skip
    callbacks = list(settings.pop("callbacks", None) or [])
    callbacks.append(TrainingCurves(curve_every, curve_file(out), log_metrics, step_offset))
    if settings.get("enable_progress_bar", True) and show_progress(progress):
        callbacks.append(TrainingProgressBar(description))
    else:  # without it Lightning would add its own bar
        settings["enable_progress_bar"] = False
    if checkpoint_every:
        from lightning.pytorch.callbacks import ModelCheckpoint

        settings["enable_checkpointing"] = True
        every = ModelCheckpoint(
            dirpath=folder,
            filename="last",
            save_top_k=1,
            every_n_train_steps=checkpoint_every,
            enable_version_counter=False,  # always last.ckpt, replaced
        )
        callbacks.append(every)
    runner = L.Trainer(**settings, callbacks=callbacks)
    sink = log_metrics if runner.is_global_zero else None
    before = _validate(runner, module, data)
    _log_validation(sink, before, step_offset)
    if getattr(student, "fits_in_closed_form", False):  # one exact solve, no optimiser steps
        fit = fit_readout_on_pairs(student, train_pairs, description, progress)
        if runner.is_global_zero:  # beside the student, so a run that skips the round logs it
            atomic_write(fit_file(out), lambda p: p.write_text(json.dumps(fit)))
        if sink is not None:
            sink(_fit_metrics(fit), step_offset)
        zero = None
    else:
        resume = _resumable(folder / "last.ckpt")
        # our own checkpoint, still read as data only; DeepSpeed's shards are pickles by design
        runner.fit(module, datamodule=data, ckpt_path=resume, weights_only=not zero_folder(resume))
        zero, fit = _save_zero_shards(runner, out), {}
    after = _validate(runner, module, data)
    _log_validation(sink, after, step_offset + runner.global_step)
    if runner.is_global_zero:
        _save(module, out, zero)
        if folder.is_dir():
            import shutil

            shutil.rmtree(folder, ignore_errors=True)  # the student file is the output now
    runner.strategy.barrier()
    return TrainResult(out, before, after, runner.global_step, time.perf_counter() - start, fit)


ENSEMBLE_SOURCE = "ensemble"  # pairs whose `delta` is the teachers' mean difference


def fit_file(student_file: str | os.PathLike) -> Path:
    """What a closed-form fit reports (pairs, videos, pair accuracy), kept beside the student file
    it wrote: `STEM_fit.json` (the SGD curve's counterpart, `STEM_curve.csv`)."""
    student_file = Path(student_file)
    return student_file.with_name(f"{student_file.stem}_fit.json")


def replay_fit(path: str | os.PathLike, sink: MetricSink, step: int) -> bool:
    """Send a fit file's numbers to `sink` as `train/*` at `step`; False when there is none (an
    SGD round, or a file that is not a fit's JSON object: a record only, said in a warning)."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        fit = json.loads(path.read_text())
        metrics = _fit_metrics({str(k): float(v) for k, v in fit.items()})
    except (OSError, ValueError, TypeError, AttributeError) as err:
        warnings.warn(f"{path}: not a fit record ({type(err).__name__}: {err}); not logged",
                      stacklevel=2)  # fmt: skip
        return False
    sink(metrics, step)
    return True


def _fit_metrics(fit: Mapping[str, float]) -> dict[str, float]:
    return {f"train/{k}": v for k, v in fit.items()}


def fit_readout_on_pairs(
    student: Student, train_pairs: Sequence[str | os.PathLike], description: str = "fit",
    progress: bool | None = None,
) -> dict[str, float]:  # fmt: skip
    """Fit a closed-form student (`student.fits_in_closed_form`) to every pair of `train_pairs`:
    an ensemble pair's target difference is its `delta`, any other pair's (synthetic, hard
    cases) `(level - 2) * student.level_step`, a margin rather than a difference with
    `student.level_loss` "hinge". A video that cannot be read loses its pairs,
    with a warning naming it. Returns the fit's pair count, videos and pair accuracy (the share
    of non-similar pairs it orders as their label does)."""
    import numpy as np

    from datamodules._progress import progress_bar
    from datamodules.pair_datamodule import load_input
    from datamodules.video_reader import VideoReadError

    pairs = pd.concat([_pair_targets(t) for t in train_pairs], ignore_index=True)
    from_ensemble = (pairs.source == ENSEMBLE_SOURCE).to_numpy()
    delta = np.where(from_ensemble, pairs.delta.to_numpy(float),
                     (pairs.level.to_numpy(float) - 2) * student.level_step)  # fmt: skip
    paths = pd.unique(pd.concat([pairs.first_path, pairs.second_path]))
    inputs, index, broken = [], {}, []
    sampler, cached = student.sampler(), student.cached_input
    with progress_bar(len(paths), f"{description}: features", "video", progress) as bar:
        for path in paths:
            try:
                inputs.append(load_input(path, sampler, student.prepare, cached))
                index[path] = len(inputs) - 1
            except VideoReadError as err:
                broken.append(f"{path} ({err})")
            bar.update()
    if broken:
        warnings.warn(f"{len(broken)} videos could not be read and lose their pairs: "
                      f"{'; '.join(broken[:3])}", stacklevel=2)  # fmt: skip
    first, second = pairs.first_path.map(index), pairs.second_path.map(index)
    ok = (first.notna() & second.notna() & np.isfinite(delta)).to_numpy()
    if not ok.any():
        tables = ", ".join(map(str, train_pairs))
        raise ValueError(f"no readable pair with a finite delta in {tables}")
    first, second = first[ok].to_numpy(int), second[ok].to_numpy(int)
    hinge = getattr(student, "level_loss", "squared") == "hinge"
    one_sided = ~from_ensemble[ok] if hinge else None
    student.fit_readout(inputs, first, second, delta[ok], one_sided)
    with torch.no_grad():
        scores = torch.cat([student(x[None]) for x in inputs]).numpy()
    level = pairs.level.to_numpy()[ok]
    decided = level != 2
    agree = np.sign(scores[first] - scores[second])[decided] == np.sign(level[decided] - 2)
    return {"pairs": float(ok.sum()), "videos": float(len(inputs)),
            "pair_accuracy": float(agree.mean()) if decided.any() else float("nan")}  # fmt: skip


def _pair_targets(table: str | os.PathLike) -> pd.DataFrame:
    """The columns a closed-form fit reads; `delta` NaN where the table has none (only ensemble
    pairs need one, and the ensemble always writes it)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(table).names
    frame = pd.read_parquet(table, columns=["first_path", "second_path", "level", "source",
                                            *(["delta"] if "delta" in names else [])])  # fmt: skip
    return frame if "delta" in names else frame.assign(delta=float("nan"))


def _log_validation(sink: MetricSink | None, metrics: dict[str, float], step: int) -> None:
    if sink is not None and metrics:
        sink({f"val/{k}": v for k, v in metrics.items()}, step)


def zero_folder(checkpoint: str | None) -> bool:
    return checkpoint is not None and Path(checkpoint).is_dir()


def _resumable(checkpoint: Path) -> str | None:
    """The checkpoint to resume from, if a killed run left a whole one (a kill while it was
    being written leaves a truncated zip, which is set aside and training starts over)."""
    import zipfile

    if checkpoint.is_dir():  # DeepSpeed's sharded checkpoint folder
        return str(checkpoint)
    if not checkpoint.is_file():
        return None
    if zipfile.is_zipfile(checkpoint):
        return str(checkpoint)
    broken = checkpoint.with_suffix(".broken")
    checkpoint.replace(broken)
    warnings.warn(
        f"{checkpoint}: not a whole checkpoint (cut short by a kill?); kept as {broken.name}, "
        "training starts this round over",
        stacklevel=2,
    )
    return None


def _validate(
    runner: L.Trainer, module: PairwiseTrainingModule, data: PairDataModule
) -> dict[str, float]:
    if not data.val_sets:
        return {}
    runner.limit_val_batches = 1.0  # fit keeps it at 0: no validation between epochs
    metrics = runner.validate(module, datamodule=data, verbose=False)
    runner.limit_val_batches = 0
    merged = {k: v for m in metrics for k, v in m.items()}  # one dict per validation loader
    return {k.removeprefix("val/").split("/dataloader_idx")[0]: float(v) for k, v in merged.items()}


def _save_zero_shards(runner: L.Trainer, out: Path) -> Path | None:
    """Under DeepSpeed, save the ZeRO shards now: saving is a collective (every rank writes its
    shard), and it must come before `validate` replaces the training engine."""
    from lightning.pytorch.strategies import DeepSpeedStrategy

    if not isinstance(runner.strategy, DeepSpeedStrategy):
        return None
    folder = out.with_suffix(".zero")
    runner.save_checkpoint(folder)
    return folder


def _save(module: PairwiseTrainingModule, out: Path, zero: Path | None) -> None:
    if zero is None:
        save_student(module.student, out)
        return
    import shutil

    from lightning_modules.strategies import convert_zero_checkpoint

    convert_zero_checkpoint(zero, out)  # consolidated: the shards (and optimiser state) can go
    shutil.rmtree(zero)


def validation_table(result: TrainResult) -> pd.DataFrame:
    """Before/after metrics as a table: one row per (set, metric)."""
    rows = [
        {"set": k.split("/")[0], "metric": k.split("/")[1], "before": v,
         "after": result.after.get(k, float("nan"))}
        for k, v in result.before.items()
    ]  # fmt: skip
    return pd.DataFrame(rows)
