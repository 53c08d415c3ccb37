"""A tiny randomly initialised LLaVA-OneVision saved to disk, for the VLM teacher and the student.

No hub downloads: the tokenizer is a WordLevel vocabulary built from the prompts the suite sends,
the processors take their sizes from code, and the model is `LlavaOnevisionForConditionalGeneration`
with a 2-layer Qwen2 and a 2-layer SigLIP."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from lightning_modules.students.llava_onevision import (
    COMPARE_ANSWER_PREFIX,
    COMPARE_QUESTION,
    COMPARE_WORDS,
    SCORE_QUESTION,
)
from lightning_modules.teachers.vlm import ANSWER_PREFIX, LEVELS, QUESTION

SPECIALS = ["<|im_start|>", "<|im_end|>", "<image>", "<video>"]
# Qwen-style template, as LLaVA-OneVision's own checkpoints use.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% for c in m['content'] %}{% if c['type'] == 'video' %}<video>\n"
    "{% elif c['type'] == 'image' %}<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
IMAGE_SIZE, PATCH = 32, 8  # 4x4 patches: 16 image tokens, pooled to 2x2 per video frame
PROMPTS = (QUESTION, ANSWER_PREFIX, COMPARE_QUESTION, COMPARE_ANSWER_PREFIX, SCORE_QUESTION)


def tiny_tokenizer():
    """A WordLevel tokenizer whose vocabulary holds every word of the suite's prompts, the rating
    words and the comparison words, split as its Whitespace pre-tokenizer splits text."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    text = " ".join(PROMPTS).replace("<video>", " ")
    words = re.findall(r"\w+|[^\w\s]+", text)  # the Whitespace pre-tokenizer's split
    words += [w for w, _ in LEVELS] + list(COMPARE_WORDS) + ["user", "assistant", "system"]
    vocab = {t: i for i, t in enumerate(["[UNK]", "[PAD]", *dict.fromkeys(words)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.add_special_tokens({"additional_special_tokens": SPECIALS})
    return fast


def build_tiny_llava_onevision(
    path: Path,
    text: dict | None = None,
    vision: dict | None = None,
    image_size: int | None = None,
    patch: int | None = None,
) -> Path:
    """Save a tiny random LLaVA-OneVision (model + processor with chat template) under `path`.

    `text` / `vision` override Qwen2 / SigLIP config fields, `image_size` / `patch` the frame
    geometry: benchmarks/gpu_check.py builds a real-shaped (0.5B-class) model this way."""
    image_size, patch = image_size or IMAGE_SIZE, patch or PATCH
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
        Qwen2Config,
        SiglipVisionConfig,
    )

    tokenizer = tiny_tokenizer()
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, image_grid_pinpoints=[[image_size, image_size]]
        ),
        tokenizer=tokenizer,
        video_processor=LlavaOnevisionVideoProcessor(size=size),
        num_image_tokens=(image_size // patch) ** 2,
        vision_feature_select_strategy="full",
        chat_template=CHAT_TEMPLATE,
    )
    # Widths of 64 and up: bitsandbytes quantises 4-bit weights in blocks of 64 inputs, and its
    # AVX512-BF16 CPU path (0.49 on) cannot repack a narrower layer ("shape '[32, 0]' is invalid").
    text = Qwen2Config(**{
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "max_position_embeddings": 512,
        **(text or {}),
    })  # fmt: skip
    vision = SiglipVisionConfig(**{
        "image_size": image_size,
        "patch_size": patch,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "vision_use_head": False,  # as LLaVA-OneVision's SigLIP: its pooling head is never used
        **(vision or {}),
    })  # fmt: skip
    config = LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=[[image_size, image_size]],
    )
    torch.manual_seed(0)
    model = LlavaOnevisionForConditionalGeneration(config).eval()
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
