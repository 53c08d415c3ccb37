"""The distortion simulator: every registered type keeps shape and dtype, is reproducible from its
seed, and - the promise synthetic pairs rest on - gets worse by VMAF as its level rises."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.distortions import (
    DISTORTIONS,
    apply_chain,
    apply_distortion,
    list_distortions,
)
from datamodules.vmaf import vmaf_of_frames
from tests.videos import real_clip

NAMES = list(DISTORTIONS)
# Types that draw random numbers; the others must not depend on the seed at all.
RANDOM = {"noise", "jitter", "stutter", "packet_loss"}
FPS = 25.0

# A difference under 0.5 VMAF counts as a tie: it is a small fraction of one just-noticeable
# difference (about 6 VMAF points), so no pair label should rest on it. One tie per type is
# allowed because the ends of a scale can saturate (VMAF is clipped at 0: resize by 8 and by 16
# both reach 0 on bigbuckbunny and carphone).
TIE = 0.5


@pytest.fixture(scope="module")
def tiny() -> np.ndarray:
    # Odd height and width, so the codecs' pad-and-crop path runs on every type.
    return real_clip("bikes", frames=6, height=48)[:, :47, :83]


@pytest.fixture(scope="module", params=["bikes", "carphone"])
def clip(request) -> tuple[str, np.ndarray]:
    # Two kinds of real footage: bikes (riders, a pan, fine texture) and carphone (a talking head,
    # a window behind, at its native 176x144). 144 px keeps VMAF's features meaningful and the
    # whole table at about 10 s per clip.
    return request.param, real_clip(request.param, frames=16, height=144)


def test_registry_holds_the_papers_nine_and_extra_families():
    paper = list_distortions(default_only=True)
    assert [d.name for d in paper] == [
        "resize", "blur", "noise", "darken", "brighten", "jitter", "stutter", "h264", "h265",
    ]  # fmt: skip
    assert {d.family for d in paper} == {"spatial", "temporal", "compression"}
    extra = {d.family for d in list_distortions() if not d.default}
    assert len(extra) >= 3 and not extra & {"spatial", "temporal", "compression"}
    for d in list_distortions():
        assert DISTORTIONS[d.name] is d and len(d.levels) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_every_level_keeps_shape_and_dtype(tiny, name):
    outputs = [apply_distortion(tiny, FPS, name, lv) for lv in range(len(DISTORTIONS[name].levels))]
    for out in outputs:
        assert out.shape == tiny.shape and out.dtype == np.uint8
    assert not np.array_equal(outputs[-1], tiny)  # the strongest level does something


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_output(tiny, name):
    top = len(DISTORTIONS[name].levels) - 1
    first = apply_distortion(tiny, FPS, name, top, seed=7)
    assert np.array_equal(first, apply_distortion(tiny.copy(), FPS, name, top, seed=7))
    other = apply_distortion(tiny, FPS, name, top, seed=8)
    assert np.array_equal(first, other) is (name not in RANDOM)


def test_chain_applies_steps_in_order_with_distinct_seeds(tiny):
    once = apply_distortion(apply_distortion(tiny, FPS, "blur", 3), FPS, "h264", 1)
    assert np.array_equal(apply_chain(tiny, FPS, [("blur", 3), ("h264", 1)]), once)
    twice = apply_chain(tiny, FPS, [("noise", 4), ("noise", 4)], seed=1)
    assert np.array_equal(twice, apply_chain(tiny, FPS, [("noise", 4), ("noise", 4)], seed=1))
    # Two noise steps with the same seed would add the same field twice; the chain must not.
    doubled = apply_distortion(apply_distortion(tiny, FPS, "noise", 4, 1), FPS, "noise", 4, 1)
    assert not np.array_equal(twice, doubled)


@pytest.mark.parametrize(
    ("frames", "fps", "name", "level", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), 25, "blur", 0, "uint8"),
        (np.zeros((8, 8, 3), np.uint8), 25, "blur", 0, "shape"),
        (np.zeros((2, 8, 8, 4), np.uint8), 25, "blur", 0, "shape"),
        (np.zeros((0, 8, 8, 3), np.uint8), 25, "blur", 0, "shape"),
        (np.zeros((2, 8, 8, 3), np.uint8), 0, "blur", 0, "fps"),
        (np.zeros((2, 8, 8, 3), np.uint8), 25, "sharpen", 0, "known: resize, blur"),
        (np.zeros((2, 8, 8, 3), np.uint8), 25, "blur", 5, r"out of range .* 0\.\.4"),
        (np.zeros((2, 8, 8, 3), np.uint8), 25, "stutter", -1, r"out of range .* 0\.\.2"),
    ],
)
def test_bad_input_is_a_value_error_naming_the_problem(frames, fps, name, level, message):
    with pytest.raises(ValueError, match=message):
        apply_distortion(frames, fps, name, level)


def test_unknown_h265_preset_is_rejected(tiny):
    with pytest.raises(ValueError, match="veryslow"):
        apply_distortion(tiny, FPS, "h265", 0, h265_preset="glacial")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_vmaf_falls_as_the_level_rises(clip, name):
    content, frames = clip
    seeds = (0, 1) if name in RANDOM else (0,)
    for seed in seeds:
        scores = np.array([
            vmaf_of_frames(apply_distortion(frames, FPS, name, lv, seed), frames, FPS).mean
            for lv in range(len(DISTORTIONS[name].levels))
        ])  # fmt: skip
        print(f"{content:9s} {name:12s} seed {seed}: " + "  ".join(f"{s:6.2f}" for s in scores))
        steps = np.diff(scores)  # negative: the next level scores lower
        assert (steps < TIE).all(), f"{name}: VMAF rose by more than {TIE} at a level: {scores}"
        ties = int((np.abs(steps) < TIE).sum())
        assert ties <= 1, f"{name}: {ties} ties (|step| < {TIE}) in {scores}"
