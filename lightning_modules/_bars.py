"""The base of the suite's Lightning progress bars: they say what they do, and write to stderr like
every other bar of the suite, so that stdout stays for results (a table, a CSV)."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm


class StderrProgressBar(TQDMProgressBar):
    """A Lightning bar named by `description` ("blur: 120 videos", "round 2: train")."""

    def __init__(self, description: str) -> None:
        super().__init__()
        self.description = description

    def stderr_bar(
        self, desc: str, total: float | None, unit: str, initial: int = 0, leave: bool = True
    ) -> Tqdm:
        sys.stdout.flush()  # what was printed before this stage shows before its bar
        return Tqdm(
            desc=desc, total=total, initial=initial, disable=self.is_disabled, leave=leave,
            dynamic_ncols=True, file=sys.stderr, smoothing=0, unit=unit,
            bar_format=self.BAR_FORMAT,
        )  # fmt: skip
