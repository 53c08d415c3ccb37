"""Student throughput on CPU: compact-student training pairs per second (cold and warm feature
cache, and with the last backbone stage training on pixels), scoring videos per second, and the
student passes a scored video costs for the scorer and the comparator-with-anchors read-outs.

Needs the sample corpus and its pair tables (`make quickstart`).

    .venv/bin/python -m benchmarks.train_throughput --steps 40 --videos 60
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import default_collate

from benchmarks._table import markdown_table
from datamodules.frame_sampling import read_clip
from datamodules.video_table import load_videos
from experiments.train import train_student
from lightning_modules.checkpoints import save_student
from lightning_modules.losses import OrderedProbit
from lightning_modules.scoring import label_videos
from lightning_modules.students.compact import CompactStudent
from lightning_modules.teachers.student import StudentTeacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=Path("data/sample"))
    parser.add_argument("--pairs", default="data/pairs/ensemble.parquet")
    parser.add_argument("--steps", type=int, default=40, help="training steps per row")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--videos", type=int, default=60, help="videos to score")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    pairs = [p for p in args.pairs.split(",") if p]
    for path in [args.corpus / "pool.parquet", *pairs]:
        if not Path(path).exists():
            raise SystemExit(f"{path}: not found; run `make quickstart` first")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cache = str(tmp / "features")
        for label, kwargs in [
            ("compact, frozen backbone, cold feature cache", {"feature_cache": cache}),
            ("compact, frozen backbone, warm feature cache", {"feature_cache": cache}),
            ("compact, last backbone stage trains (pixels)", {"trainable_blocks": 1}),
        ]:
            steps = args.steps if "frozen" in label else max(2, args.steps // 4)
            student = CompactStudent(**kwargs)
            result = train_student(
                student, OrderedProbit(), pairs, tmp / "s.safetensors", steps=steps,
                batch_size=args.batch_size, workers=args.workers,
                trainer={"enable_progress_bar": False},
            )  # fmt: skip
            rows.append({"what": f"train: {label}", "rate": steps * args.batch_size
                         / result.seconds, "unit": "pairs/s", "passes/video": 1})  # fmt: skip
        videos = load_videos(args.corpus / "pool.parquet").iloc[: args.videos]
        checkpoint = save_student(CompactStudent(), tmp / "compact.safetensors")
        summary = label_videos(StudentTeacher(checkpoint), videos, tmp / "scores.parquet",
                               batch_size=8, workers=args.workers)  # fmt: skip
        rows.append({"what": "score: compact (decode + backbone + head)",
                     "rate": len(videos) / summary.seconds, "unit": "videos/s",
                     "passes/video": 1})  # fmt: skip
        rows += _llava_rows(tmp, videos.path.tolist()[:6])
    print(f"\nCPU threads: {torch.get_num_threads()}; batch {args.batch_size}; "
          f"{args.workers} loader workers; times include Lightning start-up\n")  # fmt: skip
    print(markdown_table(rows, digits=2))


def _llava_rows(tmp: Path, paths: list[str]) -> list[dict]:
    """Scoring cost of the two LLaVA-OneVision read-outs on the tiny random test config: the
    absolute rate means nothing, the passes per video and their ratio do."""
    from lightning_modules.students.llava_onevision import LlavaOnevisionStudent
    from tests.tiny_models import build_tiny_llava_onevision

    model = str(build_tiny_llava_onevision(tmp / "tiny_llava_ov"))
    rows = []
    for readout in ("scorer", "comparator"):
        student = LlavaOnevisionStudent(model, readout=readout, max_seconds=3, pool_to=2).eval()
        batch = default_collate(
            [student.prepare(read_clip(p, student.sampler()), p) for p in paths]
        )
        if readout == "comparator":
            student.set_anchors({k: v[:5] for k, v in batch.items()})
        start = time.perf_counter()
        with torch.no_grad():
            student(batch)
        rate = len(paths) / (time.perf_counter() - start)
        rows.append({"what": f"score: llava_onevision {readout} (tiny config)", "rate": rate,
                     "unit": "videos/s", "passes/video": student.passes_per_video()})  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
