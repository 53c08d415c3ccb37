"""A distributed rank that forks loader workers under a CPython with the fork deadlock
(python/cpython#112275, before 3.11.10) is told once, with the two ways out."""

from __future__ import annotations

import sys
import warnings

import pandas as pd
import pytest

import datamodules._workers as workers
from datamodules.frame_sampling import UniformFrames
from datamodules.video_datamodule import VideoScoringDataModule

AFFECTED = sys.version_info < (3, 11, 10)


def _loader_warnings(monkeypatch, world: str, n_workers: int) -> list[str]:
    monkeypatch.setattr(workers, "_warned_fork_hazard", False)
    monkeypatch.setenv("WORLD_SIZE", world)
    table = pd.DataFrame({"video_id": ["a"], "path": ["a.mp4"]})
    data = VideoScoringDataModule(table, UniformFrames(2), workers=n_workers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data.predict_dataloader()
        data.predict_dataloader()  # once a process
    return [str(w.message) for w in caught if "cpython#112275" in str(w.message)]


@pytest.mark.skipif(not AFFECTED, reason=f"Python {sys.version.split()[0]} has the fix")
def test_a_rank_forking_workers_is_told_once_how_to_avoid_the_hang(monkeypatch) -> None:
    (message,) = _loader_warnings(monkeypatch, "2", 2)
    assert "3.11.10" in message and "data.workers" in message


def test_no_warning_alone_without_workers_or_on_a_fixed_python(monkeypatch) -> None:
    assert _loader_warnings(monkeypatch, "1", 2) == []
    assert _loader_warnings(monkeypatch, "2", 0) == []
    if not AFFECTED:
        assert _loader_warnings(monkeypatch, "2", 2) == []
