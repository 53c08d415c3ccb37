"""Lightning's console chatter, said once a process instead of once a Trainer.

A run builds a Trainer per stage (each teacher's labelling, each round's training and scoring), and
every Trainer logs the same banner ("GPU available: False, used: False", "TPU available: ...") and
an advert ("💡 Tip: ..."), and trips the same two library warnings. `quiet_lightning()` keeps the
first of each informational message, drops the adverts and those two warnings; other warnings and
errors pass untouched. It is idempotent, and imports nothing heavy: logging filters
work by logger name, and a warnings filter by message and module.
"""

from __future__ import annotations

import logging
import warnings

# Where Lightning's rank-zero messages are logged. `rank_zero_info` logs under whichever of the two
# rank_zero modules was imported last, so both get the filter; filters on a parent logger do not
# see its children's records, hence the full names. getLogger makes a logger that Lightning has not
# made yet, and Lightning's own getLogger later returns that same object, filter included.
LOGGERS = (
    "lightning.pytorch", "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric", "lightning.fabric.utilities.rank_zero", "lightning.fabric.utilities.seed",
)  # fmt: skip
ADVERT = "💡 Tip:"


class OncePerProcess(logging.Filter):
    """Drops Lightning's adverts, and any INFO (or quieter) message already let through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith(ADVERT):
            return False
        if record.levelno > logging.INFO:  # a warning or an error is never a repeat to hide
            return True
        if message in self.seen:
            return False
        self.seen.add(message)
        return True


_FILTER = OncePerProcess()


def quiet_lightning() -> None:
    """Show Lightning's banner at most once in this process and hide its adverts (idempotent)."""
    for name in LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)  # adds nothing when it is already there
    # Lightning's CombinedLoader builds torch's `LeafSpec()`, which torch 2.14 deprecates (Lightning
    # issue 21326; 2.6.6, the newest, still does). Every stage shows it again: pandas' many
    # `catch_warnings` blocks reset Python's show-once registry. Our code never builds a LeafSpec,
    # so the warning is hidden here, by its message and the Lightning module that triggers it.
    # Not guarded by a flag: pytest and `catch_warnings` restore the filters list, so a call must
    # add it again (filterwarnings replaces an identical entry rather than adding a second one).
    warnings.filterwarnings(
        "ignore",
        message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        category=FutureWarning,
        module=r"lightning\.pytorch\.utilities\._pytree",
    )
    # torchmetrics warns at every SpearmanCorrCoef made (one per round's training module) that it
    # keeps all predictions: a few floats per validation video here, never a memory problem.
    warnings.filterwarnings(
        "ignore",
        message=r"Metric `SpearmanCorrcoef` will save all targets and predictions",
        category=UserWarning,
        module=r"torchmetrics\.utilities\.prints",
    )
