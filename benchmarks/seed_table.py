"""Mean ± std over seeds of every row of a run's results table, and the verdict of each seed.

    python -m benchmarks.seed_table runs/sweep_seeds [--csv seed_table.csv]
    python -m benchmarks.seed_table runs/sweep_level_loss \
        --choose validation,validation_unseen --default level_loss=squared,level_step=0.02

Reads each trial's `results.json` under the folder (a `w2svqa sweep` of `seed`, e.g.
experiments/sweeps/seeds.yaml) and prints, per model and set, SRCC mean ± std over the seeds; then
per seed and set, the last student's SRCC minus the best teacher's and the weak ensemble's. A
sweep over seeds and other keys (experiments/sweeps/iteration.yaml) gets one table per setting of
the other keys. `--choose` applies the decision rule of the sweeps since `level_loss.yaml`: a
setting's score is the mean over its seeds of the last student's SRCC averaged over the named sets;
the best-scoring setting replaces `--default` only if it beats the default's score by more than
the larger of the two settings' std over seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def load_trials(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every results row with its seed, every verdict entry with its seed)."""
    rows, verdicts = [], []
    for results in sorted(folder.glob("*/results.json")):
        try:
            data = json.loads(results.read_text())
            config = (results.parent / "config.yaml").read_text()
            seed = next(int(line.split(":")[1]) for line in config.splitlines()
                        if line.startswith("seed:"))  # fmt: skip
        except (OSError, ValueError, StopIteration) as err:
            reason = f"{type(err).__name__}: {err}"
            raise SystemExit(
                f"{results.parent}: not a finished trial ({reason}); re-run the sweep"
            ) from err
        setting = _settings(folder).get(results.parent.name, "")
        rows += [{**r, "seed": seed, "setting": setting} for r in data["rows"]]
        verdicts += [{**v, "seed": seed, "setting": setting} for v in data.get("verdict", [])]
    if not rows:
        raise SystemExit(f"{folder}: no */results.json; run `w2svqa sweep` first")
    return pd.DataFrame(rows), pd.DataFrame(verdicts)


def _settings(folder: Path) -> dict[str, str]:
    """Each trial's grid point without its seed, from the sweep's summary.csv ("" without one):
    a sweep over seeds and other keys gets one table per setting of the other keys."""
    summary = folder / "summary.csv"
    if not summary.is_file():
        return {}
    table = pd.read_csv(summary).drop_duplicates("trial")
    other = (
        table.settings.fillna("")
        .str.split(",")
        .map(lambda parts: ",".join(p for p in parts if not p.startswith("seed=")))
    )
    return dict(zip(table.trial, other, strict=True))


def seed_table(rows: pd.DataFrame, metric: str = "srcc") -> pd.DataFrame:
    """model x set: "mean ± std" of `metric` over seeds, models in order of appearance."""
    stats = rows.groupby(["model", "set"], sort=False)[metric].agg(["mean", "std", "count"])
    spread = stats["std"].fillna(0.0)  # one seed: no spread
    stats["cell"] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(stats["mean"], spread, strict=True)]
    table = stats["cell"].unstack("set")
    models = list(dict.fromkeys(rows.model))
    return table.reindex(index=models, columns=list(dict.fromkeys(rows.set)))


def choose(rows: pd.DataFrame, sets: list[str], default: str) -> tuple[pd.DataFrame, str]:
    """(setting x score table, best first; the rule's verdict) for the last round's student."""
    students = rows[rows.model.str.fullmatch(r"student:round\d+")]
    last = students[students["round"] == students["round"].max()]
    missing = sorted(set(sets) - set(last.set))
    if missing:
        raise SystemExit(f"no results on {', '.join(missing)}; sets: {sorted(set(last.set))}")
    per_seed = last[last.set.isin(sets)].groupby(["setting", "seed"]).srcc.mean()
    table = per_seed.groupby("setting").agg(["mean", "std", "count"]).fillna(0.0)
    table = table.sort_values("mean", ascending=False)
    if default not in table.index:
        raise SystemExit(f"--default {default!r} is not a setting; settings: {list(table.index)}")
    best = table.index[0]
    gain = table.loc[best, "mean"] - table.loc[default, "mean"]
    spread = max(table.loc[best, "std"], table.loc[default, "std"])
    if best != default and gain > spread:
        verdict = f"replace {default} with {best}: +{gain:.3f}, beyond the spread {spread:.3f}"
    else:
        verdict = f"keep {default}: the best ({best}) gains {gain:+.3f}, spread {spread:.3f}"
    return table, verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--csv", type=Path, help="also write the mean ± std table here")
    parser.add_argument("--choose", help="comma-separated sets the rule averages (module doc)")
    parser.add_argument("--default", help="with --choose: the setting that stays unless beaten")
    args = parser.parse_args()
    if bool(args.choose) != bool(args.default):
        parser.error("--choose and --default go together")
    rows, verdicts = load_trials(args.folder)
    tables = []
    for setting, group in rows.groupby("setting", sort=False):
        table = seed_table(group)
        seeds = sorted(int(s) for s in group.seed.unique())
        title = f" ({setting})" if setting else ""
        print(f"SRCC, mean ± std over seeds {seeds}{title}\n{table.to_string()}\n")
        tables.append(table.assign(setting=setting) if setting else table)
    if args.csv:
        pd.concat(tables).to_csv(args.csv)
    if len(verdicts):
        print("per seed: the last student's SRCC minus the best teacher's / the ensemble's")
        cols = ["setting", "set", "seed", "student", "srcc", "best_teacher",
                "minus_best_teacher", "minus_ensemble"]  # fmt: skip
        order = verdicts[cols].sort_values(["setting", "set", "seed"], kind="stable")
        print(order.drop(columns=[] if verdicts.setting.any() else ["setting"])
              .to_string(index=False))  # fmt: skip
    if args.choose:
        sets = args.choose.split(",")
        table, verdict = choose(rows, sets, args.default)
        print(f"\nthe rule: last student's SRCC, mean of {' and '.join(sets)}, over seeds")
        print(table.to_string(float_format="%.3f"))
        print(verdict)


if __name__ == "__main__":
    main()
