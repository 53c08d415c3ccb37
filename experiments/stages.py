"""Stages that skip themselves: an output is remade only when what made it has changed.

Each stage writes its output atomically and then a `OUTPUT.key` file beside it holding a hash of
its inputs (config values and the content hashes of the files it read). A re-run with the same
inputs finds the key and skips the stage; a killed run resumes at the first stage without one.

While a stage is being made, `OUTPUT.key.pending` holds the key it is made for. Whatever a stage
left behind for resuming (the output itself, a labelling job's `OUTPUT.parts/`, a training round's
`OUTPUT-stem.lightning/` checkpoints) is kept for the same key only: made from other inputs (a
changed student, other pairs), it is removed before the stage starts, so a labelling job never
takes the old student's scores as done and a round never resumes another round's checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules._io import atomic_write

# Part of every stage's key: bump it when a change to the code makes a stage give other outputs
# from the same inputs (a new pair rule, a fixed teacher), so that no old output is reused.
CODE_VERSION = 1


def digest(value: Any) -> str:
    """A stable short hash of JSON-able data (dataclasses and paths go through `str`)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """Hash of a file's content (tables, student files: small enough to read whole)."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def global_rank() -> int:
    """This process's rank under torchrun (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class StageLog:
    """Runs stages, skipping up-to-date ones, and keeps each one's elapsed time.

    Under torchrun, rank 0 makes each stage's output and the other ranks wait for its key, except
    for collective stages (labelling, scoring, training), which every rank runs together; rank 0
    alone writes their key."""

    say: Callable[[str], None] = print
    timings: list[dict[str, Any]] = field(default_factory=list)
    rank: int = field(default_factory=global_rank)
    poll_seconds: float = 1.0

    def run(
        self,
        label: str,
        out: Path,
        key: Any,
        make: Callable[[Path], Any],
        collective: bool = False,
    ) -> Path:
        """Make `out` with `make(out)` unless it exists with the same `key`."""
        keyfile = out.with_name(out.name + ".key")
        wanted = digest({"inputs": key, "code": CODE_VERSION})
        if _holds(keyfile, wanted) and out.exists():
            self.record(label, 0.0, skipped=True)
            return out
        start = time.perf_counter()
        pending = out.with_name(out.name + ".key.pending")
        if self.rank != 0 and not collective:
            self._wait(lambda: _holds(keyfile, wanted) and out.exists())  # rank 0 is making it
            return out
        if self.rank != 0:  # a collective stage: start once rank 0 has removed stale leftovers
            self._wait(lambda: _holds(pending, wanted) or _holds(keyfile, wanted))
        if self.rank == 0:
            keyfile.unlink(missing_ok=True)  # a crash inside `make` must not leave a valid key
            if not _holds(pending, wanted):  # leftovers of other inputs are no head start
                discard_leftovers(out)
                atomic_write(pending, lambda p: p.write_text(wanted + "\n"))
        make(out)
        if self.rank == 0:
            atomic_write(keyfile, lambda p: p.write_text(wanted + "\n"))
            pending.unlink(missing_ok=True)
        else:  # rank 0 may still be finishing the output (merging the ranks' score parts)
            self._wait(lambda: _holds(keyfile, wanted) and out.exists())
        self.record(label, time.perf_counter() - start)
        return out

    def _wait(self, ready: Callable[[], bool]) -> None:
        while not ready():
            time.sleep(self.poll_seconds)

    def record(self, label: str, seconds: float, skipped: bool = False) -> None:
        if self.rank != 0:
            return
        self.timings.append({"stage": label, "seconds": round(seconds, 2), "skipped": skipped})
        self.say(f"[{label}] " + ("up to date, skipped" if skipped else f"{seconds:.1f} s"))


def discard_leftovers(out: Path) -> None:
    """Remove `out` and what a stage making it keeps for resuming: `OUT.parts/` (labelling) and
    `OUT-stem.lightning/` (training checkpoints)."""
    out.unlink(missing_ok=True)
    for folder in (out.with_name(out.name + ".parts"), out.with_name(f"{out.stem}.lightning")):
        shutil.rmtree(folder, ignore_errors=True)


def _holds(keyfile: Path, wanted: str) -> bool:
    try:
        return keyfile.read_text().strip() == wanted
    except OSError:
        return False


@contextmanager
def single_process():
    """Hide torchrun's environment from a job that runs on rank 0 alone (a labelling job's
    one-device Trainer would otherwise take itself for one rank of the whole world)."""
    names = [n for n in os.environ if n in _DIST_VARS or n.startswith("TORCHELASTIC_")]
    saved = {n: os.environ.pop(n) for n in names}
    try:
        yield
    finally:
        os.environ.update(saved)


_DIST_VARS = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "ROLE_RANK",
              "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}  # fmt: skip
