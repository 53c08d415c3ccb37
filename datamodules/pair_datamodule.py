"""The pair stream: pair tables (parquet) -> batches of decoded, transformed video pairs.

Memory stays flat as the pool grows: the tables are read in record batches, never whole, and
shuffling uses a bounded buffer. Each (rank, worker) takes every k-th row, k = ranks x workers, so
DDP ranks and loader workers see disjoint shares that together cover each table once per epoch.
A pair whose video cannot be decoded is skipped and counted: each sample carries `skipped`, the
number of pairs its worker dropped since its previous sample, and a batch carries their sum.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import lightning as L
import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from datamodules.frame_sampling import Sampler, UniformFrames, read_clip
from datamodules.transforms import VideoTransform
from datamodules.video_reader import VideoReadError

_COLUMNS = ["first_id", "second_id", "first_path", "second_path", "level", "soft_label", "source"]


class PairStream(IterableDataset):
    """Iterates the pairs of one or more pair tables as dicts of tensors, shuffled per epoch."""

    def __init__(
        self,
        tables: Sequence[str | os.PathLike],
        sampler: Sampler,
        transform: Callable[[np.ndarray], torch.Tensor],
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.tables = [str(t) for t in tables]
        self.sampler, self.transform = sampler, transform
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size  # None: from torch.distributed when iterated
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle order per epoch (call before the loader starts its workers)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, shards = self._shard()
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        skipped = 0
        for row in _shuffled(self._rows(shard, shards), self.shuffle_buffer, rng):
            try:
                first = self.transform(read_clip(row["first_path"], self.sampler))
                second = self.transform(read_clip(row["second_path"], self.sampler))
            except VideoReadError:
                skipped += 1  # counted and reported with the next sample, never fatal
                continue
            yield {**row, "first": first, "second": second, "skipped": skipped}
            skipped = 0

    def _shard(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        return rank * workers + worker, world * workers

    def _rows(self, shard: int, shards: int) -> Iterator[dict[str, Any]]:
        index = 0
        for table in self.tables:
            for batch in pq.ParquetFile(table).iter_batches(batch_size=1024, columns=_COLUMNS):
                for row in batch.to_pylist():
                    if index % shards == shard:
                        yield row
                    index += 1


def _shuffled(rows: Iterator[dict], size: int, rng: np.random.Generator) -> Iterator[dict]:
    """Buffer shuffle: keep `size` rows, yield a random one as each new row arrives."""
    buffer: list[dict] = []
    for row in rows:
        if len(buffer) < size:
            buffer.append(row)
            continue
        i = int(rng.integers(size))
        yield buffer[i]
        buffer[i] = row
    rng.shuffle(buffer)
    yield from buffer


def collate_pairs(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack `first`/`second` into `(B, T, C, H, W)`; labels into tensors; ids stay lists."""
    return {
        "first": torch.stack([s["first"] for s in samples]),
        "second": torch.stack([s["second"] for s in samples]),
        "level": torch.tensor([s["level"] for s in samples], dtype=torch.long),
        "soft_label": torch.tensor([s["soft_label"] for s in samples], dtype=torch.float32),
        "first_id": [s["first_id"] for s in samples],
        "second_id": [s["second_id"] for s in samples],
        "source": [s["source"] for s in samples],
        "skipped": sum(s["skipped"] for s in samples),
    }


class PairDataModule(L.LightningDataModule):
    """Streams training pairs from pair tables for the student."""

    def __init__(
        self,
        train_pairs: Sequence[str | os.PathLike],
        frames: int = 8,
        transform: VideoTransform | None = None,
        batch_size: int = 4,
        workers: int = 2,
        shuffle_buffer: int = 256,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_pairs = list(train_pairs)
        self.sampler = UniformFrames(frames)
        self.transform = transform or VideoTransform()
        self.batch_size, self.workers = batch_size, workers
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.stream: PairStream | None = None

    def train_dataloader(self) -> DataLoader:
        self.stream = PairStream(
            self.train_pairs, self.sampler, self.transform, self.shuffle_buffer, self.seed
        )
        if self.trainer is not None:  # with reload_dataloaders_every_n_epochs=1, a new order
            self.stream.set_epoch(self.trainer.current_epoch)
        return DataLoader(
            self.stream,
            batch_size=self.batch_size,
            num_workers=self.workers,
            collate_fn=collate_pairs,
            persistent_workers=False,  # workers are re-made each epoch with the new epoch's order
        )
