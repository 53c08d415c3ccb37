"""The sweeps' decision rule (`benchmarks.seed_table.choose`): only the last round's student on the
named validation sets decides, and a setting replaces the default only beyond the seeds' spread."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmarks.seed_table import choose


def _rows(srcc: dict[tuple[str, str], list[float]]) -> pd.DataFrame:
    """Results rows of round 3 (and a round 1 and a test set that must not count)."""
    rows = []
    for (setting, split), per_seed in srcc.items():
        for seed, value in enumerate(per_seed):
            rows.append({"model": "student:round3", "round": 3, "set": split, "srcc": value,
                         "seed": seed, "setting": setting})  # fmt: skip
            rows.append({"model": "student:round1", "round": 1, "set": split, "srcc": 1.0,
                         "seed": seed, "setting": setting})  # fmt: skip
            rows.append({"model": "teacher:blur", "round": 0, "set": split, "srcc": 1.0,
                         "seed": seed, "setting": setting})  # fmt: skip
    return pd.DataFrame(rows)


SETS = ["validation", "validation_unseen"]


def test_a_setting_beyond_the_spread_replaces_the_default() -> None:
    rows = _rows({
        ("old", "validation"): [0.70, 0.71, 0.72], ("old", "validation_unseen"): [0.78, 0.79, 0.80],
        ("new", "validation"): [0.74, 0.75, 0.76], ("new", "validation_unseen"): [0.80, 0.81, 0.82],
        ("new", "test_ood"): [0.0, 0.0, 0.0],  # a test set never counts
    })  # fmt: skip
    table, verdict = choose(rows, SETS, default="old")
    assert list(table.index) == ["new", "old"]
    assert table.loc["new", "mean"] == pytest.approx(0.78) and table.loc["new", "count"] == 3
    assert verdict.startswith("replace old with new: +0.030")


def test_a_gain_within_the_spread_keeps_the_default() -> None:
    rows = _rows({
        ("old", "validation"): [0.70, 0.75, 0.80], ("old", "validation_unseen"): [0.80] * 3,
        ("new", "validation"): [0.76, 0.76, 0.76], ("new", "validation_unseen"): [0.80] * 3,
    })  # fmt: skip
    table, verdict = choose(rows, SETS, default="old")
    assert verdict.startswith("keep old: the best (new) gains +0.005")


def test_a_set_or_default_that_is_not_there_is_named() -> None:
    rows = _rows({("old", "validation"): [0.7, 0.7]})
    with pytest.raises(SystemExit, match="no results on validation_unseen"):
        choose(rows, SETS, default="old")
    with pytest.raises(SystemExit, match="--default 'other' is not a setting"):
        choose(rows, ["validation"], default="other")
