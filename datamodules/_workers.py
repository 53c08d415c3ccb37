"""Loader worker processes that end with their parent.

A SIGKILLed run (out of memory, a scheduler, a user) gives its DataLoader workers no chance to
stop them: orphaned, they can hang forever on a full result queue, holding memory and the run's
output pipes. On Linux each worker asks the kernel to kill it when its parent dies."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(worker_id: int = 0) -> None:
    """A DataLoader `worker_init_fn`: SIGKILL this worker when the process that made it dies.
    Lightning seeds workers only where a loader has no `worker_init_fn`: this one does it too."""
    if int(os.environ.get("PL_SEED_WORKERS", "0")):
        from lightning.fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl: workers then outlive a killed parent
        return
    if os.getppid() != parent:  # the parent died before the request was in place
        os._exit(1)
