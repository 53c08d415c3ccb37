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


def test_labelled_tables_name_the_file_and_the_problem(tmp_path: Path) -> None:
    from datamodules.video_table import VideoTableError, load_labelled_videos

    good = tmp_path / "good.csv"
    good.write_text("path,vmaf\na.mp4,80\nb.mp4,40\n")
    table = load_labelled_videos(good)
    assert table.mos.tolist() == [80.0, 40.0] and table.path[0] == str(tmp_path / "a.mp4")
    dover = tmp_path / "labels.txt"
    dover.write_text("a.mp4, -1, -1, 3.5\n")
    assert load_labelled_videos(dover).mos.tolist() == [3.5]
    unlabelled = tmp_path / "unlabelled.csv"
    unlabelled.write_text("path,width\na.mp4,320\n")
    with pytest.raises(VideoTableError, match="unlabelled.csv: no label column"):
        load_labelled_videos(unlabelled)
    with pytest.raises(VideoTableError, match="good.csv: no label column 'mos'"):
        load_labelled_videos(good, label="mos")
    text = tmp_path / "text.csv"
    text.write_text("path,mos\na.mp4,great\nb.mp4,2\n")
    with pytest.raises(VideoTableError, match="text.csv: 1 rows without a numeric label.*a.mp4"):
        load_labelled_videos(text)
    with pytest.raises(VideoTableError, match="missing.csv: no such label table"):
        load_labelled_videos(tmp_path / "missing.csv")


def test_a_broken_pair_table_is_named_before_any_video_is_read(pair_table, tmp_path) -> None:
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(ValueError, match=r"broken.parquet: not a readable pair table"):
        PairDataModule([pair_table, broken])
    with pytest.raises(ValueError, match=r"missing.parquet: not a readable pair table"):
        PairDataModule([tmp_path / "missing.parquet"])
    other = tmp_path / "scores.parquet"
    pd.DataFrame({"video_id": ["a"], "score": [1.0]}).to_parquet(other)
    with pytest.raises(ValueError, match=r"scores.parquet: not a pair table, it lacks .*'level'"):
        PairDataModule([other])


def test_broken_validation_videos_are_dropped_and_counted(pair_table: Path) -> None:
    videos = pd.read_parquet(pair_table)
    table = pd.DataFrame({"video_id": ["v0", "broken"], "path": [videos.first_path[0],
                          videos.second_path.iloc[-1]], "mos": [1.0, 2.0]})  # fmt: skip
    data = PairDataModule([pair_table], val_sets={"val": table}, frames=2, transform=TRANSFORM,
                          workers=0)  # fmt: skip
    (batch,) = list(data.val_dataloader()[0])
    assert batch["skipped"] == 1 and batch["video_id"] == ["v0"] and batch["mos"].tolist() == [1.0]
