"""The teacher interface: a teacher maps one video to one quality score, higher is better.

A teacher declares the frames it needs (a sampler from `datamodules.frame_sampling`, or None for a
teacher that looks scores up in a table and decodes nothing) and returns its *native* value; the
labelling job flips lower-is-better natives at this boundary and keeps both in the score table.
Teachers are registered by name (`@register_teacher("sharpness")`, which sets `name`), so that
`w2svqa label --teacher NAME` and YAML files (`class_path`) can name them.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from datamodules.frame_sampling import Sampler
from datamodules.video_reader import VideoInfo
from lightning_modules.registry import Registry

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class VideoItem:
    """One video as a teacher sees it: its id and path, and the frames its sampler asked for."""

    video_id: str
    path: str
    frames: np.ndarray | None = None  # uint8 (T, H, W, 3); None for teachers that decode nothing
    info: VideoInfo | None = None
    error: str | None = None  # set by the loader instead of frames when the video cannot be read
    prepared: Any = None  # the teacher's own cached input for this video; then nothing is decoded


class Teacher(ABC):
    """Maps a video to one quality score. Subclasses set `name`, `higher_is_better` and
    `native_range`, return a sampler (or None) and implement `score_native`."""

    name: str = "teacher"
    higher_is_better: bool = True
    native_range: tuple[float, float] | None = None  # for display and sanity checks; None: open

    def sampler(self) -> Sampler | None:
        """Which frames to decode for `score_native`; None: the teacher decodes nothing."""
        return None

    def cached_input(self, path: str) -> Any:
        """What the teacher keeps of `path` from an earlier pass (e.g. a student's cached
        features); not None: the loader skips decoding and sets `VideoItem.prepared`."""
        return None

    @abstractmethod
    def score_native(self, item: VideoItem) -> float:
        """The teacher's own value for one video, on its native scale and direction."""

    def score_native_batch(self, items: list[VideoItem]) -> list[float | Exception]:
        """Native values for several readable videos; an item's failure is returned in its place.
        Teachers that gain from batching (a network) override this; the default loops."""
        out: list[float | Exception] = []
        for item in items:
            try:
                out.append(self.score_native(item))
            except Exception as err:  # one video's failure is recorded, never fatal
                out.append(err)
        return out

    def to_score(self, native: float) -> float:
        """Native value -> score where higher is better (lower-is-better natives are negated)."""
        return native if self.higher_is_better else -native


class TrainableTeacher(Teacher):
    """A teacher that is fitted on labelled videos before it scores (a supervised weak teacher,
    as the paper's were trained on LSVQ). `model` is the fitted model file, None until fitted."""

    model: str | None = None

    @property
    def fitted(self) -> bool:
        """Whether the teacher has a model to score with (from `fit`, `load` or `model=PATH`)."""
        return self.model is not None

    @abstractmethod
    def fit(self, videos: pd.DataFrame, out: str | os.PathLike) -> Path:
        """Fit on labelled videos (`video_id`, `path`, `mos`), write the model file `out`
        atomically, set `model` and return `out`. Unreadable videos are skipped with a warning
        naming each file and the reason; too few usable ones raise ValueError with the count."""

    @abstractmethod
    def load(self, path: str | os.PathLike) -> None:
        """Score with the model file `path` from now on (read and checked here; sets `model`)."""

    def fit_identity(self) -> dict[str, Any]:
        """What shapes a fitted model beyond the teacher's settings (how its features are
        computed): part of the fit's cache key, so a change of it refits instead of reusing."""
        return {}


def score_one(teacher: Teacher, item: VideoItem) -> float:
    """`score_native` for teachers that score in batches: a batch of one, its failure raised."""
    result = teacher.score_native_batch([item])[0]
    if isinstance(result, Exception):
        raise result
    return result


TEACHERS: Registry[Teacher] = Registry(
    "teacher",
    [
        f"lightning_modules.teachers.{m}"
        for m in ("classical", "tables", "vlm", "student", "regressor", "statistics")
    ],
)
register_teacher = TEACHERS.register
list_teachers = TEACHERS.list
create_teacher = TEACHERS.create


def describe_teachers() -> list[tuple[str, str]]:
    """Each registered teacher's name and one line (direction, native scale, or the arguments it
    needs), read from its class: nothing is constructed, no model is loaded."""
    rows = []
    for name in list_teachers():
        cls = TEACHERS.get(name)
        params = inspect.signature(cls).parameters.values()
        if any(p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
               for p in params):  # fmt: skip
            rows.append(
                (name, f"needs arguments: give a YAML file {{name: {name}, args: {{...}}}}")
            )
            continue
        scale = f"native {cls.native_range}" if cls.native_range else "native open"
        direction = "higher is better" if cls.higher_is_better else "lower is better (flipped)"
        rows.append((name, f"{direction}, {scale}"))
    return rows
