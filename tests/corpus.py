"""The embedded sample corpus at its smallest, for tests that need its real splits, and the
digests that pin its bytes (`python -m tests.corpus` rewrites them after an intended change)."""

from __future__ import annotations

import hashlib
import json
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd

from datamodules.sample_corpus import SPLITS, CorpusConfig, build_sample_corpus

SMALL = CorpusConfig(
    cuts_per_asset=1, renditions_per_clip=1, labeled_per_asset=2, test_cuts_per_asset=1,
    test_renditions=1, validation_per_asset=1,
    unseen_cuts_per_asset=0,  # the recorded digests predate the split; its recipes are tested alone
)  # fmt: skip
DIGESTS = Path(__file__).parent / "data" / "small_corpus_digests.json"


def cpu_class() -> str:
    """What picks the SIMD code of the encoders and swscale on this machine: the architecture and,
    on x86, its widest vector extension (with AVX-512, every subset: they differ between CPUs)."""
    machine = platform.machine()
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines()
                    if x.startswith("flags"))  # fmt: skip
    except (OSError, StopIteration):
        return machine
    flags = set(line.split(":", 1)[1].split())
    avx512 = sorted(f.removeprefix("avx512").lstrip("_") for f in flags if f.startswith("avx512"))
    if avx512:
        return f"{machine} avx512: {','.join(avx512)}"
    return f"{machine} avx2" if "avx2" in flags else machine


def recorded_digests() -> dict[str, dict[str, dict[str, str]]]:
    """The repo's digests: CPU class -> clip -> {sha256, vmaf, distortions}."""
    return json.loads(DIGESTS.read_text())["by_cpu"]


def corpus_digests(out: Path) -> dict[str, dict[str, str]]:
    """Per clip of a built corpus: the SHA-256 of its stored video and its VMAF to 3 decimals
    (VMAF is a float sum over frames; 3 decimals are far above its rounding, far below a change)."""
    digests = {}
    for split in SPLITS:
        for row in pd.read_parquet(out / f"{split}.parquet").itertuples():
            video = hashlib.sha256((out / row.path).read_bytes()).hexdigest()
            vmaf = "nan" if pd.isna(row.vmaf) else f"{row.vmaf:.3f}"
            digests[row.path] = {"sha256": video, "vmaf": vmaf, "distortions": row.distortions}
    return dict(sorted(digests.items()))


def main() -> None:
    """Build the small corpus afresh and record its digests for this machine's CPU class in
    tests/data/ (the other classes' stay as they are)."""
    with tempfile.TemporaryDirectory() as tmp:
        summary = build_sample_corpus(tmp, SMALL)
        if summary["failed"]:
            sys.exit(f"the corpus build failed for {summary['failed']}")
        data = json.loads(DIGESTS.read_text())
        data["by_cpu"][cpu_class()] = corpus_digests(Path(tmp))
        DIGESTS.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote the digests of {cpu_class()!r} to {DIGESTS}")


if __name__ == "__main__":
    main()
