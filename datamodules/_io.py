"""File writing that never leaves a half-written output behind, and reading back what it cached."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call `write(tmp)` with a temporary name beside `path`, then rename it onto `path`.

    The temporary name keeps the suffix, so tools that pick a format from it (ffmpeg, pandas) work.
    A crash leaves either the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_cached_array(path: str | os.PathLike) -> np.ndarray | None:
    """A cached `.npy` array, or None when there is none or it cannot be read (a truncated or
    foreign file, e.g. from a disk that filled up): a warning names the file, and the caller
    computes the array again and writes it over the broken one, so no run stops on it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        warnings.warn(f"{path}: unreadable cache file ({type(err).__name__}: {err}); computing "
                      "it again and replacing it", stacklevel=2)  # fmt: skip
        return None
