"""Progress bars of the long stages: tqdm on stderr, each saying what its stage does.

stderr, so that stdout stays for results (a table, a CSV) and a bar never lands inside them.
`progress=None` shows a bar only when stderr is a terminal: a log file or a test's captured output
gets no carriage-return noise. stdout is flushed first, so a line printed just before a stage is
on screen before the stage's bar, even when stdout is a buffered pipe.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


def show_progress(progress: bool | None) -> bool:
    """Whether a bar is shown: `progress` itself, or (None) whether stderr is a terminal."""
    if progress is not None:
        return progress
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(total: int, desc: str, unit: str, progress: bool | None = None) -> tqdm:
    """A tqdm bar on stderr (shown as `show_progress(progress)` says), after flushing stdout."""
    sys.stdout.flush()
    return tqdm(
        total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
        disable=not show_progress(progress),
    )  # fmt: skip
