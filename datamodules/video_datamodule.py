"""Videos -> decoded frames for scoring jobs (`Trainer.predict`): one item per video, never fatal.

A video that cannot be read becomes an item carrying the reason instead of frames, so that one
broken file in a pool of thousands is recorded and skipped rather than stopping the job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules._workers import die_with_parent, warn_if_forking_in_a_rank
from datamodules.frame_sampling import Sampler
from datamodules.video_reader import VideoReader, VideoReadError
from lightning_modules.teachers.base import VideoItem


class VideoScoringDataset(Dataset):
    """Decodes the frames `sampler` picks from each video of a (`video_id`, `path`) table."""

    def __init__(
        self,
        videos: pd.DataFrame,
        sampler: Sampler | None,
        cached: Callable[[str], Any] | None = None,
    ) -> None:
        """`cached(path)`: the scorer's cached input for a video, or None to decode it."""
        self.ids = videos["video_id"].astype(str).tolist()
        self.paths = videos["path"].astype(str).tolist()
        self.sampler, self.cached = sampler, cached

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> VideoItem:
        item = VideoItem(self.ids[i], self.paths[i])
        if self.sampler is None:
            return item
        try:
            if self.cached is not None:
                item.prepared = self.cached(self.paths[i])
                if item.prepared is not None:
                    return item
            with VideoReader(self.paths[i]) as reader:
                item.info = reader.info
                item.frames = reader.get_frames(self.sampler.indices(reader.info))
        except VideoReadError as err:
            item.error = err.reason
        except Exception as err:  # a decoder bug must not stop a run of thousands either
            item.error = f"{type(err).__name__}: {err}"
        return item


def _as_list(items: list[VideoItem]) -> list[VideoItem]:
    # Frames differ in size from video to video: a batch stays a list, not a stacked tensor.
    return items


class VideoScoringDataModule(L.LightningDataModule):
    """The predict loader of a scoring job: videos in table order, decoded in worker processes."""

    def __init__(
        self,
        videos: pd.DataFrame,
        sampler: Sampler | None,
        batch_size: int = 4,
        workers: int = 2,
        cached: Callable[[str], Any] | None = None,
    ) -> None:
        super().__init__()
        self.videos, self.sampler, self.cached = videos, sampler, cached
        self.batch_size, self.workers = batch_size, workers

    def transfer_batch_to_device(self, batch: Any, device: torch.device, idx: int) -> Any:
        return batch  # numpy frames and metadata: a teacher moves what it needs to its device

    def predict_dataloader(self) -> DataLoader:
        warn_if_forking_in_a_rank(self.workers)
        return DataLoader(
            VideoScoringDataset(self.videos, self.sampler, self.cached),
            batch_size=self.batch_size,
            num_workers=self.workers,
            collate_fn=_as_list,
            shuffle=False,
            worker_init_fn=die_with_parent,
        )
