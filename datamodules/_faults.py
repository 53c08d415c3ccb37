"""Fault injection for the kill-and-resume tests: `W2SVQA_KILL_AT=POINT[:N][@RANK]` makes the
process SIGKILL itself the N-th time (default: the first) it passes POINT, exactly as a kill from
outside would end it: no exception handler, no atexit, no flush. With `@RANK` only the process of
that global rank under torchrun dies. Unset, `kill_point` does nothing."""

from __future__ import annotations

import os
import signal

ENV = "W2SVQA_KILL_AT"
_passes: dict[str, int] = {}


def kill_point(point: str) -> None:
    """Where a kill is survivable by design; the tests kill the run here."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    wanted, _, rank = wanted.partition("@")
    name, _, count = wanted.partition(":")
    if name != point or (rank and rank != os.environ.get("RANK", "0")):
        return
    _passes[point] = _passes.get(point, 0) + 1
    if _passes[point] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
