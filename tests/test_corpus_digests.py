"""The small sample corpus is byte for byte what the repo's digests say: a change to the data (our
code, or a library under it: OpenCV's warps, ffmpeg's encoders, libvmaf) is seen here, not later in
a results table."""

from __future__ import annotations

import json
from pathlib import Path

from tests.corpus import DIGESTS, corpus_digests


def test_small_corpus_matches_the_digests_in_the_repo(small_corpus: tuple[Path, dict]) -> None:
    out, summary = small_corpus
    assert summary["failed"] == []
    expected = json.loads(DIGESTS.read_text())
    found = corpus_digests(out)
    assert found.keys() == expected.keys(), "the corpus's clips are not the ones in the digests"
    changed = [f"{path} ({found[path]['distortions']}): {what} {expected[path][what]} -> "
               f"{found[path][what]}"
               for path in expected for what in ("sha256", "vmaf")
               if found[path][what] != expected[path][what]]  # fmt: skip
    assert not changed, (
        f"{len(changed)} of {2 * len(expected)} digests changed:\n"
        + "\n".join(changed)
        + f"\nIf the change is intended (and the lock is what you meant), rewrite {DIGESTS.name}"
        " with `python -m tests.corpus` and say why in the commit."
    )
