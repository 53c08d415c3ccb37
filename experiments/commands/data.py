"""`w2svqa data sample`, `data curate`, `data probe` and `w2svqa vmaf`: the corpus, a pool's
curation and single videos."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from datamodules.errors import UserError
from datamodules.sample_corpus import CorpusConfig


def data_sample(out: Path = Path("data/sample"), corpus: CorpusConfig = CorpusConfig()) -> None:
    """Build the embedded sample corpus (real footage and photographs from PyPI packages).

    Re-running with the same arguments reuses every clip already made.

    Args:
        out: Folder to write the corpus into.
        corpus: What to build (sizes, seed, encoder preset, worker processes).
    """
    from datamodules.sample_corpus import build_sample_corpus

    config = corpus
    summary = build_sample_corpus(out, config)
    print(f"sample corpus in {summary['out']} ({summary['seconds']:.1f} s: "
          f"{summary['made']} clips made, {summary['reused']} reused)")  # fmt: skip
    width = max(map(len, summary["splits"])) + 2
    print(f"{'split':<{width}}{'clips':>6}{'contents':>10}{'VMAF range':>16}")
    for split, info in summary["splits"].items():
        if "vmaf_min" in info:
            rng = f"{info['vmaf_min']:.1f}-{info['vmaf_max']:.1f}"
        else:  # the pool, or a split built empty
            rng = "unlabelled" if split == "pool" else "-"
        print(f"{split:<{width}}{info['clips']:>6}{info['contents']:>10}{rng:>16}")
    for line in summary["failed"]:
        print(f"failed: {line}", file=sys.stderr)
    if summary["failed"]:
        raise SystemExit(1)


def data_curate(
    pool: Path | None = None,
    target: Path | None = None,
    n: int | None = None,
    out: Path = Path("data/curated"),
    bins: int = 10,
    method: Literal["auto", "milp", "greedy"] = "auto",
    seed: int = 0,
    cache: Path = Path("data/cache"),
    batch_size: int = 8,
    workers: int = 2,
) -> None:
    """Keep n pool videos whose nine statistics' histograms match a target set's.

    The paper's pool selection; the report gives the distance to the target of a random sample's
    histograms and of the curated one's.

    Args:
        pool: The videos to choose from: a folder or a table with `path`.
        target: The videos to match: a folder or a table (a labelled dataset, a corpus split).
        n: Pool videos to keep.
        out: Folder for curated.parquet (video_id, path), distances.csv and histograms.png.
        bins: Bins per statistic, at the target's quantiles.
        method: milp (an integer program), greedy, or auto (milp up to 20,000 pool videos).
        seed: Seed of the random sample compared against, and of the greedy method's ties.
        cache: Where the statistics' tables are kept (`CACHE/statistics/`), shared by runs.
        batch_size: Videos per labelling batch.
        workers: Decoding processes.
    """
    from datamodules.video_table import load_videos
    from experiments.curation import CurateConfig, curate, print_report

    if pool is None or target is None or n is None:
        raise UserError("--pool, --target and --n are required")
    if n < 1:
        raise UserError(f"--n {n}: keep at least one video")
    config = CurateConfig(str(target), n, bins, method)
    found = curate(load_videos(pool), load_videos(target), config, out, cache, seed, batch_size,
                   workers)  # fmt: skip
    if found is not None:  # rank 0 (or the only process)
        print_report(found, out)


def data_probe(path: Path) -> None:
    """Print each video's metadata as one JSON line, or the reason it cannot be read.

    Exits 1 when a video cannot be read (after printing every line), 2 when `path` is missing.

    Args:
        path: A video file, or a folder whose video files (recursively, by extension) are probed;
            other files in it (a corpus's .json sidecars, label tables) are counted, not probed.
    """
    from datamodules.video_reader import VideoReadError, probe
    from datamodules.video_table import VIDEO_EXTENSIONS

    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file())
        files = [p for p in found if p.suffix.lower() in VIDEO_EXTENSIONS]
        if len(files) < len(found):
            print(f"{path}: {len(files)} video files probed, {len(found) - len(files)} other "
                  "files skipped (not a video extension)", file=sys.stderr)  # fmt: skip
    else:
        files = [path]
    unreadable = 0
    for file in files:
        try:
            info = probe(file)
        except VideoReadError as err:
            print(json.dumps({"path": err.path, "error": err.reason}))
            unreadable += 1
            continue
        fields = {k: v for k, v in vars(info).items() if k not in ("timestamps", "keyframes")}
        print(json.dumps({**fields, "keyframes": len(info.keyframes)}))
    if unreadable:
        raise SystemExit(1)


def vmaf(
    distorted: Path, reference: Path, per_frame: Path | None = None, model: str = "vmaf_v0.6.1"
) -> None:
    """VMAF of a distorted video against its reference (libvmaf in the bundled ffmpeg).

    The distorted video is scaled to the reference's size and aligned to its frame rate.

    Args:
        distorted: The distorted (test) video.
        reference: The reference (pristine) video.
        per_frame: Optional CSV to write per-frame scores to.
        model: libvmaf built-in model version.
    """
    from datamodules.vmaf import compute_vmaf

    result = compute_vmaf(distorted, reference, model=model)
    if per_frame is not None:
        import pandas as pd

        pd.DataFrame({"frame": range(len(result.per_frame)), "vmaf": result.per_frame}).to_csv(
            per_frame, index=False
        )
    print(f"{result.mean:.4f}")
