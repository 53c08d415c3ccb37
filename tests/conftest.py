"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.sample_corpus import build_sample_corpus
from tests.corpus import SMALL


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The sample corpus built once per test session with `SMALL`: (folder, summary)."""
    out = tmp_path_factory.mktemp("corpus")
    return out, build_sample_corpus(out, SMALL)
