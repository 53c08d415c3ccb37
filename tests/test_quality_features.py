"""The compact student's quality-aware representation ("stage_stats"): mean and std of every
stage's map on the native frame; its shapes, cache key, frozen backbone, short and one-frame videos,
and old student files."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from datamodules.frame_sampling import SpreadAndRun, read_clip
from datamodules.transforms import normalize, to_float
from lightning_modules.checkpoints import SPEC_KEY, CheckpointError, load_student, save_student
from lightning_modules.students.compact import INFERENCE_PASS, CompactStudent, SamePaddedConv2d
from lightning_modules.students.quality_features import (
    cap_long_side,
    stage_statistics,
    stage_widths,
    temporal_statistics,
    temporal_width,
)
from tests.videos import real_clip, write_numbered

TINY = {"weights": None, "frames": 3, "hidden": 16}
STATS = {**TINY, "representation": "stage_stats"}
LITE0_WIDTHS = [16, 24, 40, 80, 112, 192, 320, 1280]  # 7 stages and the head conv


def test_stage_statistics_shapes_and_layout() -> None:
    student = CompactStudent(**STATS)
    assert stage_widths(student.encoder) == LITE0_WIDTHS
    x = torch.randn(2, 3, 72, 128)
    with torch.no_grad():
        feats = stage_statistics(student.encoder, x)
    assert feats.shape == (2, 2 * sum(LITE0_WIDTHS))  # 4128: every mean, then every std
    stds = feats[:, sum(LITE0_WIDTHS) :]
    assert (stds >= 0).all()
    with torch.no_grad():  # the first 16 values are the first stage's spatial means
        first = student.encoder.blocks[0](student.encoder.bn1(student.encoder.conv_stem(x)))
    torch.testing.assert_close(feats[:, :16], first.mean(dim=(2, 3)))


def test_prepare_reads_the_native_frame_and_caps_large_ones() -> None:
    student = CompactStudent(**STATS).eval()
    frames = real_clip("bikes", frames=3, height=72)  # (3, 72, W, 3): never resized to 224
    feats = student.prepare(frames, "unused.mp4")
    assert feats.shape == (3, 4128)
    cfg = student.encoder.pretrained_cfg  # tf_efficientnet_lite0: mean = std = 0.5
    # (the features are the folded backbone's: the frozen passes run it, test below)
    native = normalize(to_float(frames), cfg["mean"], cfg["std"])
    with torch.no_grad():
        torch.testing.assert_close(feats, stage_statistics(student._frozen_encoder(), native))
    capped = CompactStudent(**STATS, max_side=64).eval()
    small = cap_long_side(native, 64)
    assert max(small.shape[-2:]) == 64
    with torch.no_grad():
        torch.testing.assert_close(
            capped.prepare(frames, "unused.mp4"), stage_statistics(capped._frozen_encoder(), small)
        )
    assert cap_long_side(native, 4096) is native  # a frame that fits is left as it is


def test_cache_key_names_the_representation_and_the_folded_backbone(tmp_path: Path) -> None:
    video = write_numbered(tmp_path / "v.mp4", 4)
    pooled = CompactStudent(**TINY)
    st = os.stat(video)
    old = [os.path.abspath(video), st.st_size, st.st_mtime_ns, "tf_efficientnet_lite0", None, 3,
           224]  # fmt: skip  # the key's parts before the folded backbone computed features
    # a cache written by the unfolded backbone differs in the fifth digit: it is never read
    assert pooled._cache_key(str(video)) != hashlib.sha1(repr(old).encode()).hexdigest()
    folded = hashlib.sha1(repr([*old, "folded"]).encode()).hexdigest()  # before padding in place
    assert pooled._cache_key(str(video)) != folded
    now = hashlib.sha1(repr([*old, INFERENCE_PASS]).encode()).hexdigest()
    assert pooled._cache_key(str(video)) == now
    keys = {CompactStudent(**STATS, max_side=m)._cache_key(str(video)) for m in (640, 320)}
    assert len(keys) == 2 and pooled._cache_key(str(video)) not in keys


def test_backbone_stays_frozen_through_a_training_step() -> None:
    student = CompactStudent(**STATS).train()
    assert not student.encoder.training and set(student.parameter_groups()) == {"head"}
    before = {k: v.clone() for k, v in student.encoder.state_dict().items()}
    frames = real_clip("carphone", frames=3, height=48)
    pixels = cap_long_side(student.transform(frames), student.max_side)[None]  # (1, T, 3, H, W)
    feats = student.features(pixels)
    optim = torch.optim.AdamW([p for p in student.parameters() if p.requires_grad], lr=0.1)
    loss = student(torch.cat([feats, feats + 1.0])).diff().square().sum()
    loss.backward()
    optim.step()
    assert all(p.grad is None for p in student.encoder.parameters())
    after = student.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics too
    with pytest.raises(ValueError, match="frozen backbone"):
        CompactStudent(**STATS, trainable_blocks=1)
    with pytest.raises(ValueError, match="'pooled' or 'stage_stats'"):
        CompactStudent(**TINY, representation="fragments")  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [1, 2])
def test_short_and_one_frame_videos_score(tmp_path: Path, length: int) -> None:
    """A video shorter than the student's frames repeats its last frame (the sampler pads); one
    frame has no motion, and still scores."""
    video = write_numbered(tmp_path / "short.mp4", length)
    student = CompactStudent(**{**STATS, "frames": 4}).eval()
    frames = read_clip(video, student.sampler())
    assert len(frames) == 4
    feats = student.prepare(frames, str(video))
    assert feats.shape == (4, 4128)
    with torch.no_grad():
        score = student(feats[None])
        one = student(feats[None, :1])  # a single frame given as such
    assert torch.isfinite(score).all() and torch.isfinite(one).all() and one.shape == (1,)


def test_old_student_files_load_and_mismatched_ones_are_refused(tmp_path: Path) -> None:
    from safetensors import safe_open
    from safetensors.torch import save_file

    pooled = CompactStudent(**TINY)
    path = save_student(pooled, tmp_path / "pooled.safetensors")
    with safe_open(path, "pt") as f:
        meta, weights = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    spec_key = SPEC_KEY
    spec = json.loads(meta[spec_key])
    for new in ("representation", "max_side", "standardize"):  # a file older than them
        del spec["args"][new]
    old = tmp_path / "old.safetensors"
    save_file(weights, old, metadata={**meta, spec_key: json.dumps(spec)})
    loaded = load_student(old)
    assert loaded.representation == "pooled" and loaded.embed[0].in_features == 1280
    assert not loaded.standardize and isinstance(loaded.input_norm, torch.nn.Identity)

    spec["args"]["representation"] = "stage_stats"  # a spec that its weights do not fit
    wrong = tmp_path / "wrong.safetensors"
    save_file(weights, wrong, metadata={**meta, spec_key: json.dumps(spec)})
    with pytest.raises(CheckpointError, match="wrong.safetensors.*do not fit"):
        load_student(wrong)


def test_temporal_run_appends_how_consecutive_frames_change() -> None:
    student = CompactStudent(**STATS, temporal_run=6).eval()
    assert student.sampler() == SpreadAndRun(3, 6)  # 3 spread frames, then 6 consecutive ones
    k = temporal_width(student.encoder)
    assert k == 2 * (3 + 16 + 24 + 40) + 1 and student.embed[0].in_features == 4128 + k
    clip = real_clip("bikes", frames=9, height=48)  # 3 spread + 6 in a run
    smooth = student.prepare(clip, "unused.mp4")
    stutter = clip.copy()
    stutter[4::2] = stutter[3:-1:2]  # every other frame of the run repeats its predecessor
    stuttered = student.prepare(stutter, "unused.mp4")
    assert smooth.shape == stuttered.shape == (3, 4128 + k)
    assert torch.equal(smooth[:, :4128], stuttered[:, :4128])  # the spread frames are the same
    assert torch.equal(smooth[0, 4128:], smooth[2, 4128:])  # one (K,) vector beside every frame
    assert smooth[0, -1] == 0 and stuttered[0, -1] > 0.3  # the fraction of repeated frames
    with pytest.raises(ValueError, match="temporal_run needs"):
        CompactStudent(**TINY, temporal_run=6)  # pooled: no temporal statistics
    with pytest.raises(ValueError, match="at least 2 frames"):
        temporal_statistics(student.encoder, torch.zeros(1, 3, 32, 32))


def test_standardize_scales_each_feature_and_its_statistics_travel_with_the_file(
    tmp_path: Path,
) -> None:
    """Features of very different scales reach the head at unit scale: batch statistics in
    training, running ones after, saved in the student file; scores do not depend on the scale
    of one feature once standardised."""
    torch.manual_seed(0)
    student = CompactStudent(**STATS, standardize=True)
    d = student.input_norm.num_features
    assert d == 2 * sum(stage_widths(student.encoder))
    scale = torch.logspace(-2, 3, d)  # five orders of magnitude across the features
    student.train()
    for _ in range(20):  # running statistics: the average over the training batches
        student(torch.randn(8, 3, d) * scale + 5.0 * scale)
    student.eval()
    norm = student.input_norm
    assert torch.allclose(norm.running_mean / scale, torch.full((d,), 5.0), atol=0.3)
    assert torch.allclose(norm.running_var.sqrt() / scale, torch.ones(d), atol=0.15)
    feats = torch.randn(4, 3, d) * scale + 5.0 * scale
    with torch.no_grad():
        before = student(feats)
    path = save_student(student, tmp_path / "std.safetensors")
    loaded = load_student(path).eval()
    assert loaded.standardize
    with torch.no_grad():
        assert torch.equal(loaded(feats), before)  # the running statistics came with the file
    plain = CompactStudent(**STATS)
    assert isinstance(plain.input_norm, torch.nn.Identity)  # off by default: old files load


@pytest.mark.parametrize("kernel", [3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_same_padded_convolution_is_timms_without_the_padded_copy(kernel: int, stride: int) -> None:
    from timm.layers import Conv2dSame

    torch.manual_seed(0)
    timm_conv = Conv2dSame(8, 8, kernel, stride, groups=8, bias=True)  # depthwise, as in Lite0
    ours = SamePaddedConv2d(8, 8, kernel, stride, 0, groups=8, bias=True)
    ours.load_state_dict(timm_conv.state_dict())
    with torch.no_grad():
        for size in [(90, 160), (45, 80), (23, 40), (1, 1), (2, 7)]:  # even, odd, tiny
            x = torch.randn(2, 8, *size)
            expected = timm_conv(x)
            got = ours(x)
            assert got.shape == expected.shape
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_folded_backbone_computes_the_same_features_and_follows_new_weights() -> None:
    from timm.layers import Conv2dSame

    student = CompactStudent(representation="stage_stats", frames=2).eval()  # real norms
    x = torch.randn(3, 3, 90, 160)
    with torch.no_grad():
        folded = student._frozen_encoder()
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert not any(type(m) is Conv2dSame for m in folded.modules())  # padded in place
        assert any(type(m) is Conv2dSame for m in student.encoder.modules())
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in student.encoder.modules())
        assert set(student.state_dict()) == set(CompactStudent(**STATS).state_dict())
        torch.testing.assert_close(
            stage_statistics(folded, x), stage_statistics(student.encoder, x), rtol=1e-4, atol=1e-4
        )
        other = CompactStudent(representation="stage_stats", frames=2, weights=None).eval()
        student.load_state_dict(other.state_dict())  # new weights: the folded copy is rebuilt
        assert student._frozen_encoder() is not folded
        torch.testing.assert_close(
            stage_statistics(student._frozen_encoder(), x),
            stage_statistics(other.encoder, x),
            rtol=1e-4,
            atol=1e-4,
        )
