"""Build what scores videos from what a user names: a teacher (registered name or YAML file) or a
trained student's file. The command line, zero-shot evaluation and the runner all build their
scorers here, so a name means the same teacher everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from datamodules.errors import UserError

if TYPE_CHECKING:
    from lightning_modules.teachers.base import Teacher


class TeacherSpecError(UserError, ValueError):
    """A teacher spec (name or YAML file) that names no teacher; the message says why."""


def load_teacher(spec: str | Path) -> Teacher:
    """A registered teacher by name, or from a YAML file `{name: NAME, args: {...}}`."""
    from lightning_modules.teachers import create_teacher

    text = str(spec)
    if not text.endswith((".yaml", ".yml")):
        return create_teacher(text)
    import yaml

    path = Path(text)
    if not path.is_file():
        raise TeacherSpecError(f"{path}: no such teacher file")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise TeacherSpecError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(config, dict) or "name" not in config:
        raise TeacherSpecError(f"{path}: expected a mapping with 'name' (and optional 'args')")
    try:
        return create_teacher(config["name"], **(config.get("args") or {}))
    except TypeError as err:  # arguments the teacher does not take
        raise TeacherSpecError(f"{path}: teacher {config['name']!r}: {err}") from err


def load_scorer(checkpoint: str | Path | None = None, teacher: str | Path | None = None) -> Teacher:
    """The scorer for a student file (.safetensors or .ckpt) or a teacher spec: exactly one."""
    if (checkpoint is None) == (teacher is None):
        raise UserError("give exactly one of a student checkpoint or a teacher")
    if checkpoint is not None:
        from lightning_modules.teachers.student import StudentTeacher

        return StudentTeacher(checkpoint)
    return load_teacher(teacher)
