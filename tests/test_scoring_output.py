"""What a labelling job prints: a bar on stderr that names what it scores, and Lightning's banner
once a process, without its adverts or the deprecation warning it trips at every stage."""

from __future__ import annotations

import io
import logging
import uuid
import warnings
from pathlib import Path

import lightning as L
import pandas as pd
import pytest

from datamodules._progress import show_progress
from lightning_modules._quiet import OncePerProcess, quiet_lightning
from lightning_modules.scoring import label_videos
from lightning_modules.teachers import create_teacher
from tests.videos import write_numbered

RANK_ZERO = "lightning.pytorch.utilities.rank_zero"  # where Lightning logs its banner


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("videos")
    paths = [str(write_numbered(folder / f"clip{i}.mp4", 4)) for i in range(3)]
    return pd.DataFrame({"video_id": [Path(p).name for p in paths], "path": paths})


class Collect(logging.Handler):
    """Keeps the messages that reach it (that passed the logger's filters)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_the_bar_names_the_teacher_and_the_count(videos, tmp_path, capsys) -> None:
    teacher = create_teacher("blur", num_frames=2)
    label_videos(teacher, videos, tmp_path / "a.parquet", batch_size=1, workers=0, progress=True)
    captured = capsys.readouterr()
    assert "blur: 3 videos" in captured.err and "3/3" in captured.err
    assert "Predicting" not in captured.err + captured.out  # not Lightning's own bar
    assert "blur: 3 videos" not in captured.out  # stdout stays for results
    label_videos(teacher, videos, tmp_path / "b.parquet", workers=0, progress=True,
                 description="round 1: the student scores the pool")  # fmt: skip
    assert "round 1: the student scores the pool" in capsys.readouterr().err


def test_no_bar_off_a_terminal_or_when_disabled(videos, tmp_path, capsys) -> None:
    teacher = create_teacher("blur", num_frames=2)
    label_videos(teacher, videos, tmp_path / "a.parquet", workers=0)  # stderr is captured here
    label_videos(teacher, videos, tmp_path / "b.parquet", workers=0, progress=True,
                 trainer={"enable_progress_bar": False})  # fmt: skip
    captured = capsys.readouterr()
    assert "videos" not in captured.err and "Predicting" not in captured.err + captured.out


def test_show_progress_follows_the_terminal(monkeypatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert not show_progress(None) and show_progress(True)
    monkeypatch.setattr("sys.stderr", Terminal())
    assert show_progress(None) and not show_progress(False)


def test_quiet_lightning_drops_repeats_and_adverts_and_is_idempotent() -> None:
    quiet_lightning()
    quiet_lightning()
    logger = logging.getLogger(RANK_ZERO)
    assert sum(isinstance(f, OncePerProcess) for f in logger.filters) == 1
    collect = Collect()
    logger.addHandler(collect)
    banner = f"GPU available: False, used: False ({uuid.uuid4()})"  # unseen in this process
    try:
        logger.info(banner)
        logger.info(banner)
        logger.info("💡 Tip: For seamless cloud logging, try installing litlogger")
        logger.warning("a warning said twice")
        logger.warning("a warning said twice")
    finally:
        logger.removeHandler(collect)
    assert collect.messages == [banner, "a warning said twice", "a warning said twice"]


def test_two_trainers_show_the_banner_at_most_once() -> None:
    from lightning_utilities.core import rank_zero

    quiet_lightning()
    collect = Collect()
    rank_zero.log.addHandler(collect)  # the logger Lightning's rank_zero_info writes to
    try:
        for _ in range(2):
            L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False)
    finally:
        rank_zero.log.removeHandler(collect)
    assert sum(m.startswith("GPU available") for m in collect.messages) <= 1
    assert not [m for m in collect.messages if "Tip:" in m]


def test_the_two_library_warnings_are_hidden_only_where_they_are_tripped() -> None:
    from lightning.pytorch.utilities._pytree import _tree_flatten
    from torch.utils._pytree import LeafSpec
    from torchmetrics.regression import SpearmanCorrCoef

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_lightning()
        _tree_flatten(object())  # what Lightning's CombinedLoader does with every dataloader
        SpearmanCorrCoef()  # what every round's training module makes
        assert not caught
        LeafSpec()  # anyone else's use still warns: the filter names Lightning's module only
        same_text = "Metric `SpearmanCorrcoef` will save all targets and predictions"
        warnings.warn(same_text, UserWarning, stacklevel=1)  # from another module: still shown
    assert [w.category for w in caught] == [FutureWarning, UserWarning], "torch no longer warns?"
