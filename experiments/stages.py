"""Stages that skip themselves: an output is remade only when what made it has changed.

Each stage writes its output atomically and then a `OUTPUT.key` file beside it holding a hash of
its inputs (config values and the content hashes of the files it read). A re-run with the same
inputs finds the key and skips the stage; a killed run resumes at the first stage without one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datamodules._io import atomic_write


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


@dataclass
class StageLog:
    """Runs stages, skipping up-to-date ones, and keeps each one's elapsed time."""

    say: Callable[[str], None] = print
    timings: list[dict[str, Any]] = field(default_factory=list)

    def run(self, label: str, out: Path, key: Any, make: Callable[[Path], Any]) -> Path:
        """Make `out` with `make(out)` unless it exists with the same `key`."""
        keyfile = out.with_name(out.name + ".key")
        wanted = digest(key)
        if out.exists() and keyfile.is_file() and keyfile.read_text().strip() == wanted:
            self.record(label, 0.0, skipped=True)
            return out
        start = time.perf_counter()
        keyfile.unlink(missing_ok=True)  # a crash inside `make` must not leave an old key valid
        make(out)
        atomic_write(keyfile, lambda p: p.write_text(wanted + "\n"))
        self.record(label, time.perf_counter() - start)
        return out

    def timed(self, label: str, work: Callable[[], Any]) -> Any:
        """Run `work()` (a stage that keeps its own cache) and record its time."""
        start = time.perf_counter()
        result = work()
        self.record(label, time.perf_counter() - start)
        return result

    def record(self, label: str, seconds: float, skipped: bool = False) -> None:
        self.timings.append({"stage": label, "seconds": round(seconds, 2), "skipped": skipped})
        self.say(f"[{label}] " + ("up to date, skipped" if skipped else f"{seconds:.1f} s"))
