"""The embedded sample corpus, shrunk: splits, held-out content and families, VMAF labels, reuse."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from datamodules.distortions import DISTORTIONS
from datamodules.sample_corpus import (
    HELD_OUT,
    SPLITS,
    UNSEEN,
    CorpusConfig,
    build_sample_corpus,
)
from datamodules.video_reader import probe
from experiments.cli import main
from tests.corpus import SMALL


@pytest.fixture(scope="module")
def corpus(small_corpus: tuple[Path, dict]) -> tuple[Path, dict]:
    return small_corpus


def families(chain: str) -> set[str]:
    if chain == "clean":
        return set()
    return {DISTORTIONS[step.split(":")[0]].family for step in chain.split("+")}


def test_splits_and_held_out_content(corpus: tuple[Path, dict]) -> None:
    out, summary = corpus
    assert summary["failed"] == []
    tables = {s: pd.read_parquet(out / f"{s}.parquet") for s in SPLITS}
    assert [len(tables[s]) for s in SPLITS] == [20, 20, 10, 10, 10, 0]
    for split in ("pool", "train_labeled", "validation"):
        assert not set(tables[split].content) & set(HELD_OUT)
    # validation: the pool's content, but cuts that neither the pool nor train_labeled has
    cuts = {s: set(zip(tables[s].content, tables[s].cut, strict=True)) for s in SPLITS}
    assert not cuts["validation"] & (cuts["pool"] | cuts["train_labeled"])
    for split in ("test_in_domain", "test_ood"):
        assert set(tables[split].content) == set(HELD_OUT)
    default = {d.family for d in DISTORTIONS.values() if d.default}
    for split in ("pool", "train_labeled", "validation", "test_in_domain"):
        assert set().union(*map(families, tables[split].distortions)) <= default
    ood = set().union(*map(families, tables["test_ood"].distortions))
    assert ood and not ood & default
    assert tables["test_ood"].video_id.is_unique


def test_clips_are_real_videos_with_vmaf_labels(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    table = pd.read_parquet(out / "test_in_domain.parquet")
    for row in table.itertuples():
        info = probe(out / row.path)
        assert (info.width, info.height, info.num_frames) == (320, 180, row.num_frames)
    assert table.vmaf.between(0, 100).all()
    clean = table[table.distortions == "clean"]
    assert clean.vmaf.min() > 90  # stored near-transparently
    assert table[table.distortions != "clean"].vmaf.mean() < clean.vmaf.mean()
    assert pd.read_parquet(out / "pool.parquet").vmaf.isna().all()  # the pool is unlabelled


def test_labels_txt_in_dover_format(corpus: tuple[Path, dict]) -> None:
    out, _ = corpus
    table = pd.read_parquet(out / "test_ood.parquet")
    lines = (out / "test_ood.txt").read_text().splitlines()
    assert len(lines) == len(table)
    path, a, t, score = lines[0].split(", ")
    assert (out / path).is_file() and (a, t) == ("-1", "-1")
    assert float(score) == pytest.approx(table.vmaf.iloc[0], abs=1e-4)


def test_rerun_reuses_everything_and_is_deterministic(corpus: tuple[Path, dict]) -> None:
    out, first = corpus
    again = build_sample_corpus(out, SMALL)
    assert again["made"] == 0 and again["reused"] == first["made"]
    for split in SPLITS:
        a = pd.read_parquet(out / f"{split}.parquet")
        assert len(a) == first["splits"][split]["clips"]
    # a different seed makes different clips; the same seed the same ones (ids hash the recipe)
    from datamodules.sample_corpus import _recipes

    ids = [r.video_id for r in _recipes(SMALL)]
    assert ids == [r.video_id for r in _recipes(SMALL)]
    assert set(ids).isdisjoint(r.video_id for r in _recipes(CorpusConfig(seed=1)))


def test_a_larger_validation_split_keeps_every_earlier_clip() -> None:
    from dataclasses import replace

    from datamodules.sample_corpus import _recipes

    def ids(config: CorpusConfig) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in _recipes(config):
            out.setdefault(r.split, []).append(r.video_id)
        return out

    four = ids(replace(SMALL, validation_per_asset=4))  # the split's first size
    sixteen = ids(replace(SMALL, validation_per_asset=16))  # the default now
    for split in set(SPLITS) - {"validation"}:
        assert sixteen.get(split) == four.get(split)  # every other split as it was
    assert sixteen["validation"][: len(four["validation"])] == four["validation"]
    assert len(sixteen["validation"]) == 4 * len(four["validation"])
    assert len(set(sixteen["validation"])) == len(sixteen["validation"])


def test_validation_unseen_has_content_of_its_own_and_the_pools_families() -> None:
    from dataclasses import replace

    from datamodules.sample_corpus import _recipes

    recipes = list(_recipes(replace(SMALL, unseen_cuts_per_asset=2, unseen_renditions=3)))
    unseen = [r for r in recipes if r.split == "validation_unseen"]
    assert len(unseen) == len(UNSEEN) * 2 * 4
    assert {r.asset for r in unseen} == set(UNSEEN)
    assert not {r.asset for r in recipes if r.split != "validation_unseen"} & set(UNSEEN)
    assert sum(r.distortions == "clean" for r in unseen) == len(UNSEEN) * 2
    default = {d.family for d in DISTORTIONS.values() if d.default}
    assert set().union(*(families(r.distortions) for r in unseen)) <= default
    # drawn last: every other clip is the one the corpus made before the split existed
    others = [r.video_id for r in recipes if r.split != "validation_unseen"]
    assert others == [r.video_id for r in _recipes(SMALL)]


def test_cli_prints_the_table(corpus: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    out, _ = corpus
    sizes = {"cuts_per_asset": 1, "renditions_per_clip": 1, "labeled_per_asset": 2,
             "test_cuts_per_asset": 1, "test_renditions": 1, "validation_per_asset": 1}  # fmt: skip
    main(["data", "sample", "--out", str(out), *(f"--corpus.{k}={v}" for k, v in sizes.items())])
    text = capsys.readouterr().out
    assert "0 clips made" in text
    assert "test_ood" in text and "unlabelled" in text


def test_the_build_shows_its_progress_on_stderr(corpus, tmp_path, capsys) -> None:
    out, _ = corpus
    copy = tmp_path / "corpus"
    shutil.copytree(out, copy)
    clip = next((copy / "videos" / "pool").glob("*.json"))
    made = clip.with_suffix(".mp4").read_bytes()
    clip.unlink()  # one clip to make again
    capsys.readouterr()
    summary = build_sample_corpus(copy, SMALL, progress=True)
    captured = capsys.readouterr()
    assert summary["made"] == 1
    assert "sample corpus: rendering and VMAF-labelling clips" in captured.err
    assert "1/1" in captured.err and "sample corpus" not in captured.out
    assert clip.with_suffix(".mp4").read_bytes() == made  # the bar changes no byte
