"""Stages that skip themselves: what a stage keeps for resuming is reused for the same inputs only.

The failure this guards against: a labelling job scores only the videos its table lacks, so after
the student changed, a re-run found the old student's score table and kept every score in it."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.stages import StageLog


def resumable_make(calls: list[str]):
    """A stage like a labelling job: it keeps what `out` and `out.parts/` already hold, and adds
    the rest; a kill (KeyboardInterrupt here) after the first part leaves the parts behind."""

    def make(out: Path, inputs: str, kill: bool = False) -> None:
        parts = out.with_name(out.name + ".parts")
        parts.mkdir(exist_ok=True)
        done = sorted(p.read_text() for p in parts.iterdir())
        for i in range(2):
            if any(d.startswith(f"{i}:") for d in done):
                continue
            (parts / f"{i}.txt").write_text(f"{i}:{inputs}")
            calls.append(f"{i}:{inputs}")
            if kill:
                raise KeyboardInterrupt
        out.write_text(",".join(sorted(p.read_text() for p in parts.iterdir())))
        for p in parts.iterdir():
            p.unlink()
        parts.rmdir()

    return make


def test_leftovers_resume_the_same_inputs_and_are_dropped_for_others(tmp_path: Path) -> None:
    log, calls = StageLog(say=lambda _: None), []
    make, out = resumable_make(calls), tmp_path / "scores.txt"
    with pytest.raises(KeyboardInterrupt):  # killed after its first part
        log.run("score", out, {"student": "a"}, lambda o: make(o, "a", kill=True))
    log.run("score", out, {"student": "a"}, lambda o: make(o, "a"))
    assert calls == ["0:a", "1:a"] and out.read_text() == "0:a,1:a"  # resumed, not redone

    calls.clear()
    log.run("score", out, {"student": "a"}, lambda o: make(o, "a"))
    assert calls == [] and log.timings[-1]["skipped"]  # up to date

    with pytest.raises(KeyboardInterrupt):  # killed again, then the inputs change
        log.run("score", out, {"student": "b"}, lambda o: make(o, "b", kill=True))
    log.run("score", out, {"student": "c"}, lambda o: make(o, "c"))
    assert calls == ["0:b", "0:c", "1:c"] and out.read_text() == "0:c,1:c"  # nothing of a or b
    assert not out.with_name("scores.txt.key.pending").exists()


def test_a_changed_stage_starts_without_the_old_output_and_checkpoints(tmp_path: Path) -> None:
    log = StageLog(say=lambda _: None)
    out = tmp_path / "student.safetensors"
    seen: list[bool] = []

    def train(o: Path, note: str) -> None:
        checkpoints = o.with_name(f"{o.stem}.lightning")
        seen.append(o.exists() or checkpoints.exists())
        checkpoints.mkdir(exist_ok=True)
        (checkpoints / "last.ckpt").write_text(note)
        o.write_text(note)

    log.run("train", out, {"pairs": 1}, lambda o: train(o, "one"))
    log.run("train", out, {"pairs": 2}, lambda o: train(o, "two"))
    assert seen == [False, False] and out.read_text() == "two"
