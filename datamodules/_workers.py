"""Loader worker processes (and torchrun's ranks) that end with their parent.

A SIGKILLed run (out of memory, a scheduler, a user) gives its DataLoader workers no chance to
stop them: orphaned, they can hang forever on a full result queue, holding memory and the run's
output pipes. On Linux each worker asks the kernel to kill it when its parent dies."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import warnings

_PR_SET_PDEATHSIG = 1


def die_with_parent(worker_id: int = 0) -> None:
    """A DataLoader `worker_init_fn`: SIGKILL this worker when the process that made it dies.
    Lightning seeds workers only where a loader has no `worker_init_fn`: this one does it too."""
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
    follow_parent(os.getppid())


def follow_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent dies, however it dies (a loader
    worker's parent, or the torchrun a rank was started by); `parent` is the pid it should have,
    and if it has another already, that parent is gone and this process exits now. Linux only
    (PR_SET_PDEATHSIG); elsewhere, or where prctl is refused, nothing changes."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) != 0:
            return  # refused (a seccomp filter): this process outlives a killed parent
    except (OSError, AttributeError):  # no prctl: the same
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)


_warned_fork_hazard = False


def warn_if_forking_in_a_rank(workers: int) -> None:
    """Once a process: say so when a rank of a distributed run (torchrun's `WORLD_SIZE` > 1)
    forks loader workers under CPython before 3.11.10. A rank has threads that enter Python now
    and then (gloo's run loops), and a fork at that instant can leave the worker waiting forever
    in `PyOS_AfterFork_Child` (python/cpython#112275, fixed in 3.11.10); two gloo ranks'
    labelling hung so, twice in six runs under load."""
    global _warned_fork_hazard
    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if _warned_fork_hazard or workers == 0 or not distributed or sys.version_info >= (3, 11, 10):
        return
    _warned_fork_hazard = True
    warnings.warn(
        f"Python {sys.version.split()[0]} can hang a loader worker forked in a distributed rank "
        "(python/cpython#112275, fixed in 3.11.10): use Python 3.11.10 or newer, or set the "
        "loader workers to 0 (data.workers, training.workers)",
        stacklevel=3,
    )
