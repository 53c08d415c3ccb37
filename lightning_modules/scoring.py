"""The labelling job: a teacher scores a table of videos through `Trainer.predict`, so the same code
labels on one CPU, on N GPUs and on several nodes.

Scores go to one parquet table per teacher (`video_id, path, score, native, status, error`).
Every batch is written at once as a part file beside the table (`TABLE.parts/`), and the parts
are merged into the table atomically at the end; a killed run loses at most the batch in flight,
and a re-run scores only the videos without a valid score. A video that cannot be decoded, makes
the teacher raise, or gets a NaN or infinite score is recorded with its reason and skipped.

Under torchrun every rank labels a disjoint shard of the videos (whole batches, dealt in turn, so
the batches are those one process would make and no video is scored twice) into its own part files;
after a barrier rank 0 merges them into the table one process would have written. A killed rank's
re-run scores only its own shard's missing videos.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm, convert_inf

from datamodules._faults import kill_point
from datamodules._io import atomic_write
from datamodules._progress import show_progress
from datamodules.video_datamodule import VideoScoringDataModule
from lightning_modules._bars import StderrProgressBar
from lightning_modules._quiet import quiet_lightning
from lightning_modules.teachers.base import Teacher, VideoItem

COLUMNS = ["video_id", "path", "score", "native", "status", "error"]


class TeacherScoringModule(L.LightningModule):
    """Wraps a teacher for `Trainer.predict`: a batch of VideoItems in, one record per video out."""

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        self.teacher = teacher  # an nn.Module teacher becomes a submodule and follows the device
        # under torchrun a rank whose shard is all scored (a resumed job) has nothing to predict
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def predict_step(self, batch: list[VideoItem], batch_idx: int) -> list[dict[str, Any]]:
        records = [self._record(item) for item in batch]
        readable = [i for i, item in enumerate(batch) if item.error is None]
        with torch.inference_mode():
            natives = self.teacher.score_native_batch([batch[i] for i in readable])
        for i, native in zip(readable, natives, strict=True):
            records[i] = self._scored(records[i], native)
        return records

    @staticmethod
    def _record(item: VideoItem) -> dict[str, Any]:
        return {"video_id": item.video_id, "path": item.path, "score": math.nan,
                "native": math.nan, "status": "failed", "error": item.error}  # fmt: skip

    def _scored(self, record: dict[str, Any], native: float | Exception) -> dict[str, Any]:
        name = self.teacher.name
        if isinstance(native, Exception):
            return {**record, "error": f"{name} failed: {type(native).__name__}: {native}"}
        native = float(native)
        if not math.isfinite(native):
            return {**record, "error": f"{name} gave a non-finite score ({native})"}
        score = self.teacher.to_score(native)
        return {**record, "score": score, "native": native, "status": "ok", "error": None}


class ScoreTableWriter(BasePredictionWriter):
    """Writes each batch's records as a part file at once, so a kill loses at most one batch."""

    def __init__(self, parts: Path) -> None:
        super().__init__(write_interval="batch")
        self.parts = parts
        self.run = f"{time.time_ns()}"

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ) -> None:
        name = f"{self.run}-rank{trainer.global_rank}-{batch_idx:08d}.parquet"
        table = pd.DataFrame(prediction, columns=COLUMNS)
        atomic_write(self.parts / name, lambda p: table.to_parquet(p, index=False))
        kill_point("label")


class ScoringProgressBar(StderrProgressBar):
    """Lightning's predict bar, saying what it scores ("blur: 120 videos") instead of "Predicting
    DataLoader 0"."""

    def init_predict_tqdm(self) -> Tqdm:
        total = convert_inf(sum(self.trainer.num_predict_batches))
        return self.stderr_bar(self.description, total, "batch")

    def on_predict_batch_start(self, *args: Any, **kwargs: Any) -> None:
        pass  # Lightning's would reset the bar and rename it "Predicting DataLoader 0"


@dataclass(frozen=True)
class LabelSummary:
    """What one labelling run did."""

    table: Path
    scored: int  # scored in this run
    skipped: int  # already had a valid score
    failed: int  # failed in this run (recorded in the table with the reason)
    seconds: float


def read_scores(table: str | os.PathLike) -> pd.DataFrame:
    """A teacher's score table with the parts of an unfinished run merged in (latest record wins,
    a valid score over a failure)."""
    table = Path(table)
    frames = [_read_score_file(table)] if table.exists() else []
    parts = _parts_dir(table)
    if parts.is_dir():
        frames += [_read_score_file(p) for p in sorted(parts.glob("*.parquet"))]
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    scores = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    scores["_ok"] = scores["status"].eq("ok")
    # stable sort: within ok/failed the later record (a re-run) stays last and wins
    scores = scores.sort_values("_ok", kind="stable").drop_duplicates("video_id", keep="last")
    return scores.drop(columns="_ok").sort_values("video_id").reset_index(drop=True)[COLUMNS]


def label_videos(
    teacher: Teacher,
    videos: pd.DataFrame,
    out: str | os.PathLike,
    batch_size: int = 4,
    workers: int = 2,
    trainer: dict[str, Any] | None = None,
    description: str | None = None,
    progress: bool | None = None,
) -> LabelSummary:
    """Score the videos of `videos` (`video_id`, `path`) that `out` has no valid score for.

    `description`: what the progress bar says it scores (default: the teacher's name and the
    number of videos to score); `progress`: show the bar (None: when stderr is a terminal, and
    never with `trainer={"enable_progress_bar": False}`). Under torchrun every rank must call it
    with the same `videos`: each scores its shard, and rank 0 alone merges and counts (the other
    ranks return a summary of zeros)."""
    start = time.perf_counter()
    out = Path(out)
    done = read_scores(out)
    ok = set(done.loc[done.status == "ok", "video_id"])
    missing = ~videos["video_id"].astype(str).isin(ok).to_numpy()
    todo = videos[missing].reset_index(drop=True)
    rank, world = process_rank()
    # under torchrun every rank joins the job even with nothing of its own to score: the barrier
    # below is what tells rank 0 that all parts are on disk
    if len(todo) or world > 1:
        mine = videos[missing & (shard_of(len(videos), batch_size, world) == rank)]
        quiet_lightning()
        settings = {
            "accelerator": "cpu", "devices": 1, "logger": False, "enable_model_summary": False,
            "enable_checkpointing": False, **_ranks_settings(world), **(trainer or {}),
        }  # fmt: skip
        callbacks: list[L.Callback] = [ScoreTableWriter(_parts_dir(out))]
        if settings.get("enable_progress_bar", True) and show_progress(progress):
            on = f" on {world} processes" if world > 1 else ""
            text = description or f"{teacher.name}: {len(todo)} videos{on}"
            callbacks.append(ScoringProgressBar(text))
        else:  # without it Lightning would add its own bar
            settings["enable_progress_bar"] = False
        runner = L.Trainer(**settings, callbacks=callbacks)
        data = VideoScoringDataModule(
            mine.reset_index(drop=True), teacher.sampler(), batch_size, workers,
            cached=teacher.cached_input,
        )  # fmt: skip
        # Lightning's setup barrier comes before any batch, so every rank has read the table above
        # before any rank writes a part
        runner.predict(TeacherScoringModule(teacher), datamodule=data, return_predictions=False)
        runner.strategy.barrier()  # every rank's parts are on disk before rank 0 merges them
        if runner.global_rank != 0:
            return LabelSummary(out, 0, 0, 0, time.perf_counter() - start)
    merged = read_scores(out)
    atomic_write(out, lambda p: merged.to_parquet(p, index=False))
    _remove_parts(out)
    this_run = merged[merged.video_id.isin(todo.video_id.astype(str))]
    scored = int((this_run.status == "ok").sum())
    return LabelSummary(
        table=out,
        scored=scored,
        skipped=len(videos) - len(todo),
        failed=len(this_run) - scored,
        seconds=time.perf_counter() - start,
    )


def process_rank() -> tuple[int, int]:
    """(global rank, world size) of this process under torchrun; (0, 1) when not distributed."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def shard_of(n_videos: int, batch_size: int, world: int) -> np.ndarray:
    """The rank that scores each of `n_videos` videos: blocks of `batch_size` dealt to the ranks in
    turn. A rank's videos in order make the same batches as one process would (so a batched
    network scores them with the same numbers), and no video goes to two ranks."""
    return (np.arange(n_videos) // max(batch_size, 1)) % world


def _ranks_settings(world: int) -> dict[str, Any]:
    """Trainer settings for one rank of torchrun's world (none outside torchrun). The loader is
    not wrapped in Lightning's distributed sampler: each rank is given its shard already."""
    if world == 1:
        return {}
    local = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    return {"accelerator": "auto", "devices": local, "num_nodes": world // local,
            "strategy": "ddp", "use_distributed_sampler": False}  # fmt: skip


def _read_score_file(path: Path) -> pd.DataFrame:
    """One score table or part file; anything else is an error naming the file and the fix."""
    try:
        frame = pd.read_parquet(path)
    except Exception as err:  # pyarrow raises several types for a file that is not parquet
        raise ValueError(
            f"{path}: not a score table ({type(err).__name__}); "
            "point --out at a new file or delete this one to re-score"
        ) from err
    missing = set(COLUMNS) - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: not a score table (missing columns {sorted(missing)})")
    return frame


def _parts_dir(table: Path) -> Path:
    return table.with_name(table.name + ".parts")


def _remove_parts(table: Path) -> None:
    parts = _parts_dir(table)
    if parts.is_dir():
        for p in parts.glob("*.parquet"):
            p.unlink()
        parts.rmdir()
