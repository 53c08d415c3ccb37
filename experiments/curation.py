"""`w2svqa data curate` and `data.curate`: the paper's pool selection, end to end.

The nine statistics of the pool's and the target's videos are labelled like any score table (one
`statistic` teacher each, in `CACHE/statistics/`, resumable, sharded over torchrun's ranks, one
decode per video for all nine); `datamodules.curation.select` chooses n pool videos whose
histograms match the target's; the report compares them, and a random sample of the same size,
with the target: `curated.parquet` (`video_id`, `path`), `distances.csv`, `histograms.png`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from datamodules._io import atomic_write
from datamodules.curation import distances, histogram_figure, random_sample, select
from datamodules.errors import UserError
from experiments.config import CurateConfig
from lightning_modules.teachers.statistics import STATISTICS


@dataclass(frozen=True)
class Curation:
    """What `curate` chose and how close it came."""

    chosen: pd.DataFrame  # video_id, path of the kept pool videos, in pool order
    distances: pd.DataFrame  # statistic, random, curated (total-variation distance to the target)
    method: str
    failed: int  # pool and target videos without all nine statistics (left out)


def statistics_table(
    videos: pd.DataFrame,
    cache: Path,
    batch_size: int = 8,
    workers: int = 2,
    trainer: dict[str, Any] | None = None,
) -> tuple[pd.DataFrame, int]:
    """`video_id`, `path` and the nine STATISTICS of each video that has all nine, and how many
    have not (their reasons are in the tables' error column). Under torchrun every rank labels a
    shard, and rank 0 alone reads the merged tables (the others get an empty table)."""
    from experiments.stages import digest
    from lightning_modules.scoring import label_videos, process_rank, read_scores
    from lightning_modules.teachers.statistics import StatisticTeacher

    folder = cache / "statistics"
    wide = videos[["video_id", "path"]].astype({"video_id": str}).reset_index(drop=True)
    for name in STATISTICS:
        teacher = StatisticTeacher(statistic=name, feature_cache=str(folder / "values"))
        spec = {"frames": teacher.frames, "run": teacher.run}
        table = folder / f"{name}-{digest(spec)}.parquet"  # shared by every pool and target
        label_videos(teacher, videos, table, batch_size, workers, trainer=trainer,
                     description=f"statistic {name}")  # fmt: skip
        if process_rank()[0] != 0:
            continue
        scores = read_scores(table)
        ok = scores[scores.status == "ok"].set_index("video_id")["score"]
        wide[name] = wide.video_id.map(ok)
    if process_rank()[0] != 0:
        return wide.iloc[:0], 0
    complete = wide[list(STATISTICS)].notna().all(axis=1)
    return wide[complete].reset_index(drop=True), int((~complete).sum())


def curate(
    pool: pd.DataFrame,
    target: pd.DataFrame,
    config: CurateConfig,
    out: Path,
    cache: Path,
    seed: int = 0,
    batch_size: int = 8,
    workers: int = 2,
    trainer: dict[str, Any] | None = None,
) -> Curation | None:
    """Choose `config.n` pool videos and write the report into the folder `out`. Under torchrun
    every rank labels; rank 0 alone selects and writes (the others return None). `trainer`:
    the labelling jobs' Trainer settings (e.g. the run's accelerator)."""
    from lightning_modules.scoring import process_rank

    pool_stats, pool_failed = statistics_table(pool, cache, batch_size, workers, trainer)
    target_stats, target_failed = statistics_table(target, cache, batch_size, workers, trainer)
    if process_rank()[0] != 0:
        return None
    if len(target_stats) < config.bins:
        raise UserError(f"the target has {len(target_stats)} videos with all nine "
                        f"statistics; at least {config.bins} (one per bin) are needed")  # fmt: skip
    if config.n > len(pool_stats):
        raise UserError(f"n = {config.n}, but the pool has only {len(pool_stats)} videos "
                        f"with all nine statistics ({pool_failed} without)")  # fmt: skip
    values, wanted = pool_stats[list(STATISTICS)].to_numpy(), target_stats[list(STATISTICS)]
    wanted = wanted.to_numpy()
    chosen, method = select(values, wanted, config.n, config.bins, config.method, seed)
    baseline = random_sample(len(values), config.n, seed)
    report = pd.DataFrame({
        "statistic": list(STATISTICS),
        "random": distances(values[baseline], wanted, config.bins),
        "curated": distances(values[chosen], wanted, config.bins),
    })  # fmt: skip
    report.loc[len(report)] = ["mean", report.random.mean(), report.curated.mean()]
    kept = pool_stats.iloc[chosen][["video_id", "path"]].reset_index(drop=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "distances.csv", lambda p: report.to_csv(p, index=False))
    figure = histogram_figure(STATISTICS, wanted,
                              {"random": values[baseline], "curated": values[chosen]},
                              config.bins)  # fmt: skip
    atomic_write(out / "histograms.png", lambda p: figure.savefig(p, format="png", dpi=80))
    atomic_write(out / "curated.parquet", lambda p: kept.to_parquet(p, index=False))
    return Curation(kept, report, method, pool_failed + target_failed)


def print_report(curation: Curation, out: Path) -> None:
    print(f"kept {len(curation.chosen)} videos ({curation.method}); total-variation distance "
          "of each statistic's histogram to the target's (0: the same):")  # fmt: skip
    print(f"{'statistic':<16}{'random':>8}{'curated':>9}")
    for row in curation.distances.itertuples():
        print(f"{row.statistic:<16}{row.random:>8.3f}{row.curated:>9.3f}")
    if curation.failed:
        print(f"{curation.failed} videos left out: a statistic failed (error column of the "
              "tables in CACHE/statistics/)", file=sys.stderr)  # fmt: skip
    print(f"{out / 'curated.parquet'}, {out / 'distances.csv'}, {out / 'histograms.png'}")
