"""The table stages at pool sizes of millions: ensemble, pair sampling and labelling, hard cases.

For each pool size, 5 synthetic teachers score every video (each fails on 0.1% of them, so the
tables differ), then the round's table stages run as the runner runs them: `ensemble_scores` (the
ensemble table that rounds evaluate) and `build_ensemble_pairs`. Each size runs in a process of
its own, so its peak memory (RSS) is its own: the `inputs` column is the RSS once the score tables
and the pool table are built, before the stages; `peak` is the most the process held up to the
end of the pairs, `gmad_peak` the most after the hard cases too.
`total_s` is the ensemble and the pairs (the targets: 3M videos, 500k pairs in 30 s and 1.5 GB on
2 cores); the gMAD hard cases (a tenth as many pairs) are timed beside them, and so is one epoch of
the pair stream over the pairs (`stream_s`: every pair once, shuffled, inputs from a cache), and
pool curation on nine synthetic statistics (`curate_s`, and the distance it brings down).

    .venv/bin/python -m benchmarks.scale_tables                       # 30k, 300k, 3M videos
    .venv/bin/python -m benchmarks.scale_tables --videos 3000000 --pairs 500000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks._table import markdown_table

TEACHERS = 5


def synthetic_tables(n_videos: int, seed: int = 0) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The score tables of `TEACHERS` noisy teachers of one latent quality, and the pool table."""
    rng = np.random.default_rng(seed)
    # Arrow strings, as pandas reads them from parquet: no Python object per id
    number = pc.utf8_lpad(pa.array(np.arange(n_videos)).cast(pa.string()), 8, "0")
    ids = pc.binary_join_element_wise("v", number, "")
    quality = rng.normal(size=n_videos)
    tables = {}
    for t in range(TEACHERS):
        kept = rng.random(n_videos) >= 0.001  # each teacher fails on some videos
        noisy = (t + 1) * quality + rng.normal(scale=0.5 + 0.3 * t, size=n_videos)
        video_id = ids.filter(pa.array(kept)).to_pandas()
        tables[f"teacher{t}"] = pd.DataFrame({"video_id": video_id, "score": noisy[kept]})
    paths = pc.binary_join_element_wise("/pool/", ids, "")
    pool = pd.DataFrame({"video_id": ids.to_pandas(), "path": paths.to_pandas()})
    return tables, pool


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def measure(n_videos: int, n_pairs: int) -> dict[str, object]:
    """One row: time of each stage and memory, in this process."""
    from datamodules.ensemble import TeacherMix, build_ensemble_pairs
    from datamodules.hard_cases import gmad_pairs

    tables, pool = synthetic_tables(n_videos)
    inputs = _rss_mb()
    mix = TeacherMix(reference="teacher0")
    start = time.perf_counter()
    ensemble = mix.ensemble(tables)
    middle = time.perf_counter()
    # the pairs from that ensemble, as a caller that has it passes it (the runner's pair stage
    # makes its own, once)
    pairs = build_ensemble_pairs(tables, pool, n_pairs, mix=mix, seed=0, ensemble=ensemble)
    end = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    # a round's hard cases: the student (here the noisiest teacher) against the ensemble
    student = tables[f"teacher{TEACHERS - 1}"]
    gmad = gmad_pairs(ensemble.rename(columns={"mean": "score"}), student, pool, 0.05,
                      n_pairs // 10, round=2, seed=0)  # fmt: skip
    hard = time.perf_counter()
    gmad_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    streamed, stream_s, stream_mb = _stream(pairs)
    n_pairs, n_gmad = len(pairs), len(gmad)
    del tables, pool, ensemble, pairs, gmad  # the curation's memory is not the tables'
    curate_s, random_tv, curated_tv = _curate(n_videos)
    return {
        "videos": n_videos, "pairs": n_pairs, "ensemble_s": middle - start,
        "pairs_s": end - middle, "total_s": end - start, "gmad_pairs": n_gmad,
        "gmad_s": hard - end, "inputs_mb": inputs, "peak_mb": peak, "gmad_peak_mb": gmad_peak,
        "stream_pairs": streamed, "stream_s": stream_s, "stream_growth_mb": stream_mb,
        "curate_s": curate_s, "curate_tv": f"{random_tv:.3f} -> {curated_tv:.3f}",
    }  # fmt: skip


def _curate(n_videos: int) -> tuple[float, float, float]:
    """Pool curation as `data curate` runs it once the nine statistics are labelled: keep one
    video in 15 (the paper's 200k of 3M) to match a 7,000-video target (LSVQ-test's size) whose
    statistics are shifted and narrower than the pool's. Seconds (`auto`: the integer program up
    to 20,000 videos, greedy beyond), and the mean total-variation distance to the target of a
    random sample and of the curated one."""
    from datamodules.curation import distances, random_sample, select

    rng = np.random.default_rng(1)
    pool = rng.normal(size=(n_videos, 9)) + rng.normal(scale=0.5, size=(n_videos, 1))
    target = rng.normal(loc=0.5, scale=0.7, size=(7000, 9))
    n = n_videos // 15
    start = time.perf_counter()
    chosen, _ = select(pool, target, n)
    seconds = time.perf_counter() - start
    baseline = random_sample(n_videos, n)
    return seconds, distances(pool[baseline], target).mean(), distances(pool[chosen], target).mean()


def _stream(pairs: pd.DataFrame) -> tuple[int, float, float]:
    """The pair stream over the pair table, as one training process of one rank reads it: every
    pair once, shuffled, without decoding (each video's input comes from a cache, here a
    constant). Pairs read, seconds, and how much the RSS grew while streaming."""
    import tempfile
    from pathlib import Path

    from datamodules.frame_sampling import UniformFrames
    from datamodules.pair_datamodule import PairStream

    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "pairs.parquet"
        pairs.to_parquet(table, index=False)
        stream = PairStream([table], UniformFrames(1), prepare=None, cached=lambda path: 0,
                            rank=0, world_size=1)  # fmt: skip
        before = _rss_mb()
        start = time.perf_counter()
        count = sum(1 for _ in stream)
        seconds = time.perf_counter() - start
        return count, seconds, _rss_mb() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, nargs="+", default=[30_000, 300_000, 3_000_000])
    parser.add_argument("--pairs", type=int, default=500_000, help="pairs per size (at most)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child's run
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.videos[0], args.pairs)))
        return
    rows = []
    for n in args.videos:
        argv = [sys.executable, "-m", "benchmarks.scale_tables", "--one", "--videos", str(n),
                "--pairs", str(min(args.pairs, n * 2))]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"{n} videos failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"{n} videos: {rows[-1]['total_s']:.1f} s", file=sys.stderr)
    print(markdown_table(rows, digits=1))


if __name__ == "__main__":
    main()
