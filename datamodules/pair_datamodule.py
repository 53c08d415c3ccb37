"""The pair stream: pair tables (parquet) -> batches of decoded, transformed video pairs.

Memory stays flat as the pool grows: the tables are read in record batches, never whole, and
shuffling uses a bounded buffer. The tables are interleaved at random (each position of an epoch
draws its table in proportion to the rows that table has), so a buffer shuffle over tables read
one after another cannot spend a short run on the first table alone: a round that trains fewer
steps than an epoch still sees ensemble, synthetic and hard pairs in their proportions.
Each (rank, worker) takes every k-th row, k = ranks x workers, so DDP ranks and loader workers
see disjoint shares that together cover each table once per epoch.
A pair whose video cannot be decoded is skipped and counted: each sample carries `skipped`, the
number of pairs its worker dropped since its previous sample, and a batch carries their sum.

What a video becomes is the consumer's choice: `prepare(frames, path)` maps the decoded uint8
frames to a tensor or a dict of tensors (a student's `prepare`; a `VideoTransform` ignores the
path). Validation sets are labelled video tables scored one video at a time, broken ones dropped
and counted the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, IterableDataset, default_collate, get_worker_info

from datamodules._workers import die_with_parent, warn_if_forking_in_a_rank
from datamodules.errors import UserError
from datamodules.frame_sampling import Sampler, UniformFrames, read_clip
from datamodules.transforms import VideoTransform
from datamodules.video_reader import VideoReadError
from datamodules.video_table import load_labelled_videos

Prepare = Callable[[np.ndarray, str], Any]  # uint8 (T, H, W, 3) frames, path -> model input
Cached = Callable[[str], Any]  # path -> the prepared input kept from before, or None (decode)
_COLUMNS = ["first_id", "second_id", "first_path", "second_path", "level", "soft_label", "source"]


class PairTableError(UserError, ValueError):
    """A pair table cannot be read or lacks the pair columns; the message names the file."""


def check_pair_table(table: str | os.PathLike) -> str:
    """`table` as a string, once its footer shows a parquet file with the pair columns; else a
    PairTableError naming the file and what is wrong (read before any video is decoded)."""
    try:
        names = set(pq.read_schema(table).names)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise PairTableError(f"{table}: not a readable pair table ({err}); make one with "
                         "`w2svqa pairs`") from err  # fmt: skip
    missing = [c for c in _COLUMNS if c not in names]
    if missing:
        raise PairTableError(f"{table}: not a pair table, it lacks the columns {missing}")
    return str(table)


class PairStream(IterableDataset):
    """Iterates the pairs of one or more pair tables as dicts of tensors, shuffled per epoch."""

    def __init__(
        self,
        tables: Sequence[str | os.PathLike],
        sampler: Sampler,
        prepare: Prepare,
        shuffle_buffer: int = 256,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        cached: Cached | None = None,
    ) -> None:
        self.tables = [str(t) for t in tables]
        self.sampler, self.prepare, self.cached = sampler, prepare, cached
        self.shuffle_buffer, self.seed = shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size  # None: from torch.distributed when iterated
        self.epoch = 0
        self.resume_batches, self.batch_size = 0, 1

    def resume_after(self, batches: int, batch_size: int) -> None:
        """Start this epoch after the first `batches` batches (of `batch_size` samples) that a
        killed run consumed: the same samples follow as in an uninterrupted run."""
        self.resume_batches, self.batch_size = batches, batch_size

    def set_epoch(self, epoch: int) -> None:
        """A new shuffle order per epoch (call before the loader starts its workers)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, shards = self._shard()
        rng = np.random.default_rng([self.seed, self.epoch, shard])
        skipped = 0
        # The loader takes batches from its workers in turn, worker 0 first: the worker whose
        # turn came next when the run was killed plays worker 0 now (see `_shard`), and each
        # drops the batches it had made.
        info = get_worker_info()
        workers = info.num_workers if info else 1
        role = shard % workers
        drop = max(0, -(-(self.resume_batches - role) // workers)) * self.batch_size
        for row in _shuffled(self._rows(shard, shards), self.shuffle_buffer, rng):
            try:
                first = self._load(row["first_path"])
                second = self._load(row["second_path"])
            except VideoReadError:
                skipped += 1  # counted and reported with the next sample, never fatal
                continue
            if drop:  # consumed before the kill: loaded (to skip exactly), not yielded
                drop -= 1
                continue
            yield {**row, "first": first, "second": second, "skipped": skipped}
            skipped = 0

    def _load(self, path: str) -> Any:
        return load_input(path, self.sampler, self.prepare, self.cached)

    def _shard(self) -> tuple[int, int]:
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            ready = dist.is_available() and dist.is_initialized()
            rank, world = (dist.get_rank(), dist.get_world_size()) if ready else (0, 1)
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        role = (worker + self.resume_batches) % workers  # the part it played before a kill
        return rank * workers + role, world * workers

    def _rows(self, shard: int, shards: int) -> Iterator[dict[str, Any]]:
        # One interleaving per epoch, the same in every rank and worker (seeded without the
        # shard), so that every k-th row of it is still a disjoint share.
        counts = [pq.ParquetFile(t).metadata.num_rows for t in self.tables]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(np.repeat(np.arange(len(counts), dtype=np.int32), counts))
        streams = [_table_rows(t) for t in self.tables]
        for index, table in enumerate(order):
            row = next(streams[table])
            if index % shards == shard:
                yield row


def _table_rows(table: str) -> Iterator[dict[str, Any]]:
    """The rows of one pair table in file order, read a record batch at a time."""
    for batch in pq.ParquetFile(table).iter_batches(batch_size=1024, columns=_COLUMNS):
        yield from batch.to_pylist()


def load_input(path: str, sampler: Sampler, prepare: Prepare, cached: Cached | None) -> Any:
    """The prepared input of the video at `path`: kept from before (`cached`), or decoded."""
    kept = cached(path) if cached is not None else None  # e.g. features: no decoding at all
    return kept if kept is not None else prepare(read_clip(path, sampler), path)


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
    """Stack `first`/`second` (e.g. into `(B, T, C, H, W)`); labels into tensors; ids stay lists."""
    return {
        "first": default_collate([s["first"] for s in samples]),
        "second": default_collate([s["second"] for s in samples]),
        "level": torch.tensor([s["level"] for s in samples], dtype=torch.long),
        "soft_label": torch.tensor([s["soft_label"] for s in samples], dtype=torch.float32),
        "first_id": [s["first_id"] for s in samples],
        "second_id": [s["second_id"] for s in samples],
        "source": [s["source"] for s in samples],
        "skipped": sum(s["skipped"] for s in samples),
    }


class LabelledVideos(Dataset):
    """A labelled video table (`video_id`, `path`, `mos`) as prepared inputs; broken videos give
    None, which `collate_labelled` drops and counts."""

    def __init__(
        self, table: pd.DataFrame, sampler: Sampler, prepare: Prepare, cached: Cached | None = None
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.sampler, self.prepare, self.cached = sampler, prepare, cached

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any] | None:
        row = self.table.iloc[i]
        try:
            video = load_input(row.path, self.sampler, self.prepare, self.cached)
        except VideoReadError:
            return None
        return {"video": video, "mos": float(row.mos), "video_id": str(row.video_id)}


def collate_labelled(samples: list[dict[str, Any] | None]) -> dict[str, Any]:
    """Batch the readable videos; `skipped` counts the unreadable ones."""
    ok = [s for s in samples if s is not None]
    batch: dict[str, Any] = {
        "skipped": len(samples) - len(ok),
        "video_id": [s["video_id"] for s in ok],
    }
    if ok:
        batch["video"] = default_collate([s["video"] for s in ok])
        batch["mos"] = torch.tensor([s["mos"] for s in ok], dtype=torch.float32)
    return batch


class PairDataModule(L.LightningDataModule):
    """Streams training pairs from pair tables, and labelled validation sets, for the student."""

    def __init__(
        self,
        train_pairs: Sequence[str | os.PathLike],
        val_sets: Mapping[str, str | os.PathLike | pd.DataFrame] | None = None,
        sampler: Sampler | None = None,
        prepare: Prepare | None = None,
        frames: int = 8,
        transform: VideoTransform | None = None,
        batch_size: int = 4,
        val_batch_size: int = 8,
        workers: int = 2,
        shuffle_buffer: int = 256,
        seed: int = 0,
        cached: Cached | None = None,
    ) -> None:
        """`sampler`/`prepare` default to `frames` uniform frames through `transform`;
        `val_sets`: name -> labelled table (file or DataFrame with `video_id, path, mos`)."""
        super().__init__()
        self.train_pairs = [check_pair_table(t) for t in train_pairs]
        self.val_sets = {
            name: t if isinstance(t, pd.DataFrame) else load_labelled_videos(t)
            for name, t in (val_sets or {}).items()
        }
        self.sampler = sampler or UniformFrames(frames)
        self.prepare = prepare or transform or VideoTransform()
        self.batch_size, self.val_batch_size, self.workers = batch_size, val_batch_size, workers
        self.shuffle_buffer, self.seed, self.cached = shuffle_buffer, seed, cached
        self.stream: PairStream | None = None

    @classmethod
    def for_student(cls, student: Any, train_pairs: Sequence[str | os.PathLike], **kwargs: Any):
        """Pairs and validation videos decoded and prepared the way `student` wants them."""
        return cls(
            train_pairs, sampler=student.sampler(), prepare=student.prepare,
            cached=student.cached_input, **kwargs,
        )  # fmt: skip

    @property
    def val_names(self) -> list[str]:
        return list(self.val_sets)

    def train_dataloader(self) -> DataLoader:
        warn_if_forking_in_a_rank(self.workers)
        self.stream = PairStream(
            self.train_pairs, self.sampler, self.prepare, self.shuffle_buffer, self.seed,
            cached=self.cached,
        )  # fmt: skip
        if self.trainer is not None:  # with reload_dataloaders_every_n_epochs=1, a new order
            self.stream.set_epoch(self.trainer.current_epoch)
            loop = self.trainer.fit_loop.epoch_loop
            if loop.restarting:  # resumed mid-epoch from a checkpoint
                self.stream.resume_after(loop.batch_progress.current.processed, self.batch_size)
        return DataLoader(
            self.stream,
            batch_size=self.batch_size,
            num_workers=self.workers,
            collate_fn=collate_pairs,
            persistent_workers=False,  # workers are re-made each epoch with the new epoch's order
            worker_init_fn=die_with_parent,
        )

    def val_dataloader(self) -> list[DataLoader]:
        return [
            DataLoader(
                LabelledVideos(table, self.sampler, self.prepare, self.cached),
                batch_size=self.val_batch_size,
                num_workers=self.workers,
                collate_fn=collate_labelled,
                shuffle=False,
                worker_init_fn=die_with_parent,
            )
            for table in self.val_sets.values()
        ]
