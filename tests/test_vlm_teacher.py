"""The Q-Align teacher on a tiny randomly initialised LLaVA-OneVision saved to disk (no downloads;
see tests/tiny_models.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.teachers.base import VideoItem
from lightning_modules.teachers.vlm import ANSWER_PREFIX, LEVELS, QAlignTeacher
from tests.tiny_models import build_tiny_llava_onevision
from tests.videos import real_clip


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava_onevision(tmp_path_factory.mktemp("tiny_llava_ov"))


@pytest.fixture(scope="module")
def clip() -> VideoItem:
    return VideoItem("bikes", "bikes.mp4", frames=real_clip("bikes", frames=4, height=48))


def test_scores_a_real_clip(tiny_vlm: Path, clip: VideoItem) -> None:
    teacher = QAlignTeacher(str(tiny_vlm), frames=4, dtype="float32")
    assert teacher.sampler().n == 4
    tok = teacher.processor.tokenizer
    expected = [tok.convert_tokens_to_ids(w) for w, _ in LEVELS]
    assert teacher.token_ids == expected and len(set(expected)) == 5
    assert teacher.prompt.endswith(f"<|im_start|>assistant\n{ANSWER_PREFIX}")
    assert not teacher.model.training
    a, b = teacher.score_native(clip), teacher.score_native(clip)
    assert np.isfinite(a) and 0.0 <= a <= 1.0 and a == b
    probs = teacher.level_probs(clip.frames)
    assert torch.isclose(probs.sum(), torch.tensor(1.0))
    # The score is the probability-weighted level, computed from the model's own next-token logits.
    assert a == pytest.approx(float(probs @ torch.tensor([w for _, w in LEVELS])), abs=1e-6)


def test_trust_remote_code_off_unless_asked(tiny_vlm: Path) -> None:
    teacher = QAlignTeacher(str(tiny_vlm), frames=2)
    assert teacher.load_kwargs["trust_remote_code"] is False
    assert "quantization_config" not in teacher.load_kwargs
    asked = QAlignTeacher(str(tiny_vlm), frames=2, trust_remote_code=True)
    assert asked.load_kwargs["trust_remote_code"] is True
    assert teacher.load_kwargs["dtype"] == (
        torch.bfloat16 if torch.cuda.is_available() else torch.float32
    )


def test_rejects_bad_options(tiny_vlm: Path) -> None:
    with pytest.raises(ValueError, match="quantization"):
        QAlignTeacher(str(tiny_vlm), quantization="8bit")  # type: ignore[arg-type]


@pytest.mark.parametrize("avx512bf16", [False, True])
def test_4bit_loads_linear4bit_and_scores(
    tiny_vlm: Path, clip: VideoItem, avx512bf16: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both of bitsandbytes' CPU paths, whatever this machine's CPU: on CPUs with AVX512-BF16
    (0.49 on) it repacks each 4-bit weight at the first forward, which a layer narrower than one
    quantisation block (64 inputs) cannot survive."""
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("accelerate")
    import bitsandbytes as bnb

    monkeypatch.setattr(bnb.nn.modules, "has_avx512bf16", lambda: avx512bf16)
    teacher = QAlignTeacher(str(tiny_vlm), frames=4, quantization="4bit", dtype="float32")
    layers = [m for m in teacher.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers, "no bitsandbytes Linear4bit layers after 4-bit loading"
    assert layers[0].weight.quant_state.quant_type == "nf4"
    score = teacher.score_native(clip)
    assert np.isfinite(score) and 0.0 <= score <= 1.0
    repacked = getattr(layers[0].weight.quant_state, "packing_format_for_cpu", False)
    assert repacked == avx512bf16
