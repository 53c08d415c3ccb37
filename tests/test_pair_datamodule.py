"""The pair stream: every pair once per epoch across workers and ranks, broken pairs counted."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from datamodules._ffmpeg import encode_frames
from datamodules.frame_sampling import UniformFrames
from datamodules.pair_datamodule import PairDataModule, PairStream
from datamodules.transforms import VideoTransform
from tests.videos import real_clip

TRANSFORM = VideoTransform(resize=32, crop=32)


@pytest.fixture(scope="module")
def pair_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pairs")
    videos = []
    for i, name in enumerate(["bikes", "carphone", "bigbuckbunny"] * 2):
        clip = real_clip(name, frames=6, height=48, start=6 * i)
        videos.append(str(encode_frames(clip, 25, d / f"v{i}.mp4")))
    broken = d / "broken.mp4"
    broken.write_text("not a video")
    rows = [(f"v{i}", f"v{j}", videos[i], videos[j], (i + j) % 5, 0.5, "ensemble")
            for i in range(6) for j in range(i + 1, 6)]  # fmt: skip
    rows += [("v0", "broken", videos[0], str(broken), 2, 0.5, "ensemble")] * 2
    table = pd.DataFrame(rows, columns=["first_id", "second_id", "first_path", "second_path",
                                        "level", "soft_label", "source"])  # fmt: skip
    path = d / "pairs.parquet"
    table.to_parquet(path, row_group_size=4)  # several row groups, as a large table has
    return path


def keys(batches: list[dict]) -> list[tuple[str, str]]:
    return [k for b in batches for k in zip(b["first_id"], b["second_id"], strict=True)]


def test_batches_cover_every_pair_once_and_count_the_broken(pair_table: Path) -> None:
    data = PairDataModule([pair_table], frames=4, transform=TRANSFORM, batch_size=4, workers=2)
    batches = list(data.train_dataloader())
    assert sorted(keys(batches)) == sorted((f"v{i}", f"v{j}") for i in range(6)
                                           for j in range(i + 1, 6))  # fmt: skip
    assert sum(b["skipped"] for b in batches) == 2
    b = batches[0]
    assert b["first"].shape[1:] == (4, 3, 32, 32) and b["first"].dtype == torch.float32
    assert b["level"].dtype == torch.long and b["soft_label"].shape == b["level"].shape


def test_ranks_see_disjoint_shares(pair_table: Path) -> None:
    def share(rank: int) -> set:
        stream = PairStream([pair_table], UniformFrames(2), TRANSFORM, rank=rank, world_size=2)
        return {(s["first_id"], s["second_id"]) for s in stream}

    a, b = share(0), share(1)
    assert not a & b and len(a | b) == 15 and abs(len(a) - len(b)) <= 2


def test_order_is_seeded_and_changes_with_the_epoch(pair_table: Path) -> None:
    def order(seed: int, epoch: int) -> list:
        stream = PairStream([pair_table], UniformFrames(1), TRANSFORM, shuffle_buffer=8, seed=seed)
        stream.set_epoch(epoch)
        return [(s["first_id"], s["second_id"]) for s in stream]

    assert order(0, 0) == order(0, 0)
    assert order(0, 1) != order(0, 0) and sorted(order(0, 1)) == sorted(order(0, 0))
    assert order(1, 0) != order(0, 0)
