"""A trained student of this suite as a teacher: the checkpoint of an earlier round labels videos
for the next one (the paper's iterative weak-to-strong training), or any video for `w2svqa score`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch.utils.data import default_collate

from datamodules.frame_sampling import Sampler
from lightning_modules.checkpoints import load_student
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher


@register_teacher("student")
class StudentTeacher(Teacher):
    """Scores videos with a trained student checkpoint (`.safetensors` or a training `.ckpt`)."""

    name = "student"
    higher_is_better = True

    def __init__(self, checkpoint: str | os.PathLike, device: str = "auto") -> None:
        """`device` "auto": the GPU when there is one, else the CPU."""
        self.checkpoint = str(checkpoint)
        self.name = f"student:{Path(checkpoint).stem}"
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.student = load_student(checkpoint).to(self.device)
        self.student.requires_grad_(False)  # frozen: eval mode and no gradients, always

    def sampler(self) -> Sampler:
        return self.student.sampler()

    def score_native(self, item: VideoItem) -> float:
        result = self.score_native_batch([item])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def score_native_batch(self, items: list[VideoItem]) -> list[float | Exception]:
        """One forward pass for the batch; a video whose preparation fails is reported alone."""
        results: list[float | Exception] = [0.0] * len(items)
        inputs, ok = [], []
        for i, item in enumerate(items):
            try:
                inputs.append(self.student.prepare(item.frames, item.path))
                ok.append(i)
            except Exception as err:  # one video's failure is recorded, never fatal
                results[i] = err
        if ok:
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
