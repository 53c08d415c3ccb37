"""Sweeps: `w2svqa sweep SWEEP.yaml` — one base experiment, a grid of overrides, one trial each.

    base: ../quickstart.yaml          # relative to this file
    name: teacher_mix                 # the sweep's MLflow parent run (default: the file's stem)
    grid:
      rounds: [1, 2, 3]               # a list: the values, named by themselves
      teachers:                       # a mapping: named values (names appear in trial names)
        classical: [...]
        supervised: [...]
    parallel: 1                       # trials at once (>1: separate processes)

Keys are experiment keys, dotted and list-indexed like command-line overrides
(`teachers.0.weight`, `iteration.init`). Trials run in grid order; a trial whose `results.json`
already holds the same resolved config is not run again. The sweep is one MLflow parent run with a
child run per trial, and ends with a summary table (`summary.csv`).
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from datamodules._io import atomic_write
from experiments.config import ConfigError, config_hash, load_yaml, parse_experiment, set_key


@dataclass(frozen=True)
class Trial:
    """One point of the grid: its name and its overrides."""

    name: str
    overrides: dict[str, Any]
    labels: dict[str, str] = field(default_factory=dict)
    """Each swept key's value as the trial's name spells it (a named grid value: its name)."""


def load_sweep(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the sweep file's settings, the base experiment as a mapping)."""
    path = Path(path)
    sweep = load_yaml(path)
    unknown = set(sweep) - {"base", "name", "grid", "parallel"}
    if unknown:
        raise ConfigError(f"{path}: unknown sweep keys {sorted(unknown)}; "
                          "expected base, name, grid, parallel")  # fmt: skip
    if "base" not in sweep or not isinstance(sweep.get("grid"), dict) or not sweep["grid"]:
        raise ConfigError(f"{path}: a sweep needs `base` (an experiment file) and a `grid`")
    base = load_yaml(path.parent / sweep["base"])
    sweep.setdefault("name", path.stem)
    sweep.setdefault("parallel", 1)
    return sweep, base


def grid_trials(grid: dict[str, Any]) -> list[Trial]:
    """Every combination of the grid's values, in order."""
    axes = []
    for key, values in grid.items():
        if isinstance(values, dict):
            axes.append([(key, str(label), value) for label, value in values.items()])
        elif isinstance(values, list) and values:
            axes.append([(key, _short(value), value) for value in values])
        else:
            raise ConfigError(f"grid.{key}: expected a non-empty list or a mapping of named values")
    trials = []
    for combo in itertools.product(*axes):
        name = ",".join(f"{key.split('.')[-1]}={label}" for key, label, _ in combo)
        overrides = {key: value for key, _, value in combo}
        trials.append(Trial(name, overrides, {key: label for key, label, _ in combo}))
    return trials


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 24 else text[:21] + "..."


def trial_config(base: dict[str, Any], trial: Trial, sweep_name: str) -> dict[str, Any]:
    config = copy.deepcopy(base)
    for key, value in trial.overrides.items():
        set_key(config, key, copy.deepcopy(value), f"grid.{key}")
    config["name"] = sweep_name
    return config


def run_sweep(
    path: str | Path,
    output_dir: str | Path | None = None,
    tracking_uri: str | None = None,
    parallel: int | None = None,
    overrides: list[str] | None = None,
) -> pd.DataFrame:
    """Run (or resume) every trial of the sweep at `path`; return the summary table."""
    from experiments.runner import usable_store
    from experiments.tracking import Tracker

    sweep, base = load_sweep(path)
    name, trials = sweep["name"], grid_trials(sweep["grid"])
    out = Path(output_dir or Path("runs") / name)
    parallel = parallel or int(sweep["parallel"])
    # every trial's config is checked before the first one starts
    configs = []
    for i, trial in enumerate(trials):
        folder = out / f"trial{i:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        config = trial_config(base, trial, name)
        config_file = folder / "trial.yaml"
        atomic_write(config_file, lambda p, c=config: p.write_text(yaml.safe_dump(c)))
        namespace, _ = parse_experiment([str(config_file), *(overrides or [])])
        configs.append((trial, folder, config_file, config_hash(namespace)))
    tracker = Tracker(name, usable_store(tracking_uri))  # checked before the first trial
    tags = {"sweep": name, "trials": str(len(trials))}
    with tracker.run(f"sweep:{name}", params={"grid": sweep["grid"]}, tags=tags) as parent:
        print(f"sweep {name}: {len(trials)} trials in {out} (MLflow parent run {parent})")
        pending = [c for c in configs if not _finished(c[1], c[3])]
        for trial, *_ in configs:
            if all(trial is not p[0] for p in pending):
                print(f"[{trial.name}] finished before, skipped")
        start = time.perf_counter()
        if parallel > 1:
            _run_parallel(pending, parent, tracking_uri, parallel, overrides or [])
        else:
            for k, (trial, folder, config_file, _) in enumerate(pending, 1):
                elapsed = time.perf_counter() - start
                print(f"\n=== trial {k} of {len(pending)} ({folder.name}: {trial.name}), "
                      f"{elapsed:.0f} s elapsed ===")  # fmt: skip
                _run_trial(trial, folder, config_file, parent, tracking_uri, overrides or [])
        _tag_children(tracker, [(t, f) for t, f, _, _ in configs])
        summary = sweep_summary([(t, f) for t, f, _, _ in configs])
        csv = out / "summary.csv"
        atomic_write(csv, lambda p: summary.to_csv(p, index=False))
        tracker.log_artifact(parent, csv)
    print(f"\nsweep {name}: final student SRCC per trial (best teacher for comparison)")
    print(summary.to_string(index=False, float_format="%.3f"))
    return summary


def _tag_children(tracker, trials: list[tuple[Trial, Path]]) -> None:
    """Each child run gets its grid point as `sweep.KEY` tags (beside the full config in its
    params), so the MLflow compare view of the children lines up the grid."""
    for trial, folder in trials:
        results = folder / "results.json"
        if not results.is_file():
            continue
        run_id = json.loads(results.read_text()).get("mlflow", {}).get("run_id")
        if run_id:
            tracker.set_tags(run_id, {f"sweep.{k}": v for k, v in trial.labels.items()})


def _finished(folder: Path, hash_: str) -> bool:
    results = folder / "results.json"
    if not results.is_file():
        return False
    try:
        return json.loads(results.read_text()).get("config_hash") == hash_
    except json.JSONDecodeError:
        return False


def _run_trial(trial, folder, config_file, parent, tracking_uri, overrides) -> None:
    from experiments.runner import run_experiment

    namespace, experiment = parse_experiment([str(config_file), *overrides])
    run_experiment(namespace, experiment, folder, tracking_uri, parent_run_id=parent,
                   run_name=trial.name)  # fmt: skip


def _run_parallel(pending, parent, tracking_uri, parallel: int, overrides) -> None:
    """Each trial in its own `w2svqa run` process, `parallel` at a time."""
    running: list[tuple[Trial, subprocess.Popen]] = []
    failed = []
    queue = list(pending)
    start, total = time.perf_counter(), len(queue)
    while queue or running:
        while queue and len(running) < parallel:
            trial, folder, config_file, _ = queue.pop(0)
            k = total - len(queue)
            argv = [sys.executable, "-m", "experiments.cli", "run", str(config_file),
                    "--output_dir", str(folder), "--parent_run_id", parent,
                    "--run_name", trial.name, *overrides]  # fmt: skip
            if tracking_uri:
                argv += ["--tracking_uri", tracking_uri]
            log = open(folder / "run.log", "w")  # noqa: SIM115 - closed when the process ends
            elapsed = time.perf_counter() - start
            print(f"[{trial.name}] trial {k} of {total} started, {elapsed:.0f} s elapsed "
                  f"(log: {folder / 'run.log'})")  # fmt: skip
            env = {**os.environ, **thread_share(parallel)}
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
            running.append((trial, process))
        for item in list(running):
            trial, process = item
            if process.poll() is not None:
                running.remove(item)
                state = "finished" if process.returncode == 0 else f"FAILED ({process.returncode})"
                print(f"[{trial.name}] {state} ({time.perf_counter() - start:.0f} s elapsed)")
                if process.returncode != 0:
                    failed.append(trial.name)
        if running:
            time.sleep(1)
    if failed:
        raise RuntimeError(f"trials failed: {', '.join(failed)} (see their run.log)")


def thread_share(parallel: int) -> dict[str, str]:
    """Math-library threads per trial process: the cores divided among the trials at once. Each
    process would otherwise start one thread per core, and `parallel` of them oversubscribe the
    machine many times over (every step then waits on the others' threads)."""
    threads = str(max(1, (os.cpu_count() or 1) // parallel))
    return {k: threads for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def sweep_summary(trials: list[tuple[Trial, Path]]) -> pd.DataFrame:
    """One row per trial and set: the last round's student, the best teacher, the ensemble."""
    rows = []
    for trial, folder in trials:
        results = folder / "results.json"
        if not results.is_file():
            continue
        data = json.loads(results.read_text())
        frame = pd.DataFrame(data["rows"])
        students = frame[frame.model.str.startswith("student:")]
        last = students[students["round"] == students["round"].max()]
        teachers = frame[frame.model.str.startswith("teacher:")]
        for row in last.itertuples():
            best = teachers[teachers.set == row.set].srcc.max() if len(teachers) else float("nan")
            rows.append({"trial": folder.name, "settings": trial.name, "set": row.set,
                         "student_srcc": row.srcc, "student_plcc": row.plcc,
                         "best_teacher_srcc": best})  # fmt: skip
    return pd.DataFrame(rows)
