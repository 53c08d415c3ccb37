"""`w2svqa label`, `w2svqa score` and `w2svqa calibrate`: a teacher or student over videos."""

from __future__ import annotations

import sys
from pathlib import Path

from datamodules.errors import UserError


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
    if list:
        _print_teachers()
        return
    if teacher is None or videos is None or out is None:
        raise UserError("--teacher, --videos and --out are required (or --list)")
    from datamodules.video_table import load_videos
    from lightning_modules.scorers import load_teacher
    from lightning_modules.scoring import label_videos, process_rank

    scorer = load_teacher(teacher)
    summary = label_videos(scorer, load_videos(videos), out, batch_size, workers)
    if process_rank()[0] != 0:  # under torchrun: rank 0 merged the table and reports it
        return
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


def _print_teachers() -> None:
    from lightning_modules.teachers import describe_teachers

    for name, line in describe_teachers():
        print(f"{name}\t{line}")


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
    from lightning_modules.scoring import label_videos, process_rank, read_scores

    if (checkpoint is None) == (teacher is None):
        raise UserError("give exactly one of --checkpoint or --teacher")
    if not paths:
        raise UserError("give the videos to score (files or folders)")
    try:
        ref = read_reference(reference) if reference is not None else None
    except CalibrationError as err:
        raise CalibrationError(f"--reference {err}") from None
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
        from lightning_modules.scorers import load_teacher

        scorer = load_teacher(teacher)
    videos = pd.concat([_videos_at(p, load_videos) for p in paths], ignore_index=True)
    videos = videos.drop_duplicates("path").reset_index(drop=True)
    videos["video_id"] = videos["path"]  # a CSV row per path given, however it was found
    rank, world = process_rank()
    if world > 1:
        # the ranks share one table beside the CSV, kept until the CSV is written, so a killed
        # rank's re-run scores only what is missing
        if output is None:
            raise UserError("under torchrun give --output: the ranks cannot share stdout")
        from experiments.stages import digest, file_digest

        made_by = file_digest(checkpoint) if checkpoint is not None else digest(teacher)
        table = output.with_name(f"{output.name}.{made_by}.scores.parquet")  # another scorer's
        # table is never taken as done
        summary = label_videos(scorer, videos, table, batch_size, workers)
        if rank != 0:
            return
        scores = read_scores(table).set_index("path").reindex(videos.path)
    else:
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
        if world > 1:
            table.unlink()


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
    from lightning_modules.calibration import calibrate_student, label_scale

    if dataset is not None:
        from datamodules.datasets import DATASETS, load_dataset

        if root is None:
            raise UserError("--dataset needs --root")
        loaded = load_dataset(dataset, root, labels, mos_range=mos_range)
        videos, fitted_on = loaded.table, f"{dataset} ({loaded.labels.name})"
        low, high = mos_range or DATASETS[dataset].mos_range
        scale = scale or f"{dataset} MOS {low:g}-{high:g}"
    elif labels is not None:
        from datamodules.video_table import load_labelled_videos

        videos = load_labelled_videos(labels)
        fitted_on, scale = labels.name, scale or label_scale(labels, videos.mos)
    else:
        raise UserError("give --labels TABLE, or --dataset NAME --root DIR")
    from experiments.stages import single_process
    from lightning_modules.scoring import process_rank

    if process_rank()[0] != 0:  # under torchrun: a labelled set is small, rank 0 calibrates alone
        return
    with single_process():
        out, calibration = calibrate_student(
            student, videos, scale, fitted_on, output, batch_size, workers
        )
    b1, b2, b3, b4 = calibration.params
    print(f"{out}: {calibration.describe()}; β = {b1:.4g}, {b2:.4g}, {b3:.4g}, {b4:.4g}")
