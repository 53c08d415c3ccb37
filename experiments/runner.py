"""The round runner: `w2svqa run CONFIG.yaml` — weak-to-strong training from a typed experiment.

    [fit supervised teachers on data.labelled]
    teachers score the pool and the evaluation sets            (data.cache/scores, shared by runs)
    round 1: ensemble pairs + synthetic pairs -> train the student -> evaluate
    round k: the previous student joins (or replaces) the teachers; ensemble pairs afresh;
             hard cases (gMAD pairs, wrongly ordered synthetic pairs); the pairs of rounds 1..k;
             the student continues (or restarts) -> evaluate
    [calibrate the final student on data.labelled: raw scores -> its MOS scale]
    results.json, the results table, MLflow run (params, tags, per-round metrics, artifacts)

Every stage's output is keyed by its inputs (`experiments.stages`), so a re-run skips what is
done and a killed run resumes. Under torchrun every rank labels and scores a shard of the videos
(rank 0 merges the tables) and all ranks train together; the other stages (pairs, evaluation,
files) are made on global rank 0 while the other ranks wait for their outputs.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from jsonargparse import Namespace

from datamodules._faults import kill_point
from datamodules._io import atomic_write
from datamodules.video_table import load_labelled_videos, load_videos, pair_table_videos
from experiments.config import Experiment, TeacherEntry, config_hash, dump_config
from experiments.evaluation import evaluate, results_table, verdict, verdict_lines
from experiments.stages import StageLog, digest, file_digest, single_process

STUDENT = "student"


@dataclass
class RunContext:
    """What every stage of one run needs."""

    config: Namespace
    exp: Experiment
    out: Path
    cache: Path
    log: StageLog
    tracker: Any = None  # experiments.tracking.Tracker on rank 0, else a NullTracker
    run_id: str = ""
    anchors: list[str] | None = None  # a comparator student's anchor videos
    # (who, score table) of every scoring job, for the report of skipped videos
    scored: list[tuple[str, Path]] = field(default_factory=list)
    loss: Any = None  # the configured loss, untouched: each round trains a copy


def run_experiment(
    config: Namespace,
    exp: Experiment,
    output_dir: str | os.PathLike,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    track: bool = True,
    mlflow_fallback: bool = False,
) -> dict[str, Any]:
    """Run every round of `exp`; return (and write to `output_dir/results.json`) the results."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ctx = RunContext(config, exp, out, Path(exp.data.cache), StageLog())
    ctx.loss = copy.deepcopy(exp.training.loss)
    start = time.perf_counter()
    from experiments.tracking import NullTracker, Tracker

    ctx.tracker = NullTracker()
    if track and ctx.log.rank == 0:
        ctx.tracker = Tracker(exp.name, usable_store(tracking_uri, mlflow_fallback))
        tags = {"git_commit": _git_commit(), "config_hash": config_hash(config),
                "seed": str(exp.seed), "output_dir": str(out)}  # fmt: skip
        ctx.run_id = ctx.tracker.start_run(
            run_name or out.name, params=config.as_dict(), tags=tags, parent_run_id=parent_run_id
        )
    rank0 = ctx.log.rank == 0
    if rank0:
        atomic_write(out / "config.yaml", lambda p: p.write_text(dump_config(config)))
    try:
        results = _run_rounds(ctx)
    except BaseException as err:  # the MLflow run says how it ended, then the error goes on
        status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
        ctx.tracker.end_run(ctx.run_id, status)
        raise
    results["config_hash"] = config_hash(config)
    results["seconds"] = round(time.perf_counter() - start, 1)
    results["timings"] = ctx.log.timings
    if ctx.tracker.enabled:
        results["mlflow"] = {"tracking_uri": ctx.tracker.tracking_uri, "run_id": ctx.run_id}
        _log_artifacts(ctx, results)
    if rank0:
        atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(results, indent=2)))
    ctx.tracker.log_artifact(ctx.run_id, out / "results.json")
    ctx.tracker.end_run(ctx.run_id, "FINISHED")
    return results


def usable_store(tracking_uri: str | None, fallback: bool = False, timeout: float = 30.0) -> str:
    """The tracking store to log to, checked now; with `fallback`, the local default store when
    the one asked for does not answer (said on the console)."""
    from experiments.tracking import DEFAULT_TRACKING_URI, StoreError, check_store

    try:
        return check_store(tracking_uri, timeout)
    except StoreError as err:
        if not fallback or (tracking_uri or DEFAULT_TRACKING_URI) == DEFAULT_TRACKING_URI:
            raise
        print(f"{err}\nlogging to the local store {DEFAULT_TRACKING_URI} instead")
        return check_store(DEFAULT_TRACKING_URI)


# --- the rounds ---------------------------------------------------------------------------


def _run_rounds(ctx: RunContext) -> dict[str, Any]:
    exp = ctx.exp
    if exp.data.sample_corpus is not None:
        _build_corpus(ctx)
    pool = load_videos(exp.data.pool)
    if exp.data.curate is not None:
        pool = _curate_pool(ctx, pool)
    sets = {name: load_labelled_videos(table) for name, table in exp.data.eval.items()}
    everything = _union(pool, sets)
    _fit_teachers(ctx)
    weak = {e.name: _score(ctx, e, everything) for e in exp.teachers}
    rows: list[dict[str, Any]] = []
    for entry in exp.teachers:
        teacher_rows, _ = evaluate(f"teacher:{entry.name}", weak[entry.name], sets)
        rows += teacher_rows
    synthetic = _synthetic_pairs(ctx, pool)
    ctx.anchors = _anchors(ctx, weak, pool)
    videos = everything if synthetic is None else _union(everything, {}, synthetic)
    pair_tables: list[Path] = []
    student_file: Path | None = None  # round 1 starts from this one, else from a seeded init
    student_scores: pd.DataFrame | None = None
    if exp.score_untrained:  # not for a 7B student: the file alone would be 16 GB
        student_file = _initial_student(ctx)
        untrained = _score_student(ctx, ctx.out / "round0", student_file, videos)
        rows += evaluate("student:round0", untrained, sets)[0]
    for k in range(1, exp.rounds + 1):
        round_dir = ctx.out / f"round{k}"
        tables, weights = _round_teachers(ctx, weak, student_scores, k)
        ensemble_file = _ensemble_pairs(ctx, round_dir, tables, weights, pool, k)
        model = "ensemble" if k == 1 else f"ensemble:round{k}"
        ensemble_rows, _ = evaluate(model, _ensemble_table(ctx, tables, weights), sets, k)
        rows += ensemble_rows
        new = [ensemble_file]
        if k == 1 and synthetic is not None:
            new.append(synthetic)
        if k > 1 and exp.iteration.hard_cases is not None:
            reference = _hard_reference(ctx, weak, k)
            new.append(_hard_pairs(ctx, round_dir, reference, student_scores, pool, synthetic, k))
        pair_tables = [*pair_tables, *new] if exp.iteration.cumulative else new
        student_file = _train(ctx, round_dir, pair_tables, student_file, k)
        student_scores = _score_student(ctx, round_dir, student_file, videos)
        student_rows, predictions = evaluate(f"student:round{k}", student_scores, sets, k)
        rows += student_rows
        _save_predictions(ctx, round_dir, predictions, k)
        metrics = {f"{r['set']}/{m}": r[m] for r in student_rows for m in ("srcc", "plcc",
                   "krcc", "rmse")}  # fmt: skip
        metrics |= {f"ensemble/{r['set']}/srcc": r["srcc"] for r in ensemble_rows}
        ctx.tracker.log_metrics(ctx.run_id, metrics, step=k)
    teacher_metrics = {f"{r['model']}/{r['set']}/srcc": r["srcc"] for r in rows if r["round"] == 0}
    ctx.tracker.log_metrics(ctx.run_id, teacher_metrics, step=0)
    calibrated = _calibrate(ctx, student_file)
    skipped = _skipped_report(ctx, videos)
    if ctx.log.rank == 0:
        table = results_table(rows)
        print("\nSRCC / PLCC (raw predictions; RMSE after a logistic fit is in results.json)")
        print(table.to_string())
    judged = verdict(rows)
    if ctx.log.rank == 0 and judged:
        print("\nweak-to-strong verdict (the last round's student against its weak teachers):")
        print("\n".join("  " + line for line in verdict_lines(judged)))
    return {"name": exp.name, "rows": rows, "verdict": judged,
            "final_checkpoint": str(student_file), "output_dir": str(ctx.out),
            "calibrated_student": calibrated and str(calibrated),
            "skipped_videos": skipped}  # fmt: skip


def _skipped_report(ctx: RunContext, videos: pd.DataFrame) -> int:
    """Every video a teacher or the student could not score, with the reason, in
    `skipped_videos.csv` (and MLflow); returns how many distinct videos."""
    from lightning_modules.scoring import read_scores

    parts = []
    for who, table in ctx.scored:
        scores = read_scores(table)
        failed = scores[(scores.status != "ok") & scores.video_id.isin(videos.video_id)]
        parts.append(failed.assign(scorer=who)[["video_id", "path", "scorer", "error"]])
    report = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if report.empty or ctx.log.rank != 0:
        return 0 if report.empty else report.video_id.nunique()
    csv = ctx.out / "skipped_videos.csv"
    atomic_write(csv, lambda p: report.to_csv(p, index=False))
    count = report.video_id.nunique()
    print(f"{count} videos could not be scored by some model: reasons in {csv}")
    ctx.tracker.log_artifact(ctx.run_id, csv)
    return count


def _build_corpus(ctx: RunContext) -> None:
    from datamodules.sample_corpus import build_sample_corpus

    config = ctx.exp.data.sample_corpus  # clips already made are reused: a re-run is quick

    def make(manifest: Path) -> None:
        summary = build_sample_corpus(manifest.parent, config)
        if summary["failed"]:
            raise RuntimeError(f"sample corpus: {len(summary['failed'])} clips failed, e.g. "
                               f"{summary['failed'][0]}")  # fmt: skip

    manifest = Path(ctx.exp.data.sample_dir) / "manifest.json"
    ctx.log.run("sample corpus", manifest, _as_dict(config), make)


def _as_dict(value: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value


def _curate_pool(ctx: RunContext, pool: pd.DataFrame) -> pd.DataFrame:
    """The pool videos that `data.curate` keeps (OUTPUT_DIR/curation/: the list, the distances
    to the target of a random sample and of the curated pool, their histograms)."""
    from experiments.curation import curate

    config = ctx.exp.data.curate
    target = load_videos(config.target)
    key = {"config": _as_dict(config), "pool": _frame_digest(pool),
           "target": _frame_digest(target), "seed": ctx.exp.seed}  # fmt: skip

    def make(out: Path) -> None:  # every rank labels the statistics, rank 0 chooses
        exp = ctx.exp
        found = curate(pool, target, config, out.parent, ctx.cache, exp.seed, exp.eval_batch_size,
                       exp.data.workers, _label_trainer(ctx))  # fmt: skip
        if found is not None:
            mean = found.distances.iloc[-1]
            print(f"  kept {len(found.chosen)} of {len(pool)} pool videos ({found.method}); "
                  f"mean distance to the target {mean.random:.3f} (random) -> "
                  f"{mean.curated:.3f} (curated)")  # fmt: skip

    out = ctx.log.run("curate the pool", ctx.out / "curation" / "curated.parquet", key, make,
                      collective=True)  # fmt: skip
    kept = set(pd.read_parquet(out).video_id.astype(str))
    return pool[pool.video_id.astype(str).isin(kept)].reset_index(drop=True)


def _union(pool: pd.DataFrame, sets: dict[str, pd.DataFrame], pairs: Path | None = None):
    """Every distinct video (`video_id`, `path`) of the pool, the sets and a pair table's sides;
    one id naming two different files is an error."""
    parts = [pool[["video_id", "path"]], *(s[["video_id", "path"]] for s in sets.values())]
    if pairs is not None:  # the paths as the pair table gives them (as training reads them)
        parts.append(pair_table_videos(pd.read_parquet(pairs)))
    videos = pd.concat(parts, ignore_index=True).drop_duplicates()
    clash = videos.video_id[videos.video_id.duplicated()]
    if len(clash):
        raise ValueError(
            f"video id {clash.iloc[0]!r} names two different files across data.pool and "
            "data.eval; give the tables a video_id column that tells them apart"
        )
    return videos.reset_index(drop=True)


# --- teachers -----------------------------------------------------------------------------


def _teacher_spec(ctx: RunContext, entry: TeacherEntry) -> dict[str, Any]:
    index = ctx.exp.teachers.index(entry)
    spec = ctx.config.teachers[index].teacher
    spec = spec.as_dict() if isinstance(spec, Namespace) else spec
    from lightning_modules.teachers.base import TrainableTeacher

    if isinstance(entry.teacher, TrainableTeacher) and entry.teacher.fitted:
        spec = {**spec, "model_digest": file_digest(entry.teacher.model)}
    return spec


def _fit_teachers(ctx: RunContext) -> None:
    """Fit each trainable teacher that has no model on `data.labelled` (cached by both)."""
    from lightning_modules.teachers.base import TrainableTeacher

    todo = [
        e
        for e in ctx.exp.teachers
        if isinstance(e.teacher, TrainableTeacher) and not e.teacher.fitted
    ]
    if not todo:
        return
    labelled = ctx.exp.data.labelled
    if labelled is None:
        names = ", ".join(e.name for e in todo)
        raise ValueError(f"teachers {names} need fitting but data.labelled is not set")
    videos = load_labelled_videos(labelled)
    for entry in todo:
        key = {"teacher": _teacher_spec(ctx, entry), "labelled": file_digest(labelled),
               **({"identity": i} if (i := entry.teacher.fit_identity()) else {})}  # fmt: skip
        out = ctx.cache / "teachers" / f"{entry.name}-{digest(key)}.npz"
        ctx.log.run(
            f"fit teacher {entry.name}", out, key, lambda p, e=entry: e.teacher.fit(videos, p)
        )
        entry.teacher.load(out)


def _score(ctx: RunContext, entry: TeacherEntry, videos: pd.DataFrame) -> pd.DataFrame:
    """The teacher's scores of `videos`, from its table in the shared cache (only missing videos
    are scored)."""
    from lightning_modules.scoring import label_videos, read_scores

    spec = _teacher_spec(ctx, entry)
    table = ctx.cache / "scores" / f"{entry.name}-{digest(spec)}.parquet"

    def make(out: Path) -> None:  # resumes: only videos without a score are scored
        summary = label_videos(entry.teacher, videos, out, ctx.exp.eval_batch_size,
                               ctx.exp.data.workers, trainer=_label_trainer(ctx))  # fmt: skip
        if summary.failed:
            print(f"  {entry.name}: {summary.failed} videos failed (error column of {out})")

    key = {"teacher": spec, "videos": _frame_digest(videos)}
    ctx.log.run(f"score with {entry.name}", table, key, make, collective=True)  # every rank a shard
    ctx.scored.append((f"teacher:{entry.name}", table))
    return _ok_scores(read_scores(table), videos)


def _label_trainer(ctx: RunContext) -> dict[str, Any] | None:
    """Under torchrun, label on the training's accelerator: the first labelling job starts the
    process group that training then reuses, so its backend (gloo, nccl) must be training's."""
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return None
    return {"accelerator": ctx.exp.training.trainer.accelerator}


def _ok_scores(scores: pd.DataFrame, videos: pd.DataFrame) -> pd.DataFrame:
    ok = scores[(scores.status == "ok") & scores.video_id.isin(videos.video_id)]
    return ok[["video_id", "score"]].reset_index(drop=True)


def _round_teachers(
    ctx: RunContext, weak: dict[str, pd.DataFrame], student: pd.DataFrame | None, k: int
) -> tuple[dict[str, pd.DataFrame], dict[str, float]]:
    """Round k's score tables and ensemble weights."""
    tables = dict(weak)
    weights = {e.name: e.weight for e in ctx.exp.teachers}
    mode = ctx.exp.iteration.student_as_teacher
    if k > 1 and student is not None and mode != "none":
        name = f"{STUDENT}:round{k - 1}"
        if mode == "replace":
            tables, weights = {}, {}
        tables[name] = student
        weights[name] = ctx.exp.iteration.student_weight
    return tables, weights


def _mix(ctx: RunContext, weights: dict[str, float]):
    from datamodules.ensemble import TeacherMix

    reference = ctx.exp.ensemble.reference
    if reference is not None and reference not in weights:
        reference = None  # e.g. the reference teacher was replaced by the student
    return TeacherMix(dict(weights), ctx.exp.ensemble.mapping, reference)


def _ensemble_table(ctx: RunContext, tables, weights) -> pd.DataFrame:
    """The ensemble's mean score per video, as a score table."""
    ensemble = _mix(ctx, weights).ensemble(tables, min_teachers=ctx.exp.ensemble.min_teachers)
    return ensemble.rename(columns={"mean": "score"})[["video_id", "score"]]


def _hard_reference(ctx: RunContext, weak: dict[str, pd.DataFrame], k: int) -> pd.DataFrame:
    name = ctx.exp.iteration.hard_reference
    if name == "ensemble":
        weights = {e.name: e.weight for e in ctx.exp.teachers}
        return _ensemble_table(ctx, weak, weights)
    if name not in weak:
        raise ValueError(f"iteration.hard_reference: no teacher {name!r}; teachers: {list(weak)}")
    return weak[name]


# --- pairs --------------------------------------------------------------------------------


def _frame_digest(frame: pd.DataFrame) -> str:
    return digest(pd.util.hash_pandas_object(frame, index=False).tolist())


def _ensemble_pairs(ctx, round_dir: Path, tables, weights, pool: pd.DataFrame, k: int) -> Path:
    from datamodules.ensemble import build_ensemble_pairs

    cfg = ctx.exp.ensemble
    n_pairs = cfg.pairs[min(k, len(cfg.pairs)) - 1]
    key = {
        "tables": {n: _frame_digest(t) for n, t in tables.items()}, "weights": weights,
        "config": _as_dict(cfg), "pairs": n_pairs, "pool": _frame_digest(pool),
        "seed": ctx.exp.seed, "round": k,
    }  # fmt: skip

    def make(out: Path) -> None:
        pool_tables = {n: t[t.video_id.isin(pool.video_id)] for n, t in tables.items()}
        table = build_ensemble_pairs(
            pool_tables, pool, n_pairs, mix=_mix(ctx, weights), strategy=cfg.strategy,
            max_pairs_per_video=cfg.max_pairs_per_video, seed=ctx.exp.seed * 1000 + k,
            round_index=k, min_teachers=cfg.min_teachers,
        )  # fmt: skip
        kill_point("pairs")
        atomic_write(out, lambda p: table.to_parquet(p, index=False))

    return ctx.log.run(
        f"round {k}: ensemble pairs", round_dir / "ensemble_pairs.parquet", key, make
    )


def _synthetic_pairs(ctx: RunContext, pool: pd.DataFrame) -> Path | None:
    from datamodules.synthetic_pairs import build_synthetic_pairs

    config = ctx.exp.synthetic
    if config is None:
        return None
    key = {"config": _as_dict(config), "pool": _frame_digest(pool)}
    renditions = ctx.cache / "renditions"

    def make(out: Path) -> None:
        table = build_synthetic_pairs(pool, renditions, config, round=1)
        atomic_write(out, lambda p: table.to_parquet(p, index=False))

    out = ctx.out / "round1" / "synthetic_pairs.parquet"
    return ctx.log.run("round 1: synthetic pairs", out, key, make)


def _hard_pairs(ctx, round_dir, reference, student_scores, pool, synthetic, k: int) -> Path:
    from datamodules.hard_cases import build_hard_cases

    config = ctx.exp.iteration.hard_cases
    syn = pd.read_parquet(synthetic) if synthetic is not None else None
    key = {
        "config": _as_dict(config), "reference": _frame_digest(reference),
        "student": _frame_digest(student_scores), "pool": _frame_digest(pool),
        "synthetic": file_digest(synthetic) if synthetic else None, "round": k,
    }  # fmt: skip

    def make(out: Path) -> None:
        in_pool = reference[reference.video_id.isin(pool.video_id)]  # gMAD pairs are real videos
        table = build_hard_cases(config, in_pool, student_scores, pool, syn, k)
        atomic_write(out, lambda p: table.to_parquet(p, index=False))

    return ctx.log.run(f"round {k}: hard cases", round_dir / "hard_pairs.parquet", key, make)


# --- the student --------------------------------------------------------------------------


def _initial_student(ctx: RunContext) -> Path:
    """The untrained student (seeded), saved: round 1 starts from it."""
    from lightning_modules.checkpoints import save_student
    from lightning_modules.students.base import seeded_student

    spec = ctx.exp.student.spec()

    def make(out: Path) -> None:
        save_student(seeded_student(spec, ctx.exp.seed), out)

    key = {"student": spec, "seed": ctx.exp.seed}
    return ctx.log.run("untrained student", ctx.out / "round0" / "student.safetensors", key, make)


def _train(
    ctx: RunContext, round_dir: Path, pairs: list[Path], previous: Path | None, k: int
) -> Path:
    from experiments.train import fit_file, replay_fit, train_student
    from lightning_modules.checkpoints import load_student
    from lightning_modules.students.base import seeded_student
    from lightning_modules.training_callbacks import curve_file, replay_curve

    exp, training = ctx.exp, ctx.exp.training
    steps = _round_steps(training.steps, k)
    offset = sum(_round_steps(training.steps, j) for j in range(1, k))  # one curve for all rounds
    restart = previous is None or (k > 1 and exp.iteration.init == "restart")
    spec = exp.student.spec()
    settings = ctx.config.training.as_dict()
    settings.pop("curve_every", None)  # how often the curve is logged does not change the student
    key = {
        "pairs": [file_digest(p) for p in pairs], "student": spec,
        "init": None if restart else file_digest(previous), "steps": steps,
        "training": settings, "seed": exp.seed, "round": k,
    }  # fmt: skip

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        ctx.tracker.log_metrics(ctx.run_id, metrics, step)

    def make(out: Path) -> None:
        # train_student seeds again before training, so loading `previous` needs no seed
        student = seeded_student(spec, exp.seed + k) if restart else load_student(previous)
        # a fresh copy each round: a loss may learn (the ordered probit's cut-points), and a
        # resumed run must not depend on what an earlier round in the same process taught it
        loss = copy.deepcopy(ctx.loss)
        result = train_student(
            student, loss, pairs, out, optim=training.optim, steps=steps,
            batch_size=training.batch_size, workers=training.workers, seed=exp.seed + k,
            trainer=training.trainer.trainer_kwargs(), checkpoint_every=training.checkpoint_every,
            curve_every=training.curve_every, log_metrics=log_metrics, step_offset=offset,
            description=f"round {k}: train",
        )  # fmt: skip
        if result.fit:
            print(
                f"  fitted in closed form to {result.fit['pairs']:.0f} pairs of "
                f"{result.fit['videos']:.0f} videos from {len(pairs)} pair tables; it orders "
                f"{result.fit['pair_accuracy']:.1%} of the non-similar ones as labelled"
            )
        else:
            print(f"  {result.steps} steps on {len(pairs)} pair tables")

    out = round_dir / "student.safetensors"
    logged = len(ctx.log.timings)
    ctx.log.run(f"round {k}: train student", out, key, make, collective=True)
    if ctx.log.rank == 0 and ctx.log.timings[logged]["skipped"]:  # trained by an earlier run
        replay_curve(curve_file(out), log_metrics, offset)  # so that this run shows it too
        replay_fit(fit_file(out), log_metrics, offset)  # a closed-form fit's pairs and accuracy
    return out


def _round_steps(steps: list[int], k: int) -> int:
    """Round k's optimiser steps: the k-th value of `training.steps`, the last one repeating."""
    return steps[min(k, len(steps)) - 1]


def _score_student(ctx: RunContext, round_dir: Path, student: Path, videos: pd.DataFrame):
    from lightning_modules.scoring import label_videos, read_scores
    from lightning_modules.teachers.student import StudentTeacher

    key = {"student": file_digest(student), "videos": _frame_digest(videos), "anchors": ctx.anchors}

    def make(out: Path) -> None:
        teacher = StudentTeacher(student, anchors=ctx.anchors)
        summary = label_videos(teacher, videos, out, ctx.exp.eval_batch_size,
                               ctx.exp.data.workers, trainer=_label_trainer(ctx))  # fmt: skip
        if summary.failed:
            print(f"  the student failed on {summary.failed} videos (error column of {out})")

    out = round_dir / "student_scores.parquet"
    ctx.log.run(f"{round_dir.name}: score with the student", out, key, make, collective=True)
    ctx.scored.append((f"student:{round_dir.name}", out))
    return _ok_scores(read_scores(out), videos)


def _calibrate(ctx: RunContext, student: Path | None) -> Path | None:
    """The final student with a map of its raw scores onto `data.labelled`'s scale (so that
    `w2svqa score` writes MOS), beside it as `student_calibrated.safetensors`; None without
    data.labelled, or where the logistic cannot be fitted (both said on the console)."""
    from lightning_modules.calibration import CalibrationError, calibrate_student, label_scale

    labelled = ctx.exp.data.labelled
    if labelled is None or student is None:
        return None
    if not Path(labelled).is_file():  # the default path, in a run that labels nothing
        print(f"  the final student stays uncalibrated: no data.labelled table {labelled}")
        return None
    videos = load_labelled_videos(labelled)
    key = {"student": file_digest(student), "labelled": file_digest(labelled),
           "anchors": ctx.anchors}  # fmt: skip

    def make(out: Path) -> None:
        with single_process():
            _, calibration = calibrate_student(
                student, videos, label_scale(labelled, videos.mos), Path(labelled).name, out,
                ctx.exp.eval_batch_size, ctx.exp.data.workers, anchors=ctx.anchors,
            )  # fmt: skip
        print(f"  {calibration.describe()}")

    out = student.with_name("student_calibrated.safetensors")
    try:
        return ctx.log.run("calibrate the final student", out, key, make)
    except CalibrationError as err:
        print(f"  the final student stays uncalibrated: {err}")
        return None


def _anchors(ctx: RunContext, weak: dict[str, pd.DataFrame], pool: pd.DataFrame):
    """A comparator student's anchors: pool videos at spread quantiles of the weak ensemble,
    the same in every round (written to anchors.csv)."""
    if ctx.exp.student.readout != "comparator":
        return None
    from lightning_modules.students.llava_onevision import pick_anchors

    weights = {e.name: e.weight for e in ctx.exp.teachers}
    scores = _ensemble_table(ctx, weak, weights)
    scores = scores.merge(pool[["video_id", "path"]], on="video_id")
    anchors = pick_anchors(scores, getattr(ctx.exp.student, "n_anchors", 5))
    if ctx.log.rank == 0:
        atomic_write(ctx.out / "anchors.csv", lambda p: anchors.to_csv(p, index=False))
    return anchors.path.astype(str).tolist()


# --- outputs ------------------------------------------------------------------------------


def _save_predictions(ctx: RunContext, round_dir: Path, predictions, k: int) -> None:
    from experiments.tracking import scatter_plot

    if ctx.log.rank != 0:
        return
    for name, table in predictions.items():
        csv = round_dir / f"predictions_{name}.csv"
        atomic_write(csv, lambda p, t=table: t.to_csv(p, index=False))
        if not ctx.tracker.enabled:  # the plot is for the run's page
            continue
        png = scatter_plot(table.prediction, table.mos, f"student round {k} on {name}",
                           round_dir / f"scatter_{name}.png")  # fmt: skip
        ctx.tracker.log_artifact(ctx.run_id, csv, f"predictions/round{k}")
        ctx.tracker.log_artifact(ctx.run_id, png, f"plots/round{k}")


def _log_artifacts(ctx: RunContext, results: dict[str, Any]) -> None:
    from experiments.tracking import curve_plot

    tracker, run = ctx.tracker, ctx.run_id
    tracker.log_artifact(run, ctx.out / "config.yaml")
    for name in ("distances.csv", "histograms.png"):  # data.curate's report
        if (ctx.out / "curation" / name).is_file():
            tracker.log_artifact(run, ctx.out / "curation" / name, "curation")
    stats = _pair_statistics(ctx.out)
    if not stats.empty:
        csv = ctx.out / "pair_statistics.csv"
        atomic_write(csv, lambda p: stats.to_csv(p, index=False))
        tracker.log_artifact(run, csv)
    students = [r for r in results["rows"] if r["model"].startswith(f"{STUDENT}:")]
    if students:
        tracker.log_artifact(run, curve_plot(students, ctx.out / "srcc_per_round.png"), "plots")
    final = results.get("final_checkpoint")
    if final and Path(final).is_file():
        tracker.log_artifact(run, final, "checkpoint")


def _pair_statistics(out: Path) -> pd.DataFrame:
    """Pairs per round, table, source and level: what each round trained on that was new."""
    rows = []
    for table in sorted(out.glob("round*/*_pairs.parquet")):
        pairs = pd.read_parquet(table, columns=["source", "level"])
        counts = pairs.groupby(["source", "level"]).size().reset_index(name="pairs")
        counts.insert(0, "table", table.stem)
        counts.insert(0, "round", table.parent.name)
        rows.append(counts)
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def _git_commit() -> str:
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        done = subprocess.run(
            [git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() or "unknown"
