"""The `w2svqa` command line. Each subcommand is a plain function whose typed signature is its
schema: jsonargparse builds the options, the `--help` text and `--config FILE.yaml` from it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Literal

from jsonargparse import CLI, lazy_instance, set_parsing_settings

from datamodules.ensemble import TeacherMix
from datamodules.hard_cases import HardCaseConfig
from datamodules.sample_corpus import CorpusConfig
from datamodules.synthetic_pairs import SyntheticPairConfig
from experiments.finetune import FinetuneConfig
from lightning_modules.losses import OrderedProbit, PairLoss
from lightning_modules.students.base import Student
from lightning_modules.students.compact import CompactStudent
from lightning_modules.training import OptimConfig

_SYNTH = SyntheticPairConfig()
_MIX = TeacherMix()
_OPTIM = OptimConfig()
_HARD = HardCaseConfig()
_FINETUNE = FinetuneConfig()
# Built only when the command runs; the feature cache makes later epochs and rounds cheap.
_COMPACT = lazy_instance(CompactStudent, feature_cache="data/features")
_ORDERED_PROBIT = lazy_instance(OrderedProbit)


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


def pairs_hard(
    student: Path | None = None,
    teacher: Path | None = None,
    out: Path | None = None,
    videos: str = "data/sample/pool.parquet",
    synthetic: Path | None = None,
    round: int = 2,
    hard: HardCaseConfig = _HARD,
) -> None:
    """Build the next round's hard cases: gMAD pairs where a teacher and the student disagree, and
    the synthetic pairs the student orders wrongly.

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
        raise SystemExit("w2svqa pairs hard: --student, --teacher and --out are required")
    syn = pd.read_parquet(synthetic) if synthetic is not None else None
    table = build_hard_cases(
        hard, read_scores(teacher), read_scores(student), load_videos(videos), syn, round
    )
    atomic_write(out, lambda p: table.to_parquet(p, index=False))
    counts = table.source.value_counts().to_dict()
    print(f"{out}: {len(table)} hard-case pairs for round {round} ({counts})")


def train(
    pairs: str = "runs/quickstart/round1/ensemble_pairs.parquet,"
    "runs/quickstart/round1/synthetic_pairs.parquet",
    out: Path = Path("data/students/student.safetensors"),
    val: str | None = "test_in_domain=data/sample/test_in_domain.parquet",
    student: Student = _COMPACT,
    loss: PairLoss = _ORDERED_PROBIT,
    optim: OptimConfig = _OPTIM,
    steps: int = 200,
    batch_size: int = 8,
    workers: int = 2,
    seed: int = 0,
) -> None:
    """Train a student on pair tables; print validation metrics before and after; save it.

    Args:
        pairs: Pair tables (parquet), comma-separated.
        out: The student file to write (.safetensors).
        val: Labelled validation sets as NAME=TABLE, comma-separated (tables with path and
            mos, score or vmaf); empty for none.
        student: The student (class_path and init_args), e.g. the compact CPU student.
        loss: The pair loss: OrderedProbit, FidelityLoss, BradleyTerryLoss, MarginLoss for
            scorers; LevelCrossEntropy (the paper's) for comparators.
        optim: AdamW, warm-up and cosine decay; per-part learning rates.
        steps: Optimiser steps.
        batch_size: Pairs per step.
        workers: Decoding processes.
        seed: Seed of the pair order and the initialisation.
    """
    from experiments.train import train_student, validation_table

    tables = [p.strip() for p in pairs.split(",") if p.strip()]
    for table in tables:
        if not Path(table).is_file():
            raise SystemExit(f"{table}: no such pair table (run `w2svqa pairs ...` first)")
    val_sets = dict(_name_value(v, "--val") for v in (val or "").split(",") if v.strip())
    import lightning as L

    from lightning_modules.students.base import create_student

    spec = student.spec()
    L.seed_everything(seed, verbose=False)  # rebuilt after seeding: the new layers' init follows it
    student = create_student(spec["name"], **spec["args"])
    result = train_student(
        student, loss, tables, out, val_sets=val_sets, optim=optim, steps=steps,
        batch_size=batch_size, workers=workers, seed=seed,
    )  # fmt: skip
    print(f"{result.checkpoint}: {result.steps} steps in {result.seconds:.1f} s")
    if result.before:
        print(validation_table(result).to_string(index=False, float_format="%.4f"))


def _name_value(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.strip().partition("=")
    if not sep or not name or not value:
        raise SystemExit(f"{flag}: expected NAME=TABLE, got {text.strip()!r}")
    return name, value


def score(
    paths: list[str] | None = None,
    checkpoint: Path | None = None,
    teacher: str | None = None,
    output: Path | None = None,
    reference: Path | None = None,
    batch_size: int = 8,
    workers: int = 2,
) -> None:
    """Score videos with a trained student (or any teacher): one row per video, as CSV.

    Args:
        paths: Video files and folders (folders are searched recursively).
        checkpoint: A student file (.safetensors) or training checkpoint (.ckpt).
        teacher: Instead of a checkpoint: a registered teacher name or a YAML file.
        output: CSV to write (path, score, [mos, scale,] [percentile,] error); default: stdout.
            `score` is raw; `mos` is on the named `scale`, for a calibrated student only.
        reference: Raw scores of a reference set by the same scorer (a CSV of this command, or
            any .csv/.parquet with a score column): adds each video's percentile among them.
        batch_size: Videos per forward pass.
        workers: Decoding processes.
    """
    import tempfile

    import pandas as pd

    from datamodules.video_table import load_videos
    from lightning_modules.calibration import CalibrationError, read_reference, score_columns
    from lightning_modules.scoring import label_videos, read_scores

    if (checkpoint is None) == (teacher is None):
        raise SystemExit("w2svqa score: give exactly one of --checkpoint or --teacher")
    if not paths:
        raise SystemExit("w2svqa score: give the videos to score (files or folders)")
    try:
        ref = read_reference(reference) if reference is not None else None
    except CalibrationError as err:
        raise SystemExit(f"w2svqa score: --reference {err}") from None
    calibration = None
    if checkpoint is not None:
        from lightning_modules.checkpoints import read_calibration
        from lightning_modules.teachers.student import StudentTeacher

        scorer = StudentTeacher(checkpoint)
        calibration = read_calibration(checkpoint)
        if calibration is None:  # said once, on stderr: stdout may be the CSV
            hint = f"add one with `w2svqa calibrate {checkpoint} --labels TABLE`"
            print(f"{checkpoint}: no calibration, so raw scores only (no mos column); {hint}",
                  file=sys.stderr)  # fmt: skip
        else:
            print(f"{checkpoint}: {calibration.describe()}", file=sys.stderr)
    else:
        scorer = _load_teacher(teacher)
    videos = pd.concat([_videos_at(p, load_videos) for p in paths], ignore_index=True)
    videos = videos.drop_duplicates("path").reset_index(drop=True)
    videos["video_id"] = videos["path"]  # a CSV row per path given, however it was found
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "scores.parquet"
        # with the CSV on stdout, no progress bar may share it
        quiet = {"enable_progress_bar": False} if output is None else None
        summary = label_videos(scorer, videos, table, batch_size, workers, trainer=quiet)
        scores = read_scores(table).set_index("path").reindex(videos.path)
    rows = score_columns(scores.reset_index(), calibration, ref)
    if output is None:
        rows.to_csv(sys.stdout, index=False)
    else:
        from datamodules._io import atomic_write

        atomic_write(output, lambda p: rows.to_csv(p, index=False))
        print(f"{output}: {summary.scored} scored, {summary.failed} failed", file=sys.stderr)


def _videos_at(path: str, load_videos):
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        return load_videos(p)
    # a single file is scored as given, even if unreadable: the error column says why
    return pd.DataFrame({"video_id": [str(p)], "path": [str(p)]})


def calibrate(
    student: Path,
    labels: Path | None = None,
    dataset: str | None = None,
    root: Path | None = None,
    mos_range: tuple[float, float] | None = None,
    scale: str | None = None,
    output: Path | None = None,
    batch_size: int = 8,
    workers: int = 2,
) -> None:
    """Calibrate a student: map its raw scores onto a labelled set's MOS, kept in its file.

    The map is the 4-parameter logistic fitted on the set; `w2svqa score` then writes a `mos`
    column (on the named scale) beside the raw `score`.

    Args:
        student: The student file (.safetensors, or a training .ckpt).
        labels: A labelled table (.parquet/.csv with path and mos, score or vmaf; labels.txt);
            or, with --dataset and --root, that dataset's label file if not the official one.
        dataset: Instead: a dataset reader (konvid_1k, lsvq_test, ...) whose MOS scale names it.
        root: The dataset's folder.
        mos_range: Its MOS scale, for formats without one (labels_txt, generic).
        scale: The scale's name in the output (default: "VMAF 0-100" for VMAF labels, the
            dataset's MOS range, else the label column and its range).
        output: Where to write the calibrated student (default: in place; beside a .ckpt).
        batch_size: Videos per forward pass.
        workers: Decoding processes.
    """
    from lightning_modules.calibration import CalibrationError, calibrate_student, label_scale

    if dataset is not None:
        from datamodules.datasets import DATASETS, DatasetError, load_dataset

        if root is None:
            raise SystemExit("w2svqa calibrate: --dataset needs --root")
        try:
            loaded = load_dataset(dataset, root, labels, mos_range=mos_range)
        except DatasetError as err:
            raise SystemExit(f"w2svqa calibrate: {err}") from None
        videos, fitted_on = loaded.table, f"{dataset} ({loaded.labels.name})"
        low, high = mos_range or DATASETS[dataset].mos_range
        scale = scale or f"{dataset} MOS {low:g}-{high:g}"
    elif labels is not None:
        from datamodules.video_table import VideoTableError, load_labelled_videos

        try:
            videos = load_labelled_videos(labels)
        except VideoTableError as err:
            raise SystemExit(f"w2svqa calibrate: {err}") from None
        fitted_on, scale = labels.name, scale or label_scale(labels, videos.mos)
    else:
        raise SystemExit("w2svqa calibrate: give --labels TABLE, or --dataset NAME --root DIR")
    try:
        out, calibration = calibrate_student(
            student, videos, scale, fitted_on, output, batch_size, workers
        )
    except CalibrationError as err:
        raise SystemExit(f"w2svqa calibrate: {err}") from None
    b1, b2, b3, b4 = calibration.params
    print(f"{out}: {calibration.describe()}; β = {b1:.4g}, {b2:.4g}, {b3:.4g}, {b4:.4g}")


def ui(tracking_uri: str = "sqlite:///mlruns/mlflow.db", host: str = "127.0.0.1", port: int = 5000):
    """Start the MLflow UI for the experiment store (Ctrl-C stops it); open the printed address.

    Args:
        tracking_uri: The store `w2svqa run` logged to.
        host: Interface to listen on (127.0.0.1: this machine only).
        port: Port to listen on.
    """
    from experiments.tracking import UIError, serve_ui

    try:
        serve_ui(tracking_uri, host, port)
    except UIError as err:
        raise SystemExit(f"w2svqa ui: {err}") from None


def sweep(
    sweep_file: Path | None = None,
    output_dir: Path | None = None,
    tracking_uri: str | None = None,
    parallel: int | None = None,
) -> None:
    """Run a sweep: a base experiment and a grid of overrides, one MLflow child run per trial.

    Args:
        sweep_file: The sweep YAML (base, name, grid, parallel); given as the first argument.
        output_dir: Folder of the trials (default: runs/NAME).
        tracking_uri: MLflow store (default: sqlite:///mlruns/mlflow.db).
        parallel: Trials at once (default: the file's `parallel`, else 1).
    """
    from experiments.sweep import run_sweep
    from experiments.tracking import StoreError

    if sweep_file is None:
        raise SystemExit("w2svqa sweep: give the sweep file, e.g. experiments/sweeps/rounds.yaml")
    try:
        run_sweep(sweep_file, output_dir, tracking_uri, parallel)
    except StoreError as err:
        raise SystemExit(f"w2svqa sweep: {err}") from None


def finetune(
    checkpoint: Path | None = None,
    dataset: str | None = None,
    root: Path | None = None,
    labels: Path | None = None,
    mos_range: tuple[float, float] | None = None,
    output_dir: Path = Path("runs/finetune"),
    protocol: FinetuneConfig = _FINETUNE,
    workers: int = 2,
) -> None:
    """Fine-tune a student on a labelled dataset the field's way: N seeded 80/20 splits, the
    model chosen on a validation part of each training part (never on test); prints the mean,
    median and standard deviation of the test SRCC, PLCC and KRCC.

    Args:
        checkpoint: The student file (.safetensors) to start from.
        dataset: A dataset reader (lsvq_test, konvid_1k, youtube_ugc, labels_txt, generic, ...).
        root: The dataset's folder.
        labels: Its label file, if not the official name under `root`.
        mos_range: Its MOS scale, for formats without one (labels_txt, generic).
        output_dir: Per-split pair tables and chosen students, splits.csv, summary.csv.
        protocol: Splits, fractions, pairs, steps, validation points, seed.
        workers: Decoding processes.
    """
    from datamodules.datasets import DatasetError, load_dataset
    from experiments.finetune import finetune_protocol

    if checkpoint is None or dataset is None or root is None:
        raise SystemExit("w2svqa finetune: --checkpoint, --dataset and --root are required")
    try:
        loaded = load_dataset(dataset, root, labels, mos_range=mos_range)
    except DatasetError as err:
        raise SystemExit(f"w2svqa finetune: {err}") from None
    try:  # a published splits file (protocol.splits_from) is read here
        per_split, summary = finetune_protocol(
            checkpoint, loaded.table, output_dir, protocol, workers, dataset=dataset
        )
    except DatasetError as err:
        raise SystemExit(f"w2svqa finetune: {err}") from None
    print(per_split.to_string(index=False, float_format="%.3f"))
    print(f"\n{dataset}, {protocol.splits} splits (test SRCC / PLCC / KRCC):")
    print(summary.to_string(float_format="%.3f"))


COMMANDS = {
    "calibrate": calibrate,
    "data": {"sample": data_sample, "probe": data_probe},
    "finetune": finetune,
    "label": label,
    "pairs": {"ensemble": pairs_ensemble, "hard": pairs_hard, "synthetic": pairs_synthetic},
    "score": score,
    "sweep": sweep,
    "train": train,
    "ui": ui,
    "vmaf": vmaf,
}


def main(args: list[str] | None = None) -> None:
    # dataclass fields document themselves with a docstring under each one (litgpt style)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    args = _bare_flags(sys.argv[1:] if args is None else args)
    if args and args[0] == "run":
        run(args[1:])
        return
    if args and args[0] == "evaluate":
        evaluate(args[1:])
        return
    if args and args[0] == "sweep" and len(args) > 1 and not args[1].startswith("-"):
        args = ["sweep", f"--sweep_file={args[1]}", *args[2:]]
    CLI(COMMANDS, args=_score_paths(args))


RUN_HELP = """usage: w2svqa run CONFIG.yaml [--output-dir DIR] [--tracking-uri URI] [--print_config]
                  [--KEY VALUE ...]

Run a weak-to-strong experiment: teachers label the pool, the student learns from their pairs,
round after round; prints the results table, writes DIR/results.json, logs to MLflow.

  CONFIG.yaml          an experiment file (experiments/quickstart.yaml is the default one)
  --output-dir DIR     where the run's tables, students and results go (default: runs/NAME)
  --tracking-uri URI   MLflow store (default: sqlite:///mlruns/mlflow.db); --no-mlflow: none;
                       --mlflow-fallback: the local store if URI does not answer
  --print_config       print the resolved config as YAML and exit
  --KEY VALUE          override any key: --rounds 2, --training.steps [50],
                       --teachers.0.weight 0.5, --student.init_args.frames 4

The experiment keys:
"""


def run(args: list[str]) -> None:
    """`w2svqa run CONFIG.yaml [options] [--KEY VALUE ...]` (see RUN_HELP)."""
    from experiments.config import ConfigError, dump_config, experiment_parser, parse_experiment

    if not args or any(a in ("-h", "--help") for a in args):
        print(RUN_HELP + experiment_parser().format_help().split("options:", 1)[-1])
        return
    options, rest = _run_options(args)
    try:  # printing the config checks it but builds nothing (no model is loaded)
        namespace, experiment = parse_experiment(rest, instantiate=not options["print_config"])
    except ConfigError as err:
        raise SystemExit(f"w2svqa run: {err}") from None
    if experiment is None:
        sys.stdout.write(dump_config(namespace))
        return
    processes = _processes(experiment.training.trainer)
    if processes > 1 and "RANK" not in os.environ:
        _launch(processes, args)  # does not return
    from experiments.runner import run_experiment

    output_dir = options["output_dir"] or f"runs/{experiment.name}"
    from experiments.tracking import StoreError

    try:
        results = run_experiment(
            namespace, experiment, output_dir, tracking_uri=options["tracking_uri"],
            parent_run_id=options["parent_run_id"], run_name=options["run_name"],
            track=not options["no_mlflow"], mlflow_fallback=options["mlflow_fallback"],
        )  # fmt: skip
    except StoreError as err:
        raise SystemExit(f"w2svqa run: {err}") from None
    print(f"\n{output_dir}/results.json written; final student {results['final_checkpoint']}; "
          f"{results['seconds']:.0f} s in all")  # fmt: skip
    if "mlflow" in results:
        print(f"MLflow run {results['mlflow']['run_id']} in {results['mlflow']['tracking_uri']} "
              "(see it with `w2svqa ui`)")  # fmt: skip


EVALUATE_HELP = """usage: w2svqa evaluate (--checkpoint STUDENT | --teacher NAME_OR_YAML)...
                       --dataset NAME --root DIR [--labels FILE] [--dataset NAME --root DIR ...]
                       [--output-dir DIR] [--batch-size 8] [--workers 2]
                       [--tracking-uri URI | --no-mlflow]
       w2svqa evaluate --predictions FILE [--score-column C] [--name-column C]...
                       --dataset NAME --root DIR [--labels FILE] [--dataset ...] [--output-dir DIR]

Zero-shot evaluation of students and teachers on labelled datasets, the field's way: SRCC, KRCC,
PLCC and RMSE per set (PLCC and RMSE raw and after a logistic fit), the video-weighted overall, a
markdown table beside the published numbers (DIR/table.md), per-video CSVs, scatter plots,
DIR/results.json and an MLflow run. Scores are kept in DIR/scores: a re-run scores only what is new.
With --predictions, a table another tool wrote is scored against the label files alone (no video
needs to be on disk); its rows that match no labelled video are counted and named.

  --checkpoint FILE    a student file (.safetensors) or training checkpoint; repeatable
  --teacher NAME       a registered teacher or a YAML file {{name:, args:}}; repeatable
  --predictions FILE   a prediction table (.csv, .txt, .parquet): `w2svqa score`'s CSV, DOVER's CSV,
                       labels.txt lines, or any `name, score` table; repeatable; matched to the
                       labels by video id / file name without extension
  --score-column C     its score column (default: prediction, score, ..., DOVER's overall score)
  --name-column C      its video-name column (default: video_id, path, name, ... each tried)
  --dataset NAME       a dataset reader: {datasets}
  --root DIR           the dataset's folder (after its --dataset)
  --labels FILE        its label file, if not the official name under --root
  --as NAME            its name in the table (default: the reader's)
  --mos-range LOW,HIGH its MOS scale, for formats without one (labels_txt, generic)
  --output-dir DIR     default: runs/evaluate
"""


def evaluate(args: list[str]) -> None:
    """`w2svqa evaluate ...` (see EVALUATE_HELP)."""
    from datamodules.datasets import DATASETS, DatasetError
    from experiments.predictions import PredictionError
    from experiments.zero_shot import (
        DatasetRef,
        ModelRef,
        PredictionRef,
        evaluate_models,
        evaluate_predictions,
        load_labels,
        load_sets,
    )

    if not args or any(a in ("-h", "--help") for a in args):
        print(EVALUATE_HELP.format(datasets=", ".join(DATASETS)))
        return
    models, files, refs, options = _evaluate_args(args)
    if not (models or files) or not refs:
        raise SystemExit(
            "w2svqa evaluate: give a --checkpoint, --teacher or --predictions and a --dataset"
        )
    if models and files:
        raise SystemExit(
            "w2svqa evaluate: --predictions goes without --checkpoint / --teacher (score the "
            "videos with `w2svqa score --output FILE.csv` and pass that file as --predictions)"
        )
    out = options.get("output_dir", "runs/evaluate")
    tracking = {"tracking_uri": options.get("tracking_uri"), "track": "no_mlflow" not in options}
    try:
        if files:
            labels = load_labels([DatasetRef(**ref) for ref in refs])
            evaluate_predictions([PredictionRef(**f) for f in files], labels, out, **tracking)
            return
        sets = load_sets([DatasetRef(**ref) for ref in refs])
    except (DatasetError, PredictionError) as err:
        raise SystemExit(f"w2svqa evaluate: {err}") from None
    evaluate_models(
        [ModelRef(**m) for m in models], sets, out,
        int(options.get("batch_size", 8)), int(options.get("workers", 2)), **tracking,
    )  # fmt: skip


def _evaluate_args(args: list[str]) -> tuple[list[dict], list[dict], list[dict], dict]:
    """Group `--dataset N --root R [--labels L]` and `--predictions F [--score-column C]` runs;
    collect models and the other options."""
    models, files, refs, options = [], [], [], {}
    i = 0
    while i < len(args):
        flag, _, value = args[i].partition("=")
        key = flag.lstrip("-").replace("-", "_")
        if key == "no_mlflow":
            options[key], i = True, i + 1
            continue
        if not value:
            if i + 1 >= len(args):
                raise SystemExit(f"w2svqa evaluate: {flag} needs a value")
            value, i = args[i + 1], i + 1
        i += 1
        if key in ("checkpoint", "teacher"):
            models.append({key: value})
        elif key == "predictions":
            files.append({"file": value})
        elif key in ("score_column", "name_column"):
            if not files:
                raise SystemExit(f"w2svqa evaluate: {flag} belongs after a --predictions")
            files[-1][key] = value
        elif key == "dataset":
            refs.append({"name": value})
        elif key in ("root", "labels", "as", "mos_range"):
            if not refs:
                raise SystemExit(f"w2svqa evaluate: {flag} belongs after a --dataset")
            refs[-1][{"as": "title"}.get(key, key)] = (
                _pair_of_floats(flag, value) if key == "mos_range" else value
            )
        elif key in ("output_dir", "batch_size", "workers", "tracking_uri"):
            options[key] = value
        else:
            raise SystemExit(f"w2svqa evaluate: unknown option {flag} (see --help)")
    for ref in refs:
        if "root" not in ref:
            raise SystemExit(f"w2svqa evaluate: --dataset {ref['name']} needs a --root")
    return models, files, refs, options


def _pair_of_floats(flag: str, value: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in value.split(","))
    except ValueError:
        raise SystemExit(f"w2svqa evaluate: {flag} expects LOW,HIGH, got {value!r}") from None
    return low, high


def _processes(trainer) -> int:
    """Training processes on this node that `trainer` asks for."""
    if trainer.num_nodes > 1:
        raise SystemExit(
            "w2svqa run: for several nodes start it on each node with torchrun, e.g. "
            "`torchrun --nnodes N --nproc_per_node G --rdzv_endpoint HOST:PORT "
            "-m experiments.cli run CONFIG.yaml`"
        )
    devices = trainer.devices
    if devices in ("auto", -1, "-1"):
        import torch

        return torch.cuda.device_count() if trainer.accelerator != "cpu" else 1
    return int(devices) if str(devices).isdigit() else len(str(devices).split(","))


def _launch(processes: int, args: list[str]) -> None:
    """Run this same command as `processes` ranks under torchrun: rank 0 makes every stage, all
    ranks train together (DDP over gloo on CPU, NCCL on GPUs, or DeepSpeed)."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={processes}", "-m", "experiments.cli", "run", *args]  # fmt: skip
    print(f"w2svqa run: starting {processes} processes (torchrun)", flush=True)
    sys.stdout.flush()
    os.execv(sys.executable, argv)


_RUN_OPTIONS = ("output_dir", "tracking_uri", "parent_run_id", "run_name")


def _run_options(args: list[str]) -> tuple[dict, list[str]]:
    """Split the run's own options (`--output-dir DIR`, ...) from the experiment's."""
    options: dict = dict.fromkeys(_RUN_OPTIONS) | {
        "print_config": False, "no_mlflow": False, "mlflow_fallback": False,
    }  # fmt: skip
    rest, i = [], 0
    while i < len(args):
        flag, _, value = args[i].partition("=")
        key = flag.lstrip("-").replace("-", "_")
        if flag.startswith("--") and key in ("print_config", "no_mlflow", "mlflow_fallback"):
            options[key] = value.lower() not in ("false", "0", "no") if value else True
        elif flag.startswith("--") and key in _RUN_OPTIONS:
            if not value:
                if i + 1 >= len(args):
                    raise SystemExit(f"w2svqa run: {flag} needs a value")
                i += 1
                value = args[i]
            options[key] = value
        else:
            rest.append(args[i])
        i += 1
    return options, rest


def _bare_flags(args: list[str]) -> list[str]:
    """`--list` alone means `--list=true` (jsonargparse wants a value for every bool)."""
    out = []
    for i, arg in enumerate(args):
        bare = arg == "--list" and (i + 1 == len(args) or args[i + 1].lower() not in BOOLS)
        out.append("--list=true" if bare else arg)
    return out


BOOLS = ("true", "false", "yes", "no", "1", "0")


def _score_paths(args: list[str]) -> list[str]:
    """`w2svqa score [options] PATH...`: gather the free arguments into `--paths` (jsonargparse
    reads one positional list only in its own bracket syntax)."""
    if not args or args[0] != "score" or any(a in ("-h", "--help") for a in args):
        return args
    options, paths, i = [], [], 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("--") and "=" not in arg and i + 1 < len(args):
            options += [arg, args[i + 1]]  # every score option takes a value
            i += 2
            continue
        (options if arg.startswith("--") else paths).append(arg)
        i += 1
    return ["score", *options, *([f"--paths={json.dumps(paths)}"] if paths else [])]


if __name__ == "__main__":
    main()
