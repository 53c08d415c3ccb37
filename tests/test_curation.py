"""Pool curation: the nine statistics of real videos, the selection (integer program and greedy)
that matches a target's histograms, `w2svqa data curate` and `data.curate` in a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from datamodules._ffmpeg import encode_frames
from datamodules.curation import Bins, distances, random_sample, select
from experiments.cli import main
from lightning_modules.scoring import label_videos, read_scores
from lightning_modules.teachers.statistics import STATISTICS, StatisticTeacher, video_statistics
from tests.students import blur_ladder
from tests.videos import real_clip


def two_clusters(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A pool of 300: 240 around 0 and 60 around 2 (in 9 statistics); a target like the second."""
    rng = np.random.default_rng(seed)
    near = rng.normal(2.0, 0.5, size=(60, 9))
    pool = np.concatenate([rng.normal(0.0, 1.0, size=(240, 9)), near])
    return pool, rng.normal(2.0, 0.5, size=(80, 9)), np.arange(240, 300)


@pytest.mark.parametrize("method", ["milp", "greedy"])
def test_selection_matches_the_target_far_better_than_chance(method) -> None:
    pool, target, near = two_clusters()
    chosen, used = select(pool, target, 50, bins=5, method=method)
    assert used == method and len(chosen) == 50 and len(set(chosen)) == 50
    assert np.isin(chosen, near).mean() > 0.85  # the target's cluster, not the pool's bulk
    curated = distances(pool[chosen], target, bins=5)
    chance = distances(pool[random_sample(len(pool), 50)], target, bins=5)
    assert curated.shape == (9,) and (curated < chance).all()
    assert curated.mean() < 0.5 * chance.mean()
    again, _ = select(pool, target, 50, bins=5, method=method)
    np.testing.assert_array_equal(again, chosen)  # the same seed, the same videos


def test_auto_uses_the_program_for_small_pools() -> None:
    pool, target, _ = two_clusters()
    assert select(pool, target, 10)[1] == "milp"


def test_bins_are_the_targets_quantiles() -> None:
    target = np.arange(100, dtype=float)[:, None]
    grid = Bins.of(target, 4)
    np.testing.assert_allclose(grid.edges[0], [24.75, 49.5, 74.25])
    np.testing.assert_allclose(grid.shares(target)[0], [0.25] * 4)
    np.testing.assert_array_equal(grid.index(np.array([[-5.0], [50.0], [1e9]]))[:, 0], [0, 2, 3])
    assert distances(target, target, 4).tolist() == [0.0]
    assert distances(target + 1000, target, 4).tolist() == [0.75]  # all in the last bin


def test_impossible_requests_are_refused() -> None:
    pool, target, _ = two_clusters()
    with pytest.raises(ValueError, match="cannot choose 301 videos from a pool of 300"):
        select(pool, target, 301)
    with pytest.raises(ValueError, match="need \\(N, S\\) and \\(M, S\\)"):
        select(pool, target[:, :3], 10)
    with pytest.raises(ValueError, match="bins must be at least 2"):
        select(pool, target, 10, bins=1)


def test_statistics_of_real_frames_follow_what_changed() -> None:
    clip = real_clip("bikes", frames=8, height=72)
    base = dict(zip(STATISTICS, video_statistics(clip[:4], clip), strict=True))
    darker = dict(zip(STATISTICS, video_statistics(clip[:4] // 2, clip // 2), strict=True))
    assert darker["luminance"] < 0.6 * base["luminance"]
    assert darker["contrast"] < 0.6 * base["contrast"]
    flashing = clip.copy()
    flashing[::2] = (flashing[::2] * 0.6).astype(np.uint8)  # every other frame dimmed
    flicker = dict(zip(STATISTICS, video_statistics(clip[:4], flashing), strict=True))
    assert flicker["flicker"] > 10 * max(base["flicker"], 0.1)
    still = np.repeat(clip[:1], 8, axis=0)
    frozen = dict(zip(STATISTICS, video_statistics(still[:4], still), strict=True))
    assert frozen["temporal_info"] == 0.0 and frozen["flicker"] == 0.0
    one = dict(zip(STATISTICS, video_statistics(clip[:1], clip[:1]), strict=True))
    assert np.isfinite(list(one.values())).all()  # a 1-frame video: temporal ones are 0


def test_the_nine_tables_share_one_decode(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    paths = [encode_frames(real_clip(n, frames=6, height=48), 10, folder / f"{n}.mp4")
             for n in ("bikes", "carphone")]  # fmt: skip
    videos = pd.DataFrame({"video_id": ["a", "b"], "path": [str(p) for p in paths]})
    cache = tmp_path / "values"
    first = StatisticTeacher(statistic="blur", feature_cache=str(cache))
    label_videos(first, videos, tmp_path / "blur.parquet", workers=0)
    assert len(list(cache.glob("*.npy"))) == 2  # all nine values of each video kept
    second = StatisticTeacher(statistic="noise", feature_cache=str(cache))
    assert second.cached_input(str(paths[0])) is not None  # so the loader decodes nothing
    label_videos(second, videos, tmp_path / "noise.parquet", workers=0)
    fresh = StatisticTeacher(statistic="noise")  # no cache: decodes and computes
    label_videos(fresh, videos, tmp_path / "fresh.parquet", workers=0)
    pd.testing.assert_frame_equal(read_scores(tmp_path / "noise.parquet"),
                                  read_scores(tmp_path / "fresh.parquet"))  # fmt: skip
    with pytest.raises(ValueError, match="statistic 'sharpness': not one of blockiness"):
        StatisticTeacher(statistic="sharpness")


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("curation")
    (folder / "videos").mkdir()
    videos = blur_ladder(folder / "videos")
    videos.to_parquet(folder / "pool.parquet", index=False)
    # the target: other renditions of the strongest blur (a new encode of the same levels)
    strong = videos[videos.level >= 4]
    strong.to_parquet(folder / "target.parquet", index=False)
    return folder, videos


def test_curate_keeps_the_videos_like_the_target(ladder, capsys) -> None:
    folder, videos = ladder
    out = folder / "curated"
    main(["data", "curate", "--pool", str(folder / "pool.parquet"), "--target",
          str(folder / "target.parquet"), "--n", "6", "--bins", "2", "--out", str(out),
          "--cache", str(folder / "cache"), "--workers", "0"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "kept 6 videos (milp)" in printed
    kept = pd.read_parquet(out / "curated.parquet")
    levels = videos.set_index("video_id").loc[kept.video_id, "level"]
    assert levels.mean() > videos.level.mean() + 0.5  # blurred renditions more than clean ones
    report = pd.read_csv(out / "distances.csv").set_index("statistic")
    assert list(report.index) == [*STATISTICS, "mean"]
    assert report.loc["mean", "curated"] < report.loc["mean", "random"]
    assert (out / "histograms.png").read_bytes()[:4] == b"\x89PNG"


def test_curate_names_a_pool_or_target_too_small(ladder, capsys) -> None:
    folder, _ = ladder
    args = ["data", "curate", "--pool", str(folder / "pool.parquet"), "--target",
            str(folder / "target.parquet"), "--out", str(folder / "x"), "--cache",
            str(folder / "cache"), "--workers", "0"]  # fmt: skip
    with pytest.raises(SystemExit):
        main([*args, "--n", "500", "--bins", "2"])
    assert "n = 500, but the pool has only 18 videos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--n", "5"])  # 10 bins, 6 target videos
    assert "the target has 6 videos with all nine statistics; at least 10" in (
        capsys.readouterr().err
    )


@pytest.mark.slow
def test_a_run_with_data_curate_draws_pairs_from_the_kept_videos(ladder, tmp_path) -> None:
    from tests.test_runner import tiny_experiment

    folder, videos = ladder
    config = tiny_experiment(folder, videos)
    config["data"]["curate"] = {"target": str(folder / "target.parquet"), "n": 9, "bins": 2}
    config["rounds"] = 1
    file = tmp_path / "curated.yaml"
    file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    main(["run", str(file), "--output_dir", str(out), "--no_mlflow"])
    kept = set(pd.read_parquet(out / "curation" / "curated.parquet").video_id)
    assert len(kept) == 9
    pairs = pd.read_parquet(out / "round1" / "ensemble_pairs.parquet")
    assert set(pairs.first_id) | set(pairs.second_id) <= kept
    assert (out / "curation" / "histograms.png").is_file()
