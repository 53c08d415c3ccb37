"""A trained student of this suite as a teacher: the checkpoint of an earlier round labels videos
for the next one (the paper's iterative weak-to-strong training), or any video for `w2svqa score`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datamodules.frame_sampling import Sampler
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher, score_one

if TYPE_CHECKING:
    import torch


# file names that say nothing about which student it is
_GENERIC_STEMS = ("student", "student_calibrated", "last", "best", "model", "checkpoint")


def student_name(checkpoint: str | os.PathLike) -> str:
    """`student:quickstart/round3` for runs/quickstart/round3/student.safetensors: a file named
    like every student file is named by its folders instead; `student:STEM` for any other."""
    path = Path(checkpoint)
    if path.stem not in _GENERIC_STEMS:
        return f"student:{path.stem}"
    folders = [p for p in path.parent.parts[-2:] if p not in ("", ".", "/")]
    return f"student:{'/'.join(folders) or path.stem}"


@register_teacher("student")
class StudentTeacher(Teacher):
    """Scores videos with a trained student checkpoint (`.safetensors` or a training `.ckpt`)."""

    higher_is_better = True

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        device: str = "auto",
        anchors: list[str] | None = None,
    ) -> None:
        """`device` "auto": the GPU when there is one, else the CPU. `anchors`: for a comparator
        student, the videos of spread quality each video is compared with (see `pick_anchors`)."""
        self.checkpoint = str(checkpoint)
        self.name = student_name(checkpoint)
        import torch

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        from lightning_modules.checkpoints import load_student

        self.student = load_student(checkpoint).to(self.device)
        self.student.requires_grad_(False)  # frozen: eval mode and no gradients, always
        if self.student.readout == "comparator":
            if not anchors:
                raise ValueError(
                    f"{checkpoint}: a comparator student scores a video against anchor videos; "
                    "give anchors=[PATH, ...] (n_anchors videos of spread quality)"
                )
            self.student.set_anchors(_to(self._prepare_paths(anchors), self.device))

    def _prepare_paths(self, paths: list[str]):
        from datamodules.video_reader import VideoReader

        prepared = []
        for path in paths:
            with VideoReader(path) as reader:  # an unreadable anchor is an error naming it
                frames = reader.get_frames(self.student.sampler().indices(reader.info))
            prepared.append(self.student.prepare(frames, path))
        from torch.utils.data import default_collate

        return default_collate(prepared)

    def sampler(self) -> Sampler:
        return self.student.sampler()

    def cached_input(self, path: str) -> Any:
        return self.student.cached_input(path)

    def score_native(self, item: VideoItem) -> float:
        return score_one(self, item)

    def score_native_batch(self, items: list[VideoItem]) -> list[float | Exception]:
        """One forward pass for the batch; a video whose preparation fails is reported alone."""
        results: list[float | Exception] = [0.0] * len(items)
        inputs, ok = [], []
        for i, item in enumerate(items):
            try:
                prepared = item.prepared
                if prepared is None:
                    prepared = self.student.prepare(item.frames, item.path)
                inputs.append(prepared)
                ok.append(i)
            except Exception as err:  # one video's failure is recorded, never fatal
                results[i] = err
        if ok:
            import torch
            from torch.utils.data import default_collate

            batch = _to(default_collate(inputs), self.device)
            with torch.inference_mode():
                scores = self.student(batch).float().cpu().tolist()
            for i, score in zip(ok, scores, strict=True):
                results[i] = score
        return results


def _to(batch, device: torch.device):
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return batch.to(device)
