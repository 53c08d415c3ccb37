"""The regressor teacher: fitted on a labelled blur ladder it ranks a held-out source's ladder, for
both feature kinds; its model file round-trips exactly and is refused, with the fix, when broken or
made for other features; broken training videos are skipped; it labels through the labelling job."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from datamodules.video_datamodule import VideoScoringDataset
from lightning_modules.scoring import label_videos
from lightning_modules.teachers import Teacher, VideoItem, create_teacher
from lightning_modules.teachers._regressor_file import RegressorModel
from lightning_modules.teachers.base import TrainableTeacher
from lightning_modules.teachers.handcrafted import HANDCRAFTED, handcrafted_features
from lightning_modules.teachers.regressor import RegressorTeacher
from tests.students import blur_ladder
from tests.videos import real_clip

HELD_OUT = "bigbuckbunny"  # fitted on bikes and carphone, scored on this source's ladder
# deep: the packaged ImageNet weights (they load offline), at a small size and 4 frames for speed
KINDS = {
    "handcrafted": {"workers": 0},
    "deep": {"features": "deep", "frames": 4, "size": 128, "workers": 0},
}


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    return blur_ladder(tmp_path_factory.mktemp("ladder"))  # mos = -blur level


def _split(ladder: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    held = ladder.source == HELD_OUT
    return ladder[~held].reset_index(drop=True), ladder[held].reset_index(drop=True)


@pytest.fixture(scope="module", params=sorted(KINDS))
def fitted(request, ladder: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    teacher = create_teacher("regressor", **KINDS[request.param])
    model = teacher.fit(_split(ladder)[0], tmp_path_factory.mktemp("model") / "teacher.npz")
    return teacher, model


def _items(teacher: Teacher, videos: pd.DataFrame) -> list[VideoItem]:
    """What the labelling job hands the teacher: its sampler's frames of each video."""
    dataset = VideoScoringDataset(videos, teacher.sampler())
    return [dataset[i] for i in range(len(dataset))]


def test_fitted_teacher_ranks_a_held_out_ladder(fitted, ladder: pd.DataFrame) -> None:
    teacher, model = fitted
    assert isinstance(teacher, TrainableTeacher) and teacher.fitted
    assert teacher.model == str(model) and model.is_file()
    held = _split(ladder)[1]
    scores = teacher.score_native_batch(_items(teacher, held))
    assert all(isinstance(s, float) and math.isfinite(s) for s in scores)
    srcc = spearmanr(scores, held.mos).statistic
    assert srcc > 0.8, f"{teacher.name}: SRCC {srcc:.2f} on {HELD_OUT}: {np.round(scores, 2)}"


def test_model_file_round_trip_gives_identical_predictions(fitted, ladder: pd.DataFrame) -> None:
    teacher, model = fitted
    items = _items(teacher, ladder)
    reloaded = create_teacher("regressor", **{**KINDS[teacher.features], "model": str(model)})
    assert reloaded.score_native_batch(items) == teacher.score_native_batch(items)
    # the numpy prediction is scikit-learn's: refit the same data there and compare
    from sklearn.svm import SVR

    fitted_model = RegressorModel.load(model)
    train = _split(ladder)[0]
    x = np.stack(teacher._features(_items(teacher, train)))
    a = fitted_model.arrays
    svr = SVR(C=teacher.svr_c, epsilon=teacher.svr_epsilon, gamma=float(a["gamma"]))
    svr.fit((x - a["x_mean"]) / a["x_scale"], (train.mos - a["y_mean"]) / a["y_scale"])
    expected = svr.predict((x - a["x_mean"]) / a["x_scale"]) * a["y_scale"] + a["y_mean"]
    np.testing.assert_allclose(fitted_model.predict(x), expected, rtol=1e-9, atol=1e-9)


def test_ridge_fits_and_predicts_from_its_weights(ladder: pd.DataFrame, tmp_path: Path) -> None:
    teacher = RegressorTeacher(regressor="ridge", workers=0)
    train, held = _split(ladder)
    teacher.fit(train, tmp_path / "ridge.npz")
    meta = RegressorModel.load(tmp_path / "ridge.npz").meta
    assert meta["regressor"] == "ridge" and meta["ridge_alpha"] == len(HANDCRAFTED)
    scores = teacher.score_native_batch(_items(teacher, held))
    assert spearmanr(scores, held.mos).statistic > 0.8


def test_broken_videos_are_skipped_with_a_warning(ladder: pd.DataFrame, tmp_path: Path) -> None:
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    paths = [str(tmp_path / "broken.mp4"), str(tmp_path / "gone.mp4")]
    broken = pd.DataFrame({"video_id": ["broken", "missing"], "path": paths, "mos": [0.0, -1.0]})
    train = pd.concat([_split(ladder)[0], broken], ignore_index=True)
    teacher = RegressorTeacher(workers=2)  # decoded in worker processes, as in a real fit
    with pytest.warns(UserWarning) as caught:
        teacher.fit(train, tmp_path / "model.npz")
    messages = [str(w.message) for w in caught if "skipped in fitting" in str(w.message)]
    assert len(messages) == 2
    assert any("broken.mp4" in m and "not a readable video" in m for m in messages)
    assert any("gone.mp4" in m and "no such file" in m for m in messages)
    assert RegressorModel.load(tmp_path / "model.npz").meta["videos"] == len(train) - 2
    few = pytest.raises(ValueError, match="3 of 5 labelled videos usable.*at least 10")
    with few, pytest.warns(UserWarning, match="skipped in fitting"):
        teacher.fit(train.tail(5), tmp_path / "few.npz")
    with pytest.raises(ValueError, match="missing \\['mos'\\]"):
        teacher.fit(train.drop(columns="mos"), tmp_path / "x.npz")


def test_unfitted_teacher_fails_clearly(ladder: pd.DataFrame) -> None:
    teacher = create_teacher("regressor")
    assert isinstance(teacher, TrainableTeacher) and not teacher.fitted
    item = _items(teacher, ladder.head(1))[0]
    with pytest.raises(RuntimeError, match="has no model: fit it or set model=PATH"):
        teacher.score_native(item)


def test_broken_or_foreign_model_files_are_refused(fitted, tmp_path: Path) -> None:
    teacher, model = fitted
    with pytest.raises(FileNotFoundError, match="missing.npz: no such regressor teacher model"):
        RegressorTeacher(model=str(tmp_path / "missing.npz"))
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(ValueError, match="garbage.npz: not a regressor teacher model.*fit the"):
        RegressorModel.load(garbage)

    def rewrite(name: str, change) -> Path:
        with np.load(model, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        change(arrays)
        path = tmp_path / name
        with open(path, "wb") as f:
            np.savez(f, **arrays)
        return path

    def meta(**changes):
        return lambda a: a.update(meta=np.array(json.dumps({**json.loads(str(a["meta"])),
                                                            **changes})))  # fmt: skip

    with pytest.raises(ValueError, match="format 99, this code reads 1"):
        RegressorModel.load(rewrite("old.npz", meta(format=99)))
    with pytest.raises(ValueError, match="missing arrays \\['intercept'\\]"):
        RegressorModel.load(rewrite("cut.npz", lambda a: a.pop("intercept")))
    with pytest.raises(ValueError, match="x_scale has shape"):
        RegressorModel.load(rewrite("shape.npz", lambda a: a.update(x_scale=a["x_scale"][:-1])))
    # an object array would need pickle to load: refused, never unpickled
    pickled = rewrite("pickle.npz", lambda a: a.update(x_mean=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(ValueError, match="not a regressor teacher model"):
        RegressorModel.load(pickled)
    assert zipfile.is_zipfile(pickled)
    other = "deep" if teacher.features == "handcrafted" else "handcrafted"
    foreign = f"fitted with features='{teacher.features}'.*set features"
    with pytest.raises(ValueError, match=foreign):
        create_teacher("regressor", features=other, model=str(model))
    with pytest.raises(ValueError, match="fitted with frames=.*this teacher has frames=2"):
        create_teacher("regressor", **{**KINDS[teacher.features], "frames": 2, "model": str(model)})


def test_labelling_job_writes_a_score_table(fitted, ladder: pd.DataFrame, tmp_path: Path) -> None:
    teacher, _ = fitted
    held = _split(ladder)[1]
    summary = label_videos(teacher, held[["video_id", "path"]], tmp_path / "scores.parquet",
                           workers=0)  # fmt: skip
    assert (summary.scored, summary.failed) == (len(held), 0)
    table = pd.read_parquet(summary.table).merge(held, on="video_id")
    assert (table.status == "ok").all() and (table.score == table.native).all()
    assert spearmanr(table.score, table.mos).statistic > 0.8


def test_built_from_yaml_and_wrong_values_fail_naming_the_key(fitted) -> None:
    from jsonargparse import ArgumentParser

    teacher, model = fitted
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--teacher", type=Teacher)
    config = parser.parse_string(
        "teacher:\n"
        "  class_path: lightning_modules.teachers.regressor.RegressorTeacher\n"
        f"  init_args: {json.dumps({**KINDS[teacher.features], 'model': str(model)})}\n"
    )
    built = parser.instantiate(config).teacher
    assert isinstance(built, RegressorTeacher) and built.fitted
    assert built.name == f"regressor:{teacher.features}"
    with pytest.raises(Exception, match="features"):
        parser.parse_string(
            "teacher:\n"
            "  class_path: lightning_modules.teachers.regressor.RegressorTeacher\n"
            "  init_args: {features: colour}\n"
        )
    with pytest.raises(ValueError, match="features: unknown 'colour'"):
        create_teacher("regressor", features="colour")


@pytest.mark.parametrize(
    "clip",
    [
        np.full((8, 180, 320, 3), 128, np.uint8),  # flat grey: nothing moves, nothing to see
        real_clip("bikes", frames=1, height=180),  # one frame: no transition
    ],
    ids=["grey", "one_frame"],
)
def test_handcrafted_features_are_defined_on_degenerate_clips(clip: np.ndarray) -> None:
    with np.errstate(all="raise"):  # no NaN or inf made and hidden on the way
        x = handcrafted_features(clip, clip)
    assert x.shape == (len(HANDCRAFTED),) and np.isfinite(x).all()
    named = dict(zip(HANDCRAFTED, x, strict=True))
    assert named["temporal_info"] == 0.0 and named["frozen"] == 0.0


@pytest.mark.parametrize("fitted", ["deep"], indirect=True)
def test_deep_features_are_the_compact_students_cached_features(
    fitted, ladder: pd.DataFrame, tmp_path: Path
) -> None:
    from lightning_modules.students.compact import CompactStudent

    _, model = fitted
    cache, videos = tmp_path / "cache", ladder.head(3)[["video_id", "path"]]
    teacher = create_teacher("regressor", **KINDS["deep"], model=str(model),
                             feature_cache=str(cache))  # fmt: skip
    items = _items(teacher, videos)
    first = teacher.score_native_batch(items)
    assert len(list(cache.glob("*.npy"))) == 3
    # a compact student of the same frames, size and weights reads them as its own
    kw = {k: v for k, v in KINDS["deep"].items() if k in ("frames", "size")}
    student, fresh = CompactStudent(feature_cache=str(cache), **kw), CompactStudent(**kw)
    for item in items:
        on_disk = student.cached_input(item.path)  # (T, 1280), the file the teacher wrote
        assert on_disk is not None and on_disk.shape == (4, 1280)
        recomputed = fresh.prepare(item.frames, item.path)  # no cache: computed afresh
        np.testing.assert_allclose(on_disk.numpy(), recomputed.numpy(), rtol=1e-4, atol=1e-4)
    # the labelling job then hands over the cached features instead of decoding
    assert VideoScoringDataset(videos, teacher.sampler(), teacher.cached_input)[0].frames is None
    summary = label_videos(teacher, videos, tmp_path / "scores.parquet", workers=0)
    table = pd.read_parquet(summary.table).set_index("video_id").loc[videos.video_id]
    assert table.score.tolist() == first


def test_stage_statistics_teacher_ranks_and_shares_the_students_features(
    ladder: pd.DataFrame, tmp_path: Path
) -> None:
    """deep with representation stage_stats: the student's features (stage statistics, with
    temporal_run the run's change statistics too, native frames). It ranks a held-out ladder; what
    it computes fills the cache that a student of the same settings reads; a model file is refused
    by a teacher of the other representation."""
    from lightning_modules.students.compact import CompactStudent

    train, held = _split(ladder)
    plain = create_teacher("regressor", features="deep", regressor="ridge", workers=0, frames=2,
                           representation="stage_stats")  # fmt: skip
    plain_model = plain.fit(train, tmp_path / "plain.npz")
    summary = label_videos(plain, held, tmp_path / "scores.parquet", workers=0)
    scores = pd.read_parquet(summary.table).set_index("video_id").loc[held.video_id]
    assert (scores.status == "ok").all()
    srcc = spearmanr(scores.score, held.mos).statistic
    # (with the run's statistics too, 12 training videos of two contents rank this third one
    # backwards: the cartoon's motion is far outside theirs; the quickstart fits 40 clips of
    # more contents)
    assert srcc > 0.7, f"SRCC {srcc:.2f} on {HELD_OUT}: {np.round(scores.score.to_numpy(), 2)}"
    with pytest.raises(ValueError, match="fitted with extractor=.*representation"):
        create_teacher(
            "regressor", features="deep", regressor="ridge", frames=2, model=str(plain_model)
        )

    shared = {"frames": 2, "representation": "stage_stats", "temporal_run": 3}
    cache = tmp_path / "cache"
    teacher = create_teacher("regressor", features="deep", regressor="ridge", workers=0,
                             feature_cache=str(cache), **shared)  # fmt: skip
    model = teacher.fit(train, tmp_path / "teacher.npz")
    extractor = RegressorModel.load(model).meta["extractor"]
    assert extractor["representation"] == "stage_stats" and extractor["temporal_run"] == 3
    assert len(list(cache.glob("*.npy"))) == len(train)
    student, fresh = CompactStudent(feature_cache=str(cache), **shared), CompactStudent(**shared)
    for item in _items(teacher, train):
        on_disk = student.cached_input(item.path)  # the file the teacher's fit wrote
        assert on_disk is not None and on_disk.shape[0] == 2
        recomputed = fresh.prepare(item.frames, item.path)  # no cache: computed afresh
        np.testing.assert_allclose(on_disk.numpy(), recomputed.numpy(), rtol=1e-5, atol=1e-5)
    # a broken cache file (a full disk, a foreign file) is named, computed again and replaced
    broken = student._cache_key(train.path[0])
    (cache / f"{broken}.npy").write_bytes(b"not an array")
    with pytest.warns(UserWarning, match=f"{broken}.npy: unreadable cache file"):
        summary = label_videos(teacher, train.head(1), tmp_path / "again.parquet", workers=0)
    assert pd.read_parquet(summary.table).status.tolist() == ["ok"]
    assert student.cached_input(train.path[0]) is not None
    with pytest.raises(ValueError, match="is for features 'deep'"):
        create_teacher("regressor", representation="stage_stats")
    with pytest.raises(ValueError, match="temporal_run needs representation 'stage_stats'"):
        create_teacher("regressor", features="deep", temporal_run=3)
