"""The Q-Align teacher on a tiny randomly initialised LLaVA-OneVision saved to disk.

No hub downloads: the tokenizer is a WordLevel vocabulary built here, the processors take their
sizes from code, and the model is `LlavaOnevisionForConditionalGeneration` with a 2-layer Qwen2 and
a 2-layer SigLIP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lightning_modules.teachers.base import VideoItem
from lightning_modules.teachers.vlm import ANSWER_PREFIX, LEVELS, QUESTION, QAlignTeacher
from tests.videos import real_clip

SPECIALS = ["<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# Qwen-style template, as LLaVA-OneVision's own checkpoints use.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'video' %}<video>\n"
    "{% elif c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE_SIZE, PATCH = 32, 8  # 4x4 patches: 16 image tokens, pooled to 2x2 per video frame


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = f"{QUESTION} {ANSWER_PREFIX} user assistant".lower().replace("?", " ?").split()
    words += [w for w, _ in LEVELS] + ["The", "How"]
    vocab = {t: i for i, t in enumerate(["[UNK]", "[PAD]", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    return fast


def build_tiny_llava_onevision(path: Path) -> Path:
    """Save a tiny random LLaVA-OneVision (model + processor with chat template) under `path`."""
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = _tokenizer()
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]]
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(IMAGE_SIZE // PATCH) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=512,
    )
    vision = SiglipVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    config = LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]],
    )
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


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


def test_4bit_loads_linear4bit_and_scores(tiny_vlm: Path, clip: VideoItem) -> None:
    pytest.importorskip("bitsandbytes")
    pytest.importorskip("accelerate")
    import bitsandbytes as bnb

    teacher = QAlignTeacher(str(tiny_vlm), frames=4, quantization="4bit", dtype="float32")
    layers = [m for m in teacher.model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers, "no bitsandbytes Linear4bit layers after 4-bit loading"
    assert layers[0].weight.quant_state.quant_type == "nf4"
    score = teacher.score_native(clip)
    assert np.isfinite(score) and 0.0 <= score <= 1.0
