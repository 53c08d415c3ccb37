"""Synthetic pairs from the distortion simulator: two renditions of the same source at different
levels of one distortion, labelled by the level gap as the paper does (gap 1: better / worse,
gap > 1: superior / inferior; never similar).

Pairs are drawn per group (spatial, temporal, compression) in the proportions of the config (the
paper's stage-1 counts by default: 160k / 40k / 50k). Each rendition is rendered once, stored
near-transparently and reused by every pair (and every later run) that needs it: its file name
hashes the source path, the distortion, the level, the seed and the simulator's settings.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from datamodules._ffmpeg import STORE_X264, encode_frames
from datamodules._io import atomic_write
from datamodules._progress import progress_bar
from datamodules.distortions import DISTORTIONS, apply_distortion
from datamodules.video_reader import VideoReader, VideoReadError

PAIR_COLUMNS = [
    "first_id", "second_id", "first_path", "second_path", "level", "source", "round",
    "delta", "sigma_delta", "z", "soft_label",
]  # fmt: skip
# The paper's stage-1 synthetic pairs: spatial 160k, temporal 40k, compression 50k.
PAPER_GROUPS = {"spatial": 160, "temporal": 40, "compression": 50}
SYNTHETIC_VERSION = 1  # bump when a change alters the renditions a key names


@dataclass(frozen=True)
class SyntheticPairConfig:
    """How many synthetic pairs to draw, and from which groups."""

    pairs: int = 250
    """Total pairs, split over the groups in proportion to `groups`."""
    groups: dict[str, float] = field(default_factory=lambda: dict(PAPER_GROUPS))
    """Group (distortion family) -> relative weight."""
    max_seconds: float = 10.0
    """Longest stretch of a source that is rendered (from its start)."""
    h265_preset: str = "fast"
    """x265 preset for H.265 renditions (the paper's is veryslow)."""
    seed: int = 0
    """Seed for sources, types, levels, pair order and the distortions' own randomness."""
    workers: int = 2
    """Processes rendering renditions."""
    design: Literal["random", "ladder"] = "random"
    """`random`: every pair is two random levels of one distortion of a random source (about two
    renditions a pair); `ladder`: every level of one distortion of a source, and every pair
    among them (a 5-level ladder gives 10 pairs from 5 renditions: five times the pairs for the
    same rendering and feature time, and each rendition ranked against all its neighbours)."""
    exclude: list[str] = field(default_factory=list)
    """Distortions (by name, e.g. `brighten`) never drawn; their groups draw from the others."""


def build_synthetic_pairs(
    sources: pd.DataFrame,
    cache: str | os.PathLike,
    config: SyntheticPairConfig,
    round: int = 1,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Synthetic pairs drawn from `sources` (`video_id`, `path`); renditions cached in `cache`.

    `progress`: a bar on stderr while renditions are rendered (None: when stderr is a terminal)."""
    plan = plan_pairs(sources, config)
    renditions = sorted({r for _, p in plan.iterrows() for r in (p.first, p.second)})
    paths = sources.set_index("video_id").path.astype(str).to_dict()
    failures = _render_all(paths, renditions, Path(cache), config, progress)
    path_of = {r: str(_rendition_path(Path(cache), r, config)) for r in renditions}
    if failures:  # a source that cannot be read loses its pairs; the others go on
        for line in failures:
            tqdm.write(f"synthetic pairs: skipped {line}")
        made = plan.first.map(lambda r: Path(path_of[r]).exists()) & plan.second.map(
            lambda r: Path(path_of[r]).exists()
        )
        plan = plan[made].reset_index(drop=True)
    gap = plan.second.map(lambda r: r[2]) - plan.first.map(lambda r: r[2])  # >0: first is milder
    level = np.select([gap > 1, gap == 1, gap == -1], [4, 3, 1], default=0)
    return pd.DataFrame({
        "first_id": plan.first.map(_rendition_id), "second_id": plan.second.map(_rendition_id),
        "first_path": plan.first.map(path_of), "second_path": plan.second.map(path_of),
        "level": level.astype(np.int64), "source": plan.group, "round": round,
        "delta": gap.astype(np.float64), "sigma_delta": np.nan, "z": np.nan,
        "soft_label": (gap > 0).astype(np.float64),
    })[PAIR_COLUMNS]  # fmt: skip


def plan_pairs(sources: pd.DataFrame, config: SyntheticPairConfig) -> pd.DataFrame:
    """Which pairs to make: group, and two renditions `(source_id, distortion, level)` each."""
    if sources.empty:
        raise ValueError("no source videos to draw synthetic pairs from")
    unknown = set(config.groups) - {d.family for d in DISTORTIONS.values()}
    if unknown:
        raise ValueError(f"unknown distortion groups {sorted(unknown)}")
    unknown = set(config.exclude) - set(DISTORTIONS)
    if unknown:
        raise ValueError(
            f"exclude: unknown distortions {sorted(unknown)}; one of {sorted(DISTORTIONS)}"
        )
    rng = np.random.default_rng(config.seed)
    weights = np.array(list(config.groups.values()), dtype=np.float64)
    counts = _split(config.pairs, weights / weights.sum())
    ids = sources["video_id"].astype(str).to_numpy()
    if config.design not in ("random", "ladder"):
        raise ValueError(f"synthetic design must be 'random' or 'ladder', not {config.design!r}")
    rows = []
    for group, count in zip(config.groups, counts, strict=True):
        types = [d for d in DISTORTIONS.values()
                 if d.family == group and d.name not in config.exclude]  # fmt: skip
        if not types:
            raise ValueError(f"group {group!r}: exclude leaves no distortion to draw")
        made, used = 0, set()
        while made < count:
            t = types[int(rng.integers(len(types)))]
            if config.design == "random":  # the draws in this order: the same pairs as ever
                level_pairs = [tuple(rng.choice(len(t.levels), size=2, replace=False))]
                src = str(ids[int(rng.integers(len(ids)))])
            else:  # every pair of the ladder, each in a random order, in a random sequence
                src = str(ids[int(rng.integers(len(ids)))])
                if (src, t.name) in used:  # a ladder once, until every one of the group is used
                    if len(used) < len(ids) * len(types):
                        continue
                    used.clear()
                used.add((src, t.name))
                ladder = list(itertools.combinations(range(len(t.levels)), 2))
                level_pairs = [ladder[i] for i in rng.permutation(len(ladder))]
                level_pairs = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in level_pairs]
            for a, b in level_pairs[: count - made]:
                rows.append((group, (src, t.name, int(a)), (src, t.name, int(b))))
            made += min(len(level_pairs), count - made)
    return pd.DataFrame(rows, columns=["group", "first", "second"])


def _split(total: int, shares: np.ndarray) -> list[int]:
    """Integers proportional to `shares` that add up to `total` (largest remainders)."""
    raw = shares * total
    counts = np.floor(raw).astype(int)
    counts[np.argsort(raw - counts)[::-1][: total - counts.sum()]] += 1
    return counts.tolist()


def _rendition_id(r: tuple[str, str, int]) -> str:
    return f"{r[0]}#{r[1]}:{r[2]}"


def _rendition_path(cache: Path, r: tuple[str, str, int], config: SyntheticPairConfig) -> Path:
    key = [SYNTHETIC_VERSION, *r, config.seed, config.max_seconds, config.h265_preset]
    digest = hashlib.sha1(json.dumps(key).encode()).hexdigest()[:12]
    return cache / digest[:2] / f"{digest}-{r[1]}{r[2]}.mp4"


def _render_all(
    paths: dict[str, str], renditions: list, cache: Path, config, progress: bool | None
) -> list[str]:
    """Render the renditions not yet cached; return one line per source that failed."""
    todo = [r for r in renditions if not _rendition_path(cache, r, config).exists()]
    by_source: dict[str, list] = {}
    for r in todo:
        by_source.setdefault(r[0], []).append(r)
    failures = []
    if not todo:
        return failures
    with ProcessPoolExecutor(max_workers=max(config.workers, 1)) as pool:
        jobs = {pool.submit(_render_source, paths[s], rs, cache, config): len(rs)
                for s, rs in by_source.items()}  # fmt: skip
        desc = "synthetic pairs: rendering distorted copies"
        with progress_bar(len(todo), desc, "clip", progress) as bar:
            for job in as_completed(jobs):
                if error := job.result():
                    failures.append(error)
                bar.update(jobs[job])
    return failures


def _render_source(
    path: str, renditions: list, cache: Path, config: SyntheticPairConfig
) -> str | None:
    """Decode one source once and write each of its renditions atomically; an error or None."""
    try:
        _render_renditions(path, renditions, cache, config)
    except VideoReadError as err:  # its message repeats the path
        return f"{path}: {err.reason}"
    except Exception as err:  # one unreadable source must not stop the others
        return f"{path}: {type(err).__name__}: {err}"
    return None


def _render_renditions(path: str, renditions: list, cache: Path, config) -> None:
    with VideoReader(path) as reader:
        n = min(len(reader), max(int(config.max_seconds * reader.info.fps), 1))
        frames = reader.get_frames(np.arange(n))
        fps = reader.info.fps
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]  # 4:2:0 storage
    for source_id, name, level in renditions:
        # One seed per (source, distortion) for every level: common random numbers, so a higher
        # level's damage contains the lower level's (see datamodules/distortions.py).
        seed = int(hashlib.sha1(f"{config.seed}/{source_id}/{name}".encode()).hexdigest()[:8], 16)
        out = apply_distortion(frames, fps, name, level, seed, h265_preset=config.h265_preset)
        target = _rendition_path(cache, (source_id, name, level), config)
        atomic_write(target, lambda p, x=out: encode_frames(x, fps, p, STORE_X264))
