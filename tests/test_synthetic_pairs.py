"""Synthetic pairs: level-gap labels, one source per pair, groups in proportion, caching."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from datamodules._ffmpeg import encode_frames
from datamodules.distortions import DISTORTIONS
from datamodules.synthetic_pairs import SyntheticPairConfig, build_synthetic_pairs, plan_pairs
from datamodules.video_reader import probe
from tests.videos import real_clip


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    d = tmp_path_factory.mktemp("sources")
    rows = []
    for name in ("bikes", "carphone"):
        path = encode_frames(real_clip(name, frames=8, height=64), 25, d / f"{name}.mp4")
        rows.append((name, str(path)))
    return pd.DataFrame(rows, columns=["video_id", "path"])


CONFIG = SyntheticPairConfig(pairs=24, groups={"spatial": 2, "temporal": 1, "compression": 1},
                             workers=1)  # fmt: skip


def test_labels_follow_the_level_gap(sources: pd.DataFrame, tmp_path: Path) -> None:
    pairs = build_synthetic_pairs(sources, tmp_path, CONFIG, round=2)
    size = {
        row.video_id: (probe(row.path).width, probe(row.path).height)
        for row in sources.itertuples()
    }
    assert len(pairs) == 24 and (pairs["round"] == 2).all()
    assert pairs.source.value_counts().to_dict() == {"spatial": 12, "temporal": 6, "compression": 6}
    for row in pairs.itertuples():
        src_a, step_a = row.first_id.split("#")
        src_b, step_b = row.second_id.split("#")
        (name_a, level_a), (name_b, level_b) = step_a.split(":"), step_b.split(":")
        assert src_a == src_b and name_a == name_b  # same source, same distortion
        assert DISTORTIONS[name_a].family == row.source
        gap = int(level_b) - int(level_a)  # > 0: the first is the milder
        assert gap != 0 and row.delta == gap
        expected = 4 if gap > 1 else 3 if gap == 1 else 1 if gap == -1 else 0
        assert row.level == expected and row.soft_label == (1.0 if gap > 0 else 0.0)
        info = probe(row.first_path)
        assert (info.num_frames, info.width, info.height) == (8, *size[src_a])
    assert set(pairs.level) <= {0, 1, 3, 4}  # never "similar"


def test_renditions_are_cached_and_pairs_deterministic(sources: pd.DataFrame, tmp_path: Path):
    first = build_synthetic_pairs(sources, tmp_path, CONFIG)
    stamps = {p: Path(p).stat().st_mtime_ns for p in first.first_path}
    again = build_synthetic_pairs(sources, tmp_path, CONFIG)
    assert again.equals(first)
    assert all(Path(p).stat().st_mtime_ns == t for p, t in stamps.items())  # nothing re-rendered
    other = plan_pairs(sources, SyntheticPairConfig(pairs=24, seed=1))
    assert not other.equals(plan_pairs(sources, SyntheticPairConfig(pairs=24)))


def test_a_broken_source_loses_only_its_pairs(sources: pd.DataFrame, tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    pool = pd.concat([sources, pd.DataFrame({"video_id": ["broken"], "path": [str(broken)]})])
    pairs = build_synthetic_pairs(pool, tmp_path / "cache", CONFIG)
    assert 0 < len(pairs) < 24
    assert not pairs.first_id.str.startswith("broken#").any()


def test_bad_config_is_rejected(sources: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown distortion groups"):
        plan_pairs(sources, SyntheticPairConfig(groups={"spatail": 1}))
    with pytest.raises(ValueError, match="no source videos"):
        plan_pairs(sources.iloc[:0], CONFIG)


def test_an_excluded_distortion_is_never_drawn_and_its_group_keeps_its_share(sources) -> None:
    config = SyntheticPairConfig(
        pairs=200, groups={"spatial": 3, "temporal": 1}, exclude=["brighten"]
    )
    plan = plan_pairs(sources, config)
    drawn = plan["first"].map(lambda r: r[1])
    assert "brighten" not in set(drawn)
    spatial = {n for n, d in DISTORTIONS.items() if d.family == "spatial"} - {"brighten"}
    assert set(drawn[plan.group == "spatial"]) == spatial  # the other four, all of them
    assert plan.group.value_counts().to_dict() == {"spatial": 150, "temporal": 50}
    with pytest.raises(ValueError, match=r"unknown distortions \['brightne'\]"):
        plan_pairs(sources, SyntheticPairConfig(exclude=["brightne"]))
    with pytest.raises(ValueError, match="group 'temporal': exclude leaves no distortion"):
        plan_pairs(
            sources, SyntheticPairConfig(groups={"temporal": 1}, exclude=["jitter", "stutter"])
        )


def test_ladders_pair_every_level_of_a_distortion_with_every_other(sources: pd.DataFrame) -> None:
    """A ladder is every level of one distortion of one source, and all pairs among them, each in
    a random order: many more pairs per rendition than random pairs give."""
    config = SyntheticPairConfig(pairs=60, groups={"spatial": 1.0}, design="ladder")
    plan = plan_pairs(sources, config)
    assert len(plan) == 60
    ladders = plan.groupby(plan["first"].map(lambda r: r[:2]))
    levels = 5  # every spatial distortion has five
    assert ladders.ngroups == 60 // (levels * (levels - 1) // 2)  # 6 ladders of 10 pairs
    for _, pairs in ladders:
        both = list(zip(pairs["first"], pairs["second"], strict=True))
        assert len({frozenset((a[2], b[2])) for a, b in both}) == len(pairs) == 10  # each once
        assert all(a[:2] == b[:2] for a, b in both)
    milder_first = (plan["first"].map(lambda r: r[2]) < plan["second"].map(lambda r: r[2])).mean()
    assert 0.25 < milder_first < 0.75  # both orders: a label never follows the position
    renditions = {r for col in ("first", "second") for r in plan[col]}
    random = plan_pairs(sources, SyntheticPairConfig(pairs=60, groups={"spatial": 1.0}))
    # 6 ladders of 5 renditions; random pairs need more even among 2 sources' 50 renditions
    assert len(renditions) == 30 < len({r for col in ("first", "second") for r in random[col]})
    with pytest.raises(ValueError, match="'random' or 'ladder'"):
        plan_pairs(sources, SyntheticPairConfig(design="stairs"))  # type: ignore[arg-type]


def test_rendering_shows_its_progress_on_stderr(sources: pd.DataFrame, tmp_path: Path, capsys):
    config = SyntheticPairConfig(pairs=2, groups={"spatial": 1}, workers=1)
    pairs = build_synthetic_pairs(sources, tmp_path, config, progress=True)
    err = capsys.readouterr().err
    assert "synthetic pairs: rendering distorted copies" in err and "clip" in err
    quiet = build_synthetic_pairs(sources, tmp_path / "quiet", config)  # stderr is no terminal
    assert "synthetic pairs" not in capsys.readouterr().err
    same = [c for c in pairs if not c.endswith("_path")]
    assert quiet[same].equals(pairs[same])  # the bar changes no pair and no byte
    for a, b in zip([*pairs.first_path, *pairs.second_path],
                    [*quiet.first_path, *quiet.second_path], strict=True):  # fmt: skip
        assert Path(a).read_bytes() == Path(b).read_bytes()
