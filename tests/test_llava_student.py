"""The LLaVA-OneVision student on a tiny random LLaVA-OneVision (built once, no download):
read-outs, prompt direction, trainable parts, motion inputs, anchor scoring, spec round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import default_collate

from datamodules._ffmpeg import encode_frames
from datamodules.frame_sampling import read_clip
from datamodules.motion_features import MOTION_DIM, PerSecondFrames, frame_difference_features
from lightning_modules.students.base import create_student
from lightning_modules.students.llava_onevision import (
    COMPARE_WORDS,
    LlavaOnevisionStudent,
    expected_preference,
    pick_anchors,
)
from tests.tiny_models import build_tiny_llava_onevision
from tests.videos import real_clip

TINY = {"max_seconds": 3, "pool_to": 2, "motion_frames": 4}  # 2-s videos: one padded second


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny_llava_ov")))


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two real 2-second clips at 8 fps: bikes (sharp, moving) and carphone."""
    folder = tmp_path_factory.mktemp("videos")
    return [
        encode_frames(real_clip(name, frames=16, height=32), 8, folder / f"{name}.mp4")
        for name in ("bikes", "carphone")
    ]


def make(tiny: str, **kwargs) -> LlavaOnevisionStudent:
    torch.manual_seed(0)  # the motion projector and heads are new: seeded, so runs repeat
    return LlavaOnevisionStudent(tiny, **{**TINY, **kwargs})


def batch(student: LlavaOnevisionStudent, paths: list[Path]) -> dict[str, torch.Tensor]:
    return default_collate(
        [student.prepare(read_clip(p, student.sampler()), str(p)) for p in paths]
    )


def test_prepare_gives_fixed_shapes_that_batch(tiny: str, videos: list[Path]) -> None:
    student = make(tiny)
    frames = read_clip(videos[0], student.sampler())
    assert len(frames) == 2 * (1 + 4)  # 2 seconds: a key frame and 4 chunk frames each
    item = student.prepare(frames, str(videos[0]))
    assert item["pixel_values"].shape == (3, 3, 32, 32)
    assert item["mask"].tolist() == [True, True, False]
    assert item["motion"].shape == (3, MOTION_DIM) and not item["motion"][2].any()
    assert not item["pixel_values"][2].any()
    b = batch(student, videos)
    assert b["pixel_values"].shape == (2, 3, 3, 32, 32) and b["motion"].shape == (2, 3, 256)


def test_forward_shapes_for_both_readouts(tiny: str, videos: list[Path]) -> None:
    comparator = make(tiny)
    b = batch(comparator, videos)
    logits = comparator.compare(b, b)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()

    scorer = make(tiny, readout="scorer")
    scores = scorer(b)
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
    assert scorer.passes_per_video() == 1
    with pytest.raises(NotImplementedError, match="scorer"):
        scorer.compare(b, b)

    regression = make(tiny, readout="scorer", scorer_head="regression")
    assert regression(b).shape == (2,) and torch.isfinite(regression(b)).all()


def test_padded_seconds_change_nothing(tiny: str, videos: list[Path]) -> None:
    """Padding is masked out and skips position ids: 2 s padded to 3 reads as 2 s unpadded."""
    padded = make(tiny, readout="scorer", max_seconds=3)
    exact = make(tiny, readout="scorer", max_seconds=2)
    exact.load_state_dict(padded.state_dict())
    with torch.no_grad():
        a, b = padded(batch(padded, videos)), exact(batch(exact, videos))
    assert batch(exact, videos)["mask"].all()
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_compare_puts_first_in_the_prompts_second_slot(
    tiny: str, videos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    student = make(tiny)
    # The prompt asks about its second video; the text before the second slot names it.
    _, second_slot, answer = student.prompt.split("<video>")
    assert "The second video:" in second_slot and answer.endswith("second video is")

    # A model whose answer we control, read the paper's way: words describe the prompt's second
    # video against its first, by mean brightness.
    def answer_state(prompt_videos: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        first, second = (v["pixel_values"].mean((1, 2, 3, 4)) for v in prompt_videos)
        return (second - first)[:, None]  # (B, 1)

    tokenizer = student.processor.tokenizer
    word_ids = {w: tokenizer.convert_tokens_to_ids(w) for w in COMPARE_WORDS}
    scale = {"superior": 5.0, "better": 2.5, "similar": 0.0, "worse": -2.5, "inferior": -5.0}

    class LmHead(torch.nn.Module):
        def forward(self, h: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(len(h), len(tokenizer))  # (B, V)
            for word, k in scale.items():
                logits[:, word_ids[word]] = k * h[:, 0] * 100
            return logits

    monkeypatch.setattr(student, "_answer_state", answer_state)
    monkeypatch.setattr(student.vlm, "lm_head", LmHead())
    clip = read_clip(videos[0], student.sampler())
    bright = default_collate([student.prepare(clip, "bright.mp4")])
    dark = default_collate([student.prepare(clip // 3, "dark.mp4")])
    ahead, behind = student.compare(bright, dark), student.compare(dark, bright)
    assert ahead.argmax(-1).item() == 4 and behind.argmax(-1).item() == 0  # 4: first superior
    torch.testing.assert_close(ahead, behind.flip(-1))  # swapping the videos reverses the levels
    assert expected_preference(ahead).item() > 0.99


@pytest.mark.parametrize(
    ("kwargs", "parts"),
    [
        ({}, {"vision_tower", "projector", "motion_projector"}),  # the released script's choice
        ({"train_parts": ["projector"]}, {"projector"}),
        ({"train_parts": ["language_model"]}, {"language_model"}),
        ({"train_parts": ["lora"], "lora_rank": 2}, {"lora"}),
        (
            {"train_parts": ["motion_projector"], "readout": "scorer", "scorer_head": "regression"},
            {"motion_projector", "head"},
        ),
    ],
)
def test_gradients_reach_exactly_the_train_parts(
    tiny: str, videos: list[Path], kwargs: dict, parts: set[str]
) -> None:
    student = make(tiny, **kwargs)
    b = batch(student, videos)
    out = student.compare(b, b) if student.readout == "comparator" else student(b)
    out.sum().backward()
    with_grad = {n for n, p in student.named_parameters() if p.grad is not None}
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert with_grad == trainable and trainable
    groups = student.parameter_groups()
    assert set(groups) == parts
    assert sum(len(g) for g in groups.values()) == len(trainable)
    if "lora" in parts:  # LoRA adapters live in the language model only
        assert all(".language_model." in n and "lora_" in n for n in trainable)


def test_a_few_steps_reduce_the_loss(tiny: str, videos: list[Path]) -> None:
    comparator = make(tiny, gradient_checkpointing=True).train()
    a, b = (batch(comparator, [v]) for v in videos)
    pair_first = {k: torch.cat([a[k], b[k]]) for k in a}
    pair_second = {k: torch.cat([b[k], a[k]]) for k in a}
    labels = torch.tensor([4, 0])  # bikes superior to carphone, and the swapped pair

    def ce() -> torch.Tensor:
        return F.cross_entropy(comparator.compare(pair_first, pair_second), labels)

    losses = _train(comparator, ce)
    assert losses[-1] < losses[0]

    scorer = make(tiny, readout="scorer").train()
    a, b = (batch(scorer, [v]) for v in videos)
    losses = _train(scorer, lambda: F.softplus(-(scorer(a) - scorer(b)) / 0.05).mean())
    assert losses[-1] < losses[0]


def _train(
    student: LlavaOnevisionStudent, loss_fn: Callable[[], torch.Tensor], steps: int = 4
) -> list[float]:
    """AdamW on the student's trainable parts; the loss after each step."""
    groups = student.parameter_groups()
    opt = torch.optim.AdamW([p for g in groups.values() for p in g], lr=1e-3)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_motion_from_files_in_both_layouts(tiny: str, videos: list[Path], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    single = rng.normal(size=(5, MOTION_DIM)).astype(np.float32)  # longer than the 2-s clip
    np.save(tmp_path / "bikes.npy", single)
    per_second = rng.normal(size=(2, MOTION_DIM)).astype(np.float32)
    (tmp_path / "carphone").mkdir()
    for s, row in enumerate(per_second):  # the released extraction code's layout
        np.save(tmp_path / "carphone" / f"feature_{s}_fast_feature.npy", row[None])
    student = make(tiny, motion="files", motion_dir=str(tmp_path))
    assert student.sampler().chunk_frames == 0  # key frames only: nothing to difference
    b = batch(student, videos)
    torch.testing.assert_close(b["motion"][0, :2], torch.from_numpy(single[:2]))
    torch.testing.assert_close(b["motion"][1, :2], torch.from_numpy(per_second))
    assert not b["motion"][:, 2].any()  # the padded second
    assert student.compare(b, b).shape == (2, 5)

    frames = read_clip(videos[0], student.sampler())
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        student.prepare(frames, "/elsewhere/missing.mp4")


def test_builtin_motion_features() -> None:
    """On a texture that slides 2 px a frame every cell moves; repeated frames read as frozen."""
    texture = np.random.default_rng(0).integers(0, 256, (32, 96, 3), dtype=np.uint8)
    slide = np.stack([np.roll(texture, 2 * t, axis=1) for t in range(8)])  # (8, 32, 96, 3)
    moving = slide.reshape(2, 4, 32, 96, 3)  # 2 seconds of 4 frames
    feats = frame_difference_features(moving)
    assert feats.shape == (2, MOTION_DIM) and feats.dtype == np.float32
    np.testing.assert_array_equal(feats, frame_difference_features(moving))  # deterministic
    energy, peak, spread, frozen = feats.reshape(2, 4, 64).transpose(1, 0, 2)
    assert (energy > 0.01).all() and (peak >= energy).all() and not frozen.any()

    still = np.repeat(slide[:1], 8, axis=0).reshape(moving.shape)
    energy, peak, spread, frozen = (
        frame_difference_features(still).reshape(2, 4, 64).transpose(1, 0, 2)
    )
    assert not energy.any() and not peak.any() and not spread.any() and (frozen == 1).all()

    stutter = np.repeat(slide[::2], 2, axis=0).reshape(moving.shape)  # every frame twice
    energy, peak, spread, frozen = (
        frame_difference_features(stutter).reshape(2, 4, 64).transpose(1, 0, 2)
    )
    np.testing.assert_allclose(frozen, 2 / 3)  # 2 of the 3 steps in a second repeat a frame
    assert (spread > 0).all()  # motion that starts and stops

    with pytest.raises(ValueError, match="2 frames"):
        frame_difference_features(moving[:, :1])
    with pytest.raises(ValueError, match="sampler"):
        PerSecondFrames(3, chunk_frames=4).split(slide[:7])


def test_anchors_and_thurstone_scoring(
    tiny: str, videos: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    student = make(tiny)
    b = batch(student, videos)
    with pytest.raises(RuntimeError, match="set_anchors"):
        student(b)

    clips = [read_clip(v, student.sampler()) for v in videos]
    variants = [clips[0], clips[1], clips[0] // 2, clips[1] // 2, clips[0][:, :, ::-1]]
    anchors = default_collate([student.prepare(np.ascontiguousarray(c), "a.mp4") for c in variants])
    with pytest.raises(ValueError, match="5 anchor"):
        student.set_anchors({k: v[:4] for k, v in anchors.items()})
    student.set_anchors(anchors)
    m = student.anchor_matrix
    assert m.shape == (5, 5)
    torch.testing.assert_close(m + m.T, torch.ones(5, 5, dtype=m.dtype))

    calls = []
    compare = student.compare
    monkeypatch.setattr(
        student, "compare", lambda x, y: calls.append(len(x["mask"])) or compare(x, y)
    )
    scores = student(b)
    assert scores.shape == (2,) and torch.isfinite(scores).all()
    assert calls == [2] * 5 and student.passes_per_video() == 5  # 5 passes per scored video


def test_pick_anchors_spreads_over_the_scores() -> None:
    table = pd.DataFrame({"video_id": [f"v{i}" for i in range(20)], "score": np.arange(20)[::-1]})
    picked = pick_anchors(table, n=5)
    assert picked["score"].tolist() == [2, 6, 10, 14, 18]
    with pytest.raises(ValueError, match="at least 5"):
        pick_anchors(table.head(3))


def test_spec_rebuilds_the_same_student(tiny: str, videos: list[Path]) -> None:
    student = make(
        tiny, readout="scorer", scorer_head="regression", train_parts=["projector", "lora"],
        lora_rank=2,
    )  # fmt: skip
    with torch.no_grad():  # LoRA starts as a no-op (B = 0); make it matter for the round trip
        for p in student.parameter_groups()["lora"]:
            p.normal_(0, 0.1)
    spec = json.loads(json.dumps(student.spec()))  # JSON-serialisable
    assert spec["name"] == "llava_onevision" and spec["args"]["lora_rank"] == 2
    rebuilt = create_student(spec["name"], **spec["args"])
    b = batch(student, videos)
    with torch.no_grad():
        before = rebuilt(b)
        rebuilt.load_state_dict(student.state_dict())
        torch.testing.assert_close(rebuilt(b), student(b))
    assert not torch.allclose(before, student(b))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_parts": ["decoder"]}, "train_parts"),
        ({"train_parts": ["lora", "language_model"]}, "not both"),
        ({"motion": "files"}, "motion_dir"),
        ({"readout": "ranker"}, "readout"),
        ({"pool_to": 9}, "pool_to"),
    ],
)
def test_rejects_bad_options(tiny: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(tiny, **kwargs)
