"""`w2svqa train` and `w2svqa finetune`: a student from pair tables, or on a labelled dataset."""

from __future__ import annotations

from pathlib import Path

from jsonargparse import lazy_instance

from datamodules.errors import UserError
from experiments.finetune import FinetuneConfig
from lightning_modules.losses import OrderedProbit, PairLoss
from lightning_modules.students.base import Student
from lightning_modules.students.compact import CompactStudent
from lightning_modules.training import OptimConfig

_OPTIM = OptimConfig()
_FINETUNE = FinetuneConfig()
# Built only when the command runs; the feature cache makes later epochs and rounds cheap.
_COMPACT = lazy_instance(CompactStudent, feature_cache="data/features")
_ORDERED_PROBIT = lazy_instance(OrderedProbit)


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
    curve_every: int = 10,
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
        curve_every: Write the loss, learning rate and gradient norm every so many steps to
            OUT_curve.csv beside the student file.
    """
    from experiments.train import train_student, validation_table
    from lightning_modules.training_callbacks import curve_file

    tables = [p.strip() for p in pairs.split(",") if p.strip()]
    for table in tables:
        if not Path(table).is_file():
            raise UserError(f"{table}: no such pair table (run `w2svqa pairs ...` first)")
    val_sets = dict(_name_value(v, "--val") for v in (val or "").split(",") if v.strip())
    from lightning_modules.students.base import seeded_student

    student = seeded_student(student.spec(), seed)  # rebuilt: the new layers' init follows the seed
    result = train_student(
        student, loss, tables, out, val_sets=val_sets, optim=optim, steps=steps,
        batch_size=batch_size, workers=workers, seed=seed, curve_every=curve_every,
    )  # fmt: skip
    print(f"{result.checkpoint}: {result.steps} steps in {result.seconds:.1f} s")
    print(f"training curve (loss, lr, gradient norm per {curve_every} steps): {curve_file(out)}")
    if result.before:
        print(validation_table(result).to_string(index=False, float_format="%.4f"))


def _name_value(text: str, flag: str) -> tuple[str, str]:
    name, sep, value = text.strip().partition("=")
    if not sep or not name or not value:
        raise UserError(f"{flag}: expected NAME=TABLE, got {text.strip()!r}")
    return name, value


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
    """Fine-tune a student on a labelled dataset the field's way (seeded splits, test SRCC).

    N seeded 80/20 splits, the model chosen on a validation part of each training part (never on
    test); prints the mean, median and standard deviation of the test SRCC, PLCC and KRCC.

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
    from datamodules.datasets import load_dataset
    from experiments.finetune import finetune_protocol

    if checkpoint is None or dataset is None or root is None:
        raise UserError("--checkpoint, --dataset and --root are required")
    loaded = load_dataset(dataset, root, labels, mos_range=mos_range)
    # a published splits file (protocol.splits_from) is read here; its errors are DatasetErrors
    per_split, summary = finetune_protocol(
        checkpoint, loaded.table, output_dir, protocol, workers, dataset=dataset
    )
    print(per_split.to_string(index=False, float_format="%.3f"))
    print(f"\n{dataset}, {protocol.splits} splits (test SRCC / PLCC / KRCC):")
    print(summary.to_string(float_format="%.3f"))
