"""A rank that `w2svqa run` started under torchrun dies with its parent, even when the parent is
SIGKILLed (it cannot forward the signal): `follow_parent`. Without it, the child runs on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# the parent starts one child, says its pid, and waits; the child (optionally) asks to die with
# it, then says it is ready and sleeps
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], str(os.getpid()), sys.argv[2]])
print(child.pid, flush=True)
time.sleep(120)
"""
CHILD = """
import sys, time
from datamodules._workers import follow_parent
if sys.argv[2] == "yes":
    follow_parent(int(sys.argv[1]))
print("ready", flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie that no one has reaped yet counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
@pytest.mark.parametrize("follows", [True, False])
def test_a_rank_dies_with_its_killed_parent(follows: bool) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, CHILD, "yes" if follows else "no"],
        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    child = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "ready"  # the child's line, same pipe
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + (10 if follows else 2)  # a survivor: 2 s says enough
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(child) is not follows
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)
        parent.stdout.close()
