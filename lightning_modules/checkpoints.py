"""Student checkpoints: save a student as one safetensors file, load one from any of our formats.

A student file is `*.safetensors`: the weights plus, in its metadata, the student's spec (registered
name and constructor arguments) as JSON, so loading it needs no pickle and no code from the file.
`load_student` also reads a Lightning checkpoint of `PairwiseTrainingModule` (`*.ckpt`, loaded with
`weights_only=True`) and a plain state dict saved with its spec.

A student file may also carry a calibration (`lightning_modules.calibration`: raw scores onto a
named MOS scale) under its own metadata key; files without one load as before.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from datamodules._io import atomic_write
from datamodules.errors import UserError
from lightning_modules.calibration import Calibration, CalibrationError
from lightning_modules.students.base import Student, create_student

SPEC_KEY = "student_spec"
CALIBRATION_KEY = "calibration"
_PREFIX = "student."  # PairwiseTrainingModule keeps its student under this attribute


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read as a student, with its path and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def save_student(
    student: Student, path: str | os.PathLike, calibration: Calibration | None = None
) -> Path:
    """Write `student` (and its calibration, if any) to `path` (`.safetensors`) atomically;
    returns the path."""
    # contiguous copies: safetensors refuses views and tensors that share storage
    state = {k: v.detach().cpu().contiguous().clone() for k, v in student.state_dict().items()}
    return _save(path, student.spec(), state, calibration)


def write_calibration(
    source: str | os.PathLike, calibration: Calibration, out: str | os.PathLike | None = None
) -> Path:
    """The student at `source` with `calibration` (replacing any), written to `out` (default:
    `source` itself, or beside a `.ckpt` as `.safetensors`); the weights are copied as stored."""
    source = Path(source)
    spec, state = student_state(source)
    out = Path(out) if out is not None else source.with_suffix(".safetensors")
    return _save(out, spec, {k: v.contiguous() for k, v in state.items()}, calibration)


def read_calibration(path: str | os.PathLike) -> Calibration | None:
    """The calibration stored in the student file at `path`; None for a file without one (every
    file written before calibrations existed) and for a Lightning `.ckpt`."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return None
    text = _metadata(path).get(CALIBRATION_KEY)
    if text is None:
        return None
    try:
        return Calibration.from_json(text)
    except CalibrationError as err:
        raise CheckpointError(path, str(err)) from err


def _save(
    path: str | os.PathLike,
    spec: dict[str, Any],
    state: dict[str, torch.Tensor],
    calibration: Calibration | None,
) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: a student file ends in .safetensors")
    metadata = {SPEC_KEY: json.dumps(spec)}
    if calibration is not None:
        metadata[CALIBRATION_KEY] = calibration.to_json()
    atomic_write(path, lambda p: save_file(state, str(p), metadata=metadata))
    return path


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as err:
        raise CheckpointError(path, f"not a readable safetensors file ({err})") from err


def student_state(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(spec, state dict) of the student stored at `path` (`.safetensors` or Lightning `.ckpt`)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(path, "no such checkpoint")
    if path.is_dir():
        raise CheckpointError(
            path, "a folder (a DeepSpeed ZeRO checkpoint?): convert it first with "
            "lightning_modules.strategies.convert_zero_checkpoint(FOLDER, OUT.safetensors)"
        )  # fmt: skip
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
                state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
        except Exception as err:
            raise CheckpointError(path, f"not a readable safetensors file ({err})") from err
        if SPEC_KEY not in meta:
            raise CheckpointError(path, "safetensors file without a student spec in its metadata")
        return json.loads(meta[SPEC_KEY]), state
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(
            path, f"not loadable with torch.load(weights_only=True) ({type(err).__name__})"
        ) from err
    if not isinstance(ckpt, dict) or SPEC_KEY not in ckpt or "state_dict" not in ckpt:
        raise CheckpointError(path, "not a w2svqa training checkpoint (no student spec)")
    state = {k[len(_PREFIX) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(_PREFIX)}
    return ckpt[SPEC_KEY], state


def load_student(path: str | os.PathLike, **overrides: Any) -> Student:
    """Rebuild the student stored at `path` and load its weights; in eval mode.

    `overrides` replace constructor arguments (e.g. `feature_cache=None`, or `weights=None` to skip
    loading backbone weights that the checkpoint overwrites anyway)."""
    spec, state = student_state(path)
    return rebuild_student(path, spec, state, **overrides).eval()


def rebuild_student(
    source: str | os.PathLike,
    spec: dict[str, Any],
    state: dict[str, torch.Tensor],
    hint: str = "",
    **overrides: Any,
) -> Student:
    """`create_student` from `spec`, then its weights from `state`; errors name `source`."""
    try:
        student = create_student(spec["name"], **{**spec["args"], **overrides})
    except (KeyError, TypeError, ValueError) as err:
        reason = f"cannot rebuild student {spec.get('name')!r}: {err}"
        raise CheckpointError(source, reason) from err
    try:
        missing, unexpected = student.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a weight of another shape: another representation or size
        reason = f"weights do not fit student {spec['name']!r} as its spec builds it: {err}"
        raise CheckpointError(source, reason.replace("\n", " ")) from err
    if missing or unexpected:
        raise CheckpointError(
            source, f"weights do not fit student {spec['name']!r}: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}{hint}"
        )  # fmt: skip
    return student


def student_weights(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The student's entries of a `PairwiseTrainingModule` state dict, prefix removed."""
    return {k[len(_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(_PREFIX)}
