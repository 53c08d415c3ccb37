"""The student interface: a trainable network that scores videos (and, for comparators, pairs).

A student owns its input pipeline: `sampler()` says which frames to decode and `prepare(frames,
path)` turns them into the tensor(s) `forward` takes, so the pair stream, the scoring job and the
trainer never need to know whether a student wants ImageNet crops, SigLIP frames at one per second
or cached backbone features. Read-outs:

- `"scorer"`: `forward(video) -> (B,)` scores; a pair is judged through the score difference.
- `"comparator"`: `compare(first, second) -> (B, 5)` logits over the five levels (0 inferior ...
  4 superior: how `first` compares with `second`); `forward` still returns one score per video
  (for comparators by comparing against anchor videos).

Students are registered by name, like teachers, and follow scikit-learn's convention that every
`__init__` argument is kept as an attribute of the same name: `spec()` then records how to rebuild
the student, and a checkpoint stores that spec next to the weights (no pickled classes).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from datamodules.frame_sampling import Sampler
from lightning_modules.registry import Registry

Readout = Literal["scorer", "comparator"]
StudentInput = torch.Tensor | dict[str, torch.Tensor]  # batched: a leading B dimension


class Student(nn.Module, ABC):
    """A trainable video quality model; see the module docstring for the contract."""

    name: ClassVar[str] = "student"
    readout: Readout = "scorer"

    @abstractmethod
    def sampler(self) -> Sampler:
        """Which frames to decode for one video."""

    @abstractmethod
    def prepare(self, frames: np.ndarray, path: str) -> StudentInput:
        """uint8 `(T, H, W, 3)` frames of the video at `path` -> one unbatched input."""

    def cached_input(self, path: str) -> StudentInput | None:
        """The prepared input of `path` if the student keeps one (e.g. cached features), so the
        loader can skip decoding; None: decode and `prepare`."""
        return None

    @abstractmethod
    def forward(self, video: StudentInput) -> torch.Tensor:
        """A batch of prepared inputs -> scores `(B,)`, higher is better."""

    def compare(self, first: StudentInput, second: StudentInput) -> torch.Tensor:
        """Level logits `(B, 5)` for comparators; scorers are judged by score differences."""
        raise NotImplementedError(f"student {self.name!r} is a scorer; it has no compare()")

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by part (e.g. "backbone", "head"), for per-part learning rates.
        Parts absent from the optimiser config use its base learning rate."""
        return {"all": [p for p in self.parameters() if p.requires_grad]}

    def spec(self) -> dict[str, Any]:
        """`{"name": NAME, "args": {...}}`: enough for `create_student` to rebuild this student."""
        params = inspect.signature(type(self).__init__).parameters
        args = {k: getattr(self, k) for k in params if k != "self"}
        return {"name": self.name, "args": args}


STUDENTS: Registry[Student] = Registry(
    "student", [f"lightning_modules.students.{m}" for m in ("compact", "llava_onevision")]
)
register_student = STUDENTS.register
list_students = STUDENTS.list
create_student = STUDENTS.create


def seeded_student(spec: dict[str, Any], seed: int) -> Student:
    """A new student from its spec (`Student.spec()`), its fresh layers initialised from `seed`:
    the same spec and seed give the same weights."""
    import lightning as L

    L.seed_everything(seed, verbose=False)
    return create_student(spec["name"], **spec["args"])
