"""Labelling throughput: videos per second for each classical teacher on the sample corpus's pool.

Two numbers per classical teacher: the whole labelling job (`label_videos`: Lightning predict,
decoding in loader workers, part files, merge) and the teacher alone on frames decoded
beforehand, so a reader can tell decoding and scoring cost apart. Then the Q-Align teacher's
weight memory in full precision and in 4-bit nf4. Build the corpus first (`w2svqa data sample`).

    .venv/bin/python -m benchmarks.label_throughput --corpus data/sample --videos 120
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from benchmarks._table import markdown_table
from datamodules.video_reader import VideoReader
from datamodules.video_table import load_videos
from lightning_modules.scoring import label_videos
from lightning_modules.teachers import create_teacher, list_teachers
from lightning_modules.teachers.base import VideoItem

CLASSICAL = ("blockiness", "blur", "exposure", "niqe", "noise", "stutter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/sample"))
    parser.add_argument("--videos", type=int, default=120, help="pool videos to label")
    parser.add_argument("--workers", type=int, default=2, help="decoding processes")
    parser.add_argument("--vlm_videos", type=int, default=4, help="videos for the VLM rows")
    args = parser.parse_args()
    pool = args.corpus / "pool.parquet"
    if not pool.exists():
        raise SystemExit(f"{pool}: not found; build the corpus first: w2svqa data sample")
    videos = load_videos(pool).iloc[: args.videos]
    rows = []
    for name in (n for n in CLASSICAL if n in list_teachers()):
        teacher = create_teacher(name)
        with tempfile.TemporaryDirectory() as tmp:
            summary = label_videos(teacher, videos, Path(tmp) / "scores.parquet",
                                   workers=args.workers)  # fmt: skip
        items = [_decoded(teacher, row.video_id, row.path) for row in videos.itertuples()]
        start = time.perf_counter()
        for item in items:
            teacher.score_native(item)
        scoring = time.perf_counter() - start
        rows.append({
            "teacher": name,
            "videos": len(videos),
            "job videos/s": len(videos) / summary.seconds,
            "scoring only videos/s": len(items) / scoring,
            "frames per video": len(items[0].frames),
        })  # fmt: skip
    print(f"\nPool of {args.corpus} (320x180, 2 s clips); job: {args.workers} decoding workers, "
          "including Lightning start-up\n")  # fmt: skip
    print(markdown_table(rows))
    print("\nQ-Align teacher on a tiny random LLaVA-OneVision (memory of the weights; on a GPU, "
          "`python -m benchmarks.gpu_check` measures the real-shaped model)\n")  # fmt: skip
    print(markdown_table(_vlm_rows(args.vlm_videos), digits=4))


def _vlm_rows(videos: int) -> list[dict]:
    """Full precision against 4-bit nf4 (bitsandbytes runs it on CPU too)."""
    from argparse import Namespace

    from benchmarks.gpu_check import SMOKE, teacher_rows
    from tests.tiny_models import build_tiny_llava_onevision

    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_llava_onevision(Path(tmp) / "vlm"))
        rows = teacher_rows(model, Namespace(videos=videos), SMOKE)
    for row in rows:
        row["weights (KiB)"] = row.pop("weights (GiB)") * 2**20
        row.pop("peak mem (GiB)")
    return rows


def _decoded(teacher, video_id: str, path: str) -> VideoItem:
    with VideoReader(path) as reader:
        frames = reader.get_frames(teacher.sampler().indices(reader.info))
        return VideoItem(video_id, path, frames, reader.info)


if __name__ == "__main__":
    main()
