"""The one registry, and a contract test for everything registered in it: every teacher and every
student is constructed, scores a tiny real video, and (students) rebuilds from its spec. A newly
registered one is tested here for free; one that needs arguments must get them in `TEACHER_ARGS`
or `STUDENT_ARGS` below, and the test says so when it has none."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from datamodules._ffmpeg import encode_frames
from datamodules.distortions import apply_distortion
from datamodules.frame_sampling import read_clip
from lightning_modules.registry import Registry, UnknownNameError
from lightning_modules.students.base import STUDENTS, create_student, list_students, seeded_student
from lightning_modules.teachers.base import TEACHERS, VideoItem, list_teachers, score_one
from tests.tiny_models import build_tiny_llava_onevision
from tests.videos import real_clip


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("registry")


@pytest.fixture(scope="module")
def clips(folder: Path) -> list[Path]:
    """Four real 1-second clips, one content at four blur levels (a regressor can be fitted)."""
    clip = real_clip("bikes", frames=16, height=48)
    return [
        encode_frames(apply_distortion(clip, 16, "blur", level), 16, folder / f"blur{level}.mp4")
        for level in range(1, 5)
    ]


@pytest.fixture(scope="module")
def tiny_vlm(folder: Path) -> str:
    return str(build_tiny_llava_onevision(folder / "tiny_llava_ov"))


def _score_table(folder: Path, clips: list[Path]) -> dict:
    table = folder / "scores.csv"
    pd.DataFrame({"path": [str(c) for c in clips], "score": [4.0, 3.0, 2.0, 1.0]}).to_csv(table)
    return {"table": str(table)}


def _student_file(folder: Path, clips: list[Path]) -> dict:
    from lightning_modules.checkpoints import save_student

    out = folder / "student.safetensors"
    spec = {"name": "compact", "args": {"weights": None, "frames": 2, "size": 64}}
    save_student(seeded_student(spec, seed=0), out)
    return {"checkpoint": str(out), "device": "cpu"}


def _fitted_regressor(folder: Path, clips: list[Path]) -> dict:
    from lightning_modules.teachers.regressor import RegressorTeacher

    videos = pd.DataFrame({"video_id": [c.stem for c in clips], "path": [str(c) for c in clips],
                           "mos": [80.0, 60.0, 40.0, 20.0]})  # fmt: skip
    teacher = RegressorTeacher(min_videos=3, workers=0, frames=4, run=8)
    model = teacher.fit(videos, folder / "regressor.npz")
    return {"model": str(model), "min_videos": 3, "workers": 0, "frames": 4, "run": 8}


# name -> a function (folder, clips, fixtures) -> constructor arguments
TEACHER_ARGS = {
    "score_table": lambda folder, clips, vlm: _score_table(folder, clips),
    "student": lambda folder, clips, vlm: _student_file(folder, clips),
    "regressor": lambda folder, clips, vlm: _fitted_regressor(folder, clips),
    "qalign": lambda folder, clips, vlm: {"model": vlm, "frames": 2, "dtype": "float32"},
}
STUDENT_ARGS = {
    "compact": lambda vlm: {"weights": None, "frames": 2, "size": 64},
    "llava_onevision": lambda vlm: {
        "model": vlm,
        "max_seconds": 2,
        "pool_to": 2,
        "motion_frames": 4,
    },  # fmt: skip
}


def _needs_arguments(cls) -> bool:
    params = inspect.signature(cls).parameters.values()
    return any(p.default is p.empty and p.kind is not p.VAR_KEYWORD for p in params)


@pytest.mark.parametrize("name", list_teachers())
def test_every_teacher_constructs_and_scores_a_real_video(name, folder, clips, request) -> None:
    cls = TEACHERS.get(name)
    if name not in TEACHER_ARGS and _needs_arguments(cls):
        pytest.fail(f"teacher {name!r} needs arguments: add an entry to TEACHER_ARGS")
    vlm = request.getfixturevalue("tiny_vlm") if name == "qalign" else None
    args = TEACHER_ARGS[name](folder, clips, vlm) if name in TEACHER_ARGS else {}
    teacher = TEACHERS.create(name, **args)
    assert isinstance(teacher, cls)
    assert teacher.name  # set by the decorator, or by the teacher's own `name` argument
    path = clips[0]
    sampler = teacher.sampler()
    frames = read_clip(path, sampler) if sampler is not None else None
    prepared = teacher.cached_input(str(path))
    item = VideoItem(path.stem, str(path), frames=frames, prepared=prepared)
    score = teacher.to_score(score_one(teacher, item))
    assert math.isfinite(score)


@pytest.mark.parametrize("name", list_students())
def test_every_student_scores_a_real_video_and_rebuilds_from_its_spec(name, clips, request) -> None:
    cls = STUDENTS.get(name)
    if name not in STUDENT_ARGS and _needs_arguments(cls):
        pytest.fail(f"student {name!r} needs arguments: add an entry to STUDENT_ARGS")
    vlm = request.getfixturevalue("tiny_vlm") if name == "llava_onevision" else None
    args = STUDENT_ARGS[name](vlm) if name in STUDENT_ARGS else {}
    student = seeded_student({"name": name, "args": args}, seed=0).eval()
    assert student.name == name
    from torch.utils.data import default_collate

    path = clips[0]
    batch = default_collate([student.prepare(read_clip(path, student.sampler()), str(path))])
    with torch.inference_mode():  # a comparator judges pairs (its scores need anchor videos)
        out = student.compare(batch, batch) if student.readout == "comparator" else student(batch)
    assert out.shape == ((1, 5) if student.readout == "comparator" else (1,))
    assert torch.isfinite(out).all()
    spec = student.spec()
    rebuilt = create_student(spec["name"], **spec["args"])
    assert rebuilt.spec() == spec


def test_the_registry_names_classes_and_refuses_a_second_registration() -> None:
    things: Registry[object] = Registry("thing")

    @things.register("round")
    class Round:
        pass

    assert Round.name == "round" and things.list() == ["round"]
    assert isinstance(things.create("round"), Round)
    with pytest.raises(ValueError, match="'round' is registered twice"):
        things.register("round")(type("Other", (), {}))
    with pytest.raises(UnknownNameError, match=r"unknown thing 'rond'; did you mean 'round'\?"):
        things.get("rond")


def test_unknown_teacher_is_a_user_error_with_the_nearest_name() -> None:
    from datamodules.errors import UserError

    with pytest.raises(UserError, match=r"unknown teacher 'blurr'; did you mean 'blur'\?"):
        TEACHERS.create("blurr")
    assert np.all([isinstance(n, str) for n in list_teachers()])
