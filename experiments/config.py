"""The experiment config: one typed schema for every YAML in `experiments/`.

A YAML file's top-level keys are the fields of `Experiment`; teachers, the student and the loss are
chosen by `class_path` (with `init_args`). jsonargparse checks every key and value against these
types before any work starts, and a wrong one fails naming the key and what was expected. Each
experiment file holds only what differs from these defaults.

    w2svqa run experiments/quickstart.yaml --rounds 2 --teachers.0.weight 0.5 --print_config
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, lazy_instance

from datamodules.ensemble import PairStrategy, ScaleMapping
from datamodules.errors import UserError
from datamodules.hard_cases import HardCaseConfig
from datamodules.sample_corpus import CorpusConfig
from datamodules.synthetic_pairs import SyntheticPairConfig
from lightning_modules.losses import OrderedProbit, PairLoss
from lightning_modules.students.base import Student
from lightning_modules.students.compact import CompactStudent
from lightning_modules.teachers.base import Teacher
from lightning_modules.training import OptimConfig


@dataclass
class TeacherEntry:
    """One weak teacher: its name in tables and reports, the teacher itself, its ensemble weight."""

    name: str
    """Short name: score tables, pair statistics and result rows use it (`teacher:NAME`)."""
    teacher: Teacher
    """The teacher (class_path and init_args), e.g.
    lightning_modules.teachers.classical.BlurTeacher.
    A trainable teacher without a model (e.g. RegressorTeacher) is fitted on `data.labelled`
    before round 1."""
    weight: float = 1.0
    """Weight in the ensemble; 0 scores and evaluates the teacher but keeps it out of the pairs."""


@dataclass(frozen=True)
class CurateConfig:
    """Curate the pool before any teacher labels it: keep `n` videos whose nine simple
    statistics' histograms match `target`'s (the paper: 200k of 3M web videos, matched to LSVQ;
    `w2svqa data curate` is the same as a command)."""

    target: str
    """The videos to match: a folder or a table (a labelled dataset, a corpus split)."""
    n: int
    """Pool videos to keep."""
    bins: int = 10
    """Bins per statistic, at the target's quantiles."""
    method: Literal["auto", "milp", "greedy"] = "auto"
    """`milp` (an integer program), `greedy`, or `auto`: milp up to 20,000 pool videos."""


@dataclass(frozen=True)
class DataConfig:
    """Where the videos are: the unlabelled pool, the labelled split, the evaluation sets."""

    pool: str = "data/sample/pool.parquet"
    """Unlabelled videos the pairs are drawn from: a folder, or a table (.parquet, .csv, labels
    .txt) with `path`."""
    labelled: str | None = "data/sample/train_labeled.parquet"
    """Labelled videos that trainable (supervised) teachers are fitted on (the paper: LSVQ-train);
    a table with `path` and `mos`, `score` or `vmaf`. None: no teacher may need fitting."""
    eval: dict[str, str] = field(
        default_factory=lambda: {
            "test_in_domain": "data/sample/test_in_domain.parquet",
            "test_ood": "data/sample/test_ood.parquet",
        }
    )
    """Labelled evaluation sets, NAME -> table; every teacher, the ensemble and each round's
    student are evaluated on each."""
    sample_corpus: CorpusConfig | None = None
    """Build the embedded sample corpus into `sample_dir` first (clips already made are reused);
    None: the videos exist already."""
    workers: int = 2
    """Decoding processes of the labelling and scoring jobs."""
    sample_dir: str = "data/sample"
    """Where `sample_corpus` is built."""
    cache: str = "data/cache"
    """Outputs shared between runs, each keyed by what made it: teachers' score tables, fitted
    teachers, synthetic renditions. Runs of a sweep reuse each other's work through it."""
    curate: CurateConfig | None = None
    """Keep only part of the pool, chosen to match a target set's statistics (written to
    OUTPUT_DIR/curation/); None: the whole pool."""


@dataclass(frozen=True)
class EnsemblePairConfig:
    """Pseudo-labelled pairs from the teacher ensemble, drawn afresh each round."""

    pairs: list[int] | int = field(default_factory=lambda: [500, 150, 150])
    """Pairs drawn per round (the paper: 250k, 85k, 85k); the last value repeats later (one
    number: every round)."""
    mapping: ScaleMapping = "logistic"
    """Common scale of the teachers' scores: logistic (onto `reference`), zscore or rank."""
    reference: str | None = None
    """The teacher whose scale `logistic` maps the others onto; None: the first teacher."""
    strategy: PairStrategy = "uniform"
    """`uniform` random pairs, or `stratified` across quality bins."""
    max_pairs_per_video: int | None = None
    """Cap on the pairs any one video takes part in; None: no cap."""
    min_teachers: int = 1
    """Videos scored by fewer teachers are left out."""

    def __post_init__(self) -> None:
        if isinstance(self.pairs, int):  # `--ensemble.pairs 300`: every round
            object.__setattr__(self, "pairs", [self.pairs])


@dataclass(frozen=True)
class IterationConfig:
    """How round k > 1 differs from round 1 (paper: "Iterative weak-to-strong training")."""

    student_as_teacher: Literal["join", "replace", "none"] = "join"
    """The previous round's student joins the weak teachers, replaces them (the paper's wording:
    "the stage-i student becomes the teacher"), or is not used as a teacher."""
    student_weight: float = 1.0
    """The previous student's ensemble weight when it joins."""
    init: Literal["continue", "restart"] = "restart"
    """The student starts again from its initial weights on the pairs so far (the paper's stage
    times, 19 / 24 / 29 hours, grow with the cumulative 500k / 600k / 700k pairs, as retraining
    would), or continues from the previous round's weights."""
    hard_cases: HardCaseConfig | None = field(default_factory=HardCaseConfig)
    """Hard-case pairs for rounds k > 1 (gMAD pairs and the synthetic pairs the student orders
    wrongly); None: none."""
    hard_reference: str = "ensemble"
    """The weak teacher the student is compared with for gMAD pairs: `ensemble` (the round's
    teacher ensemble) or a teacher's name."""
    cumulative: bool = True
    """Train round k on the pairs of rounds 1..k (the paper's 500k, 600k, 700k), else round k's."""


@dataclass(frozen=True)
class TrainerConfig:
    """Where training runs; the only section that changes between a laptop and a GPU node."""

    accelerator: str = "cpu"
    """cpu, gpu, cuda or auto."""
    devices: int | str = 1
    """Processes (CPU) or GPUs per node; "auto" for all."""
    num_nodes: int = 1
    strategy: str = "auto"
    """A Lightning strategy name: auto, ddp (gloo on CPU, nccl on GPU), ddp_spawn, ... For
    DeepSpeed set `zero_stage` instead."""
    zero_stage: Literal[2, 3] | None = None
    """DeepSpeed ZeRO stage (2: optimiser state and gradients sharded; 3: parameters too)."""
    zero_offload: bool = False
    """Offload the ZeRO optimiser state (and stage-3 parameters) to CPU memory."""
    precision: str = "32-true"
    """32-true, bf16-mixed, 16-mixed, bf16-true."""
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = None

    def trainer_kwargs(self) -> dict[str, Any]:
        """Arguments for `lightning.Trainer`."""
        strategy: Any = self.strategy
        if self.zero_stage is not None:
            from lightning_modules.strategies import zero_strategy

            cpu = self.accelerator == "cpu"
            strategy = zero_strategy(self.zero_stage, self.zero_offload, cpu=cpu)
        return {
            "accelerator": self.accelerator, "devices": self.devices, "num_nodes": self.num_nodes,
            "strategy": strategy, "precision": self.precision,
            "accumulate_grad_batches": self.accumulate_grad_batches,
            "gradient_clip_val": self.gradient_clip_val,
        }  # fmt: skip


@dataclass
class TrainingConfig:
    """One round's training stage."""

    steps: list[int] | int = field(default_factory=lambda: [150])
    """Optimiser steps per round; the last value repeats for later rounds (one number: every
    round)."""
    batch_size: int = 8
    """Pairs per step and device."""
    workers: int = 2
    """Decoding processes."""
    loss: PairLoss = field(default_factory=lambda: lazy_instance(OrderedProbit))
    """The pair loss: OrderedProbit, FidelityLoss, BradleyTerryLoss, MarginLoss for scorers;
    LevelCrossEntropy (the paper's) for comparators."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint_every: int | None = 50
    """Save a resumable checkpoint every so many steps: a killed round resumes from it, mid-epoch,
    and ends as an uninterrupted one would. None: none."""
    curve_every: int = 10
    """Log the training loss, learning rate and gradient norm every so many steps, to the MLflow
    run (steps continue across rounds) and to `roundK/student_curve.csv`."""

    def __post_init__(self) -> None:
        if isinstance(self.steps, int):  # `--training.steps 50`: every round
            self.steps = [self.steps]


def _default_student() -> Student:
    return lazy_instance(CompactStudent, feature_cache="data/cache/features")


@dataclass
class Experiment:
    """A weak-to-strong experiment: teachers label a pool, a student learns from their pairs, and
    from round 2 on the student joins the teachers and learns from its own hard cases."""

    name: str = "experiment"
    """The MLflow experiment the run is logged under; sweeps add the trial to the run name."""
    seed: int = 0
    """One seed for pair draws, initialisation and the pair order."""
    rounds: int = 3
    """Rounds (the paper's stages) of weak-to-strong training."""
    data: DataConfig = field(default_factory=DataConfig)
    teachers: list[TeacherEntry] = field(default_factory=list)
    """The weak teachers."""
    student: Student = field(default_factory=_default_student)
    """The student (class_path and init_args)."""
    ensemble: EnsemblePairConfig = field(default_factory=EnsemblePairConfig)
    synthetic: SyntheticPairConfig | None = field(default_factory=SyntheticPairConfig)
    """Round 1's synthetic pairs (two renditions of one source at different levels); None: none."""
    iteration: IterationConfig = field(default_factory=IterationConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval_batch_size: int = 8
    """Videos per forward pass when scoring with the student."""
    score_untrained: bool = True
    """Score the pool and the sets with the untrained student first: a baseline row
    (`student:round0`), and with a feature cache, training then reads features, not videos."""


class ConfigError(UserError, ValueError):
    """An experiment file that does not fit the schema; the message names the file and key."""


def experiment_parser(
    prog: str = "w2svqa run", options: Callable[..., Any] | None = None, description: str = ""
) -> ArgumentParser:
    """The parser of experiment files and their command-line overrides; `options`: a function
    whose typed parameters are added beside the experiment's keys (the run's own options)."""
    parser = ArgumentParser(
        prog=prog, description=description or Experiment.__doc__, exit_on_error=False
    )
    parser.add_argument("--config", action=ActionConfigFile, help="An experiment YAML file.")
    parser.add_class_arguments(Experiment, as_group=False)
    if options is not None:
        parser.add_function_arguments(options, nested_key=None, as_group=True)
    return parser


def parse_experiment(
    args: Sequence[str], instantiate: bool = True, options: Callable[..., Any] | None = None
) -> tuple[Namespace, Experiment | None]:
    """`[CONFIG.yaml] [--key value ...]` (or `--config CONFIG.yaml`) -> (the resolved config, the
    experiment with its teachers and student built; None with `instantiate=False`, which only
    checks the schema). Overrides may index lists: `--teachers.0.weight 0.5`. A wrong key or value
    is a ConfigError naming where it was (the file or the command line) and the nearest valid key.
    With `options`, the namespace also holds those parameters' values."""
    from experiments.parsing import explain

    args = list(args)
    config_file = args.pop(0) if args and not args[0].startswith("-") else None
    if config_file is None and "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise ConfigError("--config: expected a file")
        config_file = args.pop(at + 1)
        args.pop(at)
    base: dict[str, Any] = {}
    if config_file is not None:
        base = load_yaml(config_file)
    base, rest = _apply_indexed_overrides(base, args, config_file)
    parser = experiment_parser(options=options)
    file_argv = ["--config", yaml.safe_dump(base)] if base else []
    if config_file is not None:  # the file alone first, so its errors are named as its own
        try:
            parser.parse_args(file_argv)
        except Exception as err:
            raise ConfigError(f"{config_file}: {explain(parser, str(err))}") from err
    try:
        namespace = parser.parse_args(file_argv + rest)
    except Exception as err:  # jsonargparse names the key and what it expected
        raise ConfigError(f"the command line: {explain(parser, str(err))}") from err
    namespace.pop("config", None)
    if not instantiate:
        return namespace, None
    where = config_file or "the command line"
    try:
        built = parser.instantiate(namespace)
    except Exception as err:  # a class whose constructor refuses its arguments
        raise ConfigError(f"{where}: {type(err).__name__}: {err}") from err
    return namespace, _experiment_of(built)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML experiment file as a mapping; a missing or malformed file is a ConfigError.

    `extends: OTHER.yaml` (relative to this file) starts from OTHER's mapping: this file's
    mappings merge into it key by key, and its other values (lists too) replace OTHER's."""
    data = _read_yaml(Path(path))
    parent = data.pop("extends", None)
    if parent is None:
        return data
    return merge(load_yaml(Path(path).parent / parent), data)


def merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in: mappings key by key, everything else replaced."""
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of experiment keys, got {type(data).__name__}"
        )
    return data


def _experiment_of(built: Namespace) -> Experiment:
    return Experiment(**{k: built[k] for k in Experiment.__dataclass_fields__})


_INDEXED = re.compile(r"^--([\w.]*\.\d+(?:\.[\w.]*)?)(?:=(.*))?$")


def _apply_indexed_overrides(
    base: dict[str, Any], args: list[str], source: str | None
) -> tuple[dict[str, Any], list[str]]:
    """Apply `--a.0.b value` (which jsonargparse does not read) to the config mapping; return it
    and the other arguments. The value is read as YAML (`0.5`, `true`, `[1, 2]`)."""
    rest, i = [], 0
    while i < len(args):
        match = _INDEXED.match(args[i])
        if not match:
            rest.append(args[i])
            i += 1
            continue
        key, value = match.group(1), match.group(2)
        if value is None:
            if i + 1 >= len(args):
                raise ConfigError(f"--{key}: expected a value")
            value, i = args[i + 1], i + 1
        set_key(base, key, yaml.safe_load(value), source)
        i += 1
    return base, rest


def set_key(config: dict[str, Any], key: str, value: Any, source: str | None = None) -> None:
    """Set `a.0.b` in a nested mapping (lists indexed by number); a missing list item fails."""
    node: Any = config
    parts = key.split(".")
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            index = int(part) if part.isdigit() else None
            if index is None or index >= len(node):
                where = ".".join(parts[:depth]) or "the config"
                raise ConfigError(
                    f"{source or 'config'}: --{key}: {where} has {len(node)} items; "
                    f"no item {part!r}"
                )
            if last:
                node[index] = value
            else:
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{source or 'config'}: --{key}: {parts[depth - 1]} is not a mapping")
        if last:
            node[part] = value
        else:  # keys are the YAML's own: teachers.0.teacher.init_args.frames
            node = node.setdefault(part, {})


def config_hash(config: Namespace | dict[str, Any]) -> str:
    """A short stable hash of a resolved config (for tags and for finding finished trials)."""
    from experiments.stages import digest

    return digest(config.as_dict() if isinstance(config, Namespace) else config)[:12]


def dump_config(config: Namespace) -> str:
    """The resolved config as YAML (what `--print_config` prints and MLflow keeps)."""
    return experiment_parser().dump(config)
