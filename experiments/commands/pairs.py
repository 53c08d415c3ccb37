"""`w2svqa pairs ensemble|synthetic|hard`: the pair tables a student learns from."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from datamodules.ensemble import TeacherMix
from datamodules.errors import UserError
from datamodules.hard_cases import HardCaseConfig
from datamodules.synthetic_pairs import SyntheticPairConfig

_SYNTH = SyntheticPairConfig()
_MIX = TeacherMix()
_HARD = HardCaseConfig()


def pairs_synthetic(
    videos: str = "data/sample/pool.parquet",
    out: Path = Path("data/pairs/synthetic.parquet"),
    cache: Path | None = None,
    synthetic: SyntheticPairConfig = _SYNTH,
) -> None:
    """Build a synthetic pair table: two renditions of one source at different distortion levels.

    Args:
        videos: Source videos: a folder or a table (.parquet, .csv, labels .txt) with `path`.
        out: The pair table to write (parquet).
        cache: Folder for rendered renditions (default: beside `out`, `OUT.renditions/`).
        synthetic: Pair counts, groups and their weights, seed.
    """
    from datamodules._io import atomic_write
    from datamodules.synthetic_pairs import build_synthetic_pairs
    from datamodules.video_table import load_videos

    cache = cache or out.with_name(out.name + ".renditions")
    table = build_synthetic_pairs(load_videos(videos), cache, synthetic)
    atomic_write(out, lambda p: table.to_parquet(p, index=False))
    counts = ", ".join(f"{k} {v}" for k, v in table.source.value_counts().sort_index().items())
    print(f"{out}: {len(table)} synthetic pairs ({counts}); renditions in {cache}")


def pairs_ensemble(
    scores: Path = Path("data/scores"),
    videos: str = "data/sample/pool.parquet",
    out: Path = Path("data/pairs/ensemble.parquet"),
    pairs: int = 500,
    mix: TeacherMix = _MIX,
    strategy: Literal["uniform", "stratified"] = "uniform",
    max_pairs_per_video: int | None = None,
    seed: int = 0,
) -> None:
    """Build an ensemble pair table: teachers' scores -> common scale -> the paper's five levels.

    Args:
        scores: Folder of score tables written by `w2svqa label`, one `NAME.parquet` per teacher.
        videos: The videos the pairs are drawn from (folder or table with `path`).
        out: The pair table to write (parquet).
        pairs: How many pairs to draw.
        mix: Teachers and weights (empty: every table, equal weights), scale mapping, reference.
        strategy: `uniform` random pairs, or `stratified` across quality bins.
        max_pairs_per_video: Cap on the pairs any one video takes part in.
        seed: Seed of the pair draw.
    """
    from datamodules._io import atomic_write
    from datamodules.ensemble import build_ensemble_pairs
    from datamodules.video_table import load_videos
    from lightning_modules.scoring import read_scores

    tables = {}
    for path in sorted(scores.glob("*.parquet")):
        table = read_scores(path)
        tables[path.stem] = table.loc[table.status == "ok", ["video_id", "score"]]
    if not tables:
        raise UserError(f"{scores}: no score tables (*.parquet); run `w2svqa label` first")
    table = build_ensemble_pairs(
        tables, load_videos(videos), pairs, mix=mix, strategy=strategy,
        max_pairs_per_video=max_pairs_per_video, seed=seed, round_index=1,
    )  # fmt: skip
    atomic_write(out, lambda p: table.to_parquet(p, index=False))
    levels = table.level.value_counts().sort_index().to_dict()
    print(f"{out}: {len(table)} ensemble pairs from {', '.join(tables)}; levels {levels}")


def pairs_hard(
    student: Path | None = None,
    teacher: Path | None = None,
    out: Path | None = None,
    videos: str = "data/sample/pool.parquet",
    synthetic: Path | None = None,
    round: int = 2,
    hard: HardCaseConfig = _HARD,
) -> None:
    """Build the next round's hard cases: gMAD pairs and wrongly ordered synthetic pairs.

    gMAD pairs are where a teacher and the student disagree most; the synthetic ones are those
    the student orders wrongly.

    Score the pool (and the synthetic pair table's renditions) with the student first, e.g.
    `w2svqa label --teacher student.yaml --videos POOL_OR_PAIR_TABLE --out student.parquet`.

    Args:
        student: The current student's score table (pool videos, and renditions if `synthetic`).
        teacher: A weak teacher's score table on the same pool.
        out: The pair table to write (parquet).
        videos: The pool the gMAD pairs are drawn from (folder or table with `path`).
        synthetic: A synthetic pair table whose wrongly ordered pairs become hard cases.
        round: The round these pairs are for (written to the `round` column).
        hard: Bin width, number of gMAD pairs, seed.
    """
    import pandas as pd

    from datamodules._io import atomic_write
    from datamodules.hard_cases import build_hard_cases
    from datamodules.video_table import load_videos
    from lightning_modules.scoring import read_scores

    if student is None or teacher is None or out is None:
        raise UserError("--student, --teacher and --out are required")
    syn = pd.read_parquet(synthetic) if synthetic is not None else None
    table = build_hard_cases(
        hard, read_scores(teacher), read_scores(student), load_videos(videos), syn, round
    )
    atomic_write(out, lambda p: table.to_parquet(p, index=False))
    counts = table.source.value_counts().to_dict()
    print(f"{out}: {len(table)} hard-case pairs for round {round} ({counts})")
