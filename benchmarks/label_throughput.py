"""Labelling throughput: videos per second for each classical teacher on the sample corpus's pool.

Two numbers per classical teacher: the whole labelling job (`label_videos`: Lightning predict,
decoding in loader workers, part files, merge) and the teacher alone on frames decoded
beforehand, so a reader can tell decoding and scoring cost apart. Then the Q-Align teacher's
weight memory in full precision and in 4-bit nf4. Build the corpus first (`w2svqa data sample`).

`--processes 1 2` adds a table of the same jobs as `w2svqa label` commands with 1 and 2 processes
(torchrun ranks, each labelling its shard; math threads shared out, cores // N a process; each
with `--workers` decoding processes), timed from the command's start to its end (start-up in it,
as a user sees it) and as the job that rank 0 reports.

    .venv/bin/python -m benchmarks.label_throughput --corpus data/sample --videos 120
    .venv/bin/python -m benchmarks.label_throughput --teachers blur niqe --processes 1 2 --workers 0
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._table import markdown_table
from datamodules.video_reader import VideoReader
from datamodules.video_table import load_videos
from experiments.sweep import thread_share
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
    parser.add_argument("--teachers", nargs="+", default=list(CLASSICAL), choices=CLASSICAL)
    parser.add_argument("--processes", type=int, nargs="+", default=[],
                        help="also time `w2svqa label` with these process counts")  # fmt: skip
    args = parser.parse_args()
    pool = args.corpus / "pool.parquet"
    if not pool.exists():
        raise SystemExit(f"{pool}: not found; build the corpus first: w2svqa data sample")
    videos = load_videos(pool).iloc[: args.videos]
    if args.processes:
        print(markdown_table(_process_rows(args.teachers, videos, args.processes, args.workers)))
        print(f"\nOn N GPUs a node: {GPU_COMMAND}\n")
    rows = []
    for name in (n for n in args.teachers if n in list_teachers()):
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


GPU_COMMAND = (
    "torchrun --nnodes K --nproc_per_node N [--rdzv_endpoint HOST:PORT] "
    "-m experiments.cli label --teacher NAME --videos POOL --out TABLE.parquet"
)


def _process_rows(teachers: list[str], videos, processes: list[int], workers: int) -> list[dict]:
    """Each teacher's `w2svqa label` over `videos` with each number of processes, from scratch:
    the command's wall time (Python and Lightning start-up included) and the labelling job's
    own, as rank 0 reports it."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "videos.parquet"
        absolute = videos.path.map(os.path.abspath)  # not relative to the listing's folder
        videos[["video_id"]].assign(path=absolute).to_parquet(listing, index=False)
        for name in teachers:
            alone = None
            for n in processes:
                out = Path(tmp) / f"{name}-{n}.parquet"
                wall, job = _timed_label(name, listing, out, n, workers)
                alone = alone or job
                rows.append({
                    "teacher": name, "processes": n, "decoders each": workers,
                    "videos": len(videos), "command s": wall, "job s": job,
                    "job videos/s": len(videos) / job, "speed-up": alone / job,
                })  # fmt: skip
    return rows


def _timed_label(
    teacher: str, videos: Path, out: Path, processes: int, workers: int
) -> tuple[float, float]:
    env = {**os.environ, **thread_share(processes)}  # ranks must not fight for the cores
    launch = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = [sys.executable, *(launch if processes > 1 else []), "-m", "experiments.cli",
               "label", "--teacher", teacher, "--videos", str(videos), "--out", str(out),
               "--workers", str(workers)]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    # rank 0's line: "TABLE: 120 scored, 0 skipped (already scored), 0 failed (7.1 s)"
    found = re.search(r"(\d+) scored, \d+ skipped \(already scored\), (\d+) failed \(([\d.]+) s\)",
                      done.stdout)  # fmt: skip
    if found is None or int(found[2]):
        raise SystemExit(f"{' '.join(command)}: not every video scored:\n{done.stdout[-2000:]}")
    return wall, float(found[3])


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
