"""The embedded sample corpus at its smallest, for tests that need its real splits."""

from __future__ import annotations

from datamodules.sample_corpus import CorpusConfig

SMALL = CorpusConfig(
    cuts_per_asset=1, renditions_per_clip=1, labeled_per_asset=2, test_cuts_per_asset=1,
    test_renditions=1,
)  # fmt: skip
