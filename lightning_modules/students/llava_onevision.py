"""The paper's student: LLaVA-OneVision on SigLIP frames at one per second plus motion tokens.

Cao et al., "Generalizable Video Quality Assessment via Weak-to-Strong Learning" (see
reference/paper.md, "Student"). `LlavaOnevisionForConditionalGeneration` from transformers, fed
input embeddings built here rather than through the processor's video-token expansion, so that
motion tokens and padded seconds fit in. Each video becomes, in this order:

    S x pool_to² frame tokens  (vision tower -> projector -> bilinear pooling, 27² -> 14² in the
                                paper, as LLaVA-OneVision pools video frames)
    1 image-newline token      (LLaVA-OneVision's one newline after a video's frames)
    S motion tokens            (per-second 256-d features -> Linear-GELU-Linear motion projector)

Videos are padded to `max_seconds` so batches stack; padded seconds are masked out of attention
and do not advance position ids, so a padded video reads exactly as an unpadded one.

Read-outs:
- "comparator" (the paper): the released code's two-video prompt, answered by one of five words
  that describe the prompt's SECOND video against its FIRST. `compare(first, second)` therefore
  places `second` in the prompt's first slot and `first` in its second slot, and reads the words
  in the order (inferior, worse, similar, better, superior): the logits are then directly our
  levels 0..4 of "how `first` compares with `second`". `forward` scores a video against
  `n_anchors` anchor videos by Thurstone Case V MAP (`lightning_modules.thurstone`): n_anchors
  student passes per video.
- "scorer": a one-video Q-Align prompt; the score is the rating-word expectation (as the qalign
  teacher reads it) or a regression head on the answer position's hidden state. One pass per
  video; pairs are judged through score differences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.motion_features import (
    MOTION_DIM,
    PerSecondFrames,
    fit_seconds,
    frame_difference_features,
    load_motion_file,
)
from datamodules.transforms import SIGLIP_MEAN, SIGLIP_STD, VideoTransform
from lightning_modules.students.base import Readout, Student, register_student
from lightning_modules.teachers.vlm import ANSWER_PREFIX, LEVELS, QUESTION, rating_token_ids
from lightning_modules.thurstone import Method, thurstone_map

VIDEO = "<video>"  # where a video's tokens go in a prompt; split on, never tokenised
COMPARE_QUESTION = (
    f"Now you will receive two videos. The first video:\n{VIDEO}. The second video:\n{VIDEO}. "
    "Please watch these videos carefully, and then answer the following question: "
    "Comparing with the first video, how do you assess the quality of the second video?"
)
COMPARE_ANSWER_PREFIX = "The quality of the second video is"
# Our level order 0..4; each word says how the prompt's second video compares with its first.
COMPARE_WORDS = ("inferior", "worse", "similar", "better", "superior")
PREFERENCE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the paper's 1, .75, .5, .25, 0, level order
SCORE_QUESTION = f"{VIDEO}\n{QUESTION}"
Batch = dict[str, torch.Tensor]  # one prepared video, batched: a leading B dimension
PARTS = ("vision_tower", "projector", "motion_projector", "language_model", "lora")
RELEASE_PARTS = ["vision_tower", "projector", "motion_projector"]  # the released script's choice
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
_PART_PREFIXES = (
    ("vlm.model.vision_tower.", "vision_tower"),
    ("vlm.model.multi_modal_projector.", "projector"),
    ("vlm.model.image_newline", "projector"),
    ("newline.", "projector"),  # the same parameter, seen through `_Newline`
    ("vlm.model.language_model.", "language_model"),
    ("vlm.lm_head.", "language_model"),
    ("motion_projector.", "motion_projector"),
    ("head.", "head"),
)


def part_of(name: str) -> str:
    """The part ("vision_tower", ..., "lora", "head") a student parameter name belongs to."""
    if "lora_" in name:
        return "lora"
    for prefix, part in _PART_PREFIXES:
        if name.startswith(prefix):
            return part
    raise ValueError(f"parameter {name!r} belongs to no known part")


def _unused_vision_parameters(vlm: nn.Module) -> set[str]:
    """Vision-tower parameters that never reach the selected hidden states: layers past the deepest
    selected one, the final layer norm and the pooling head. Kept frozen so that no trainable
    parameter goes without a gradient (DDP would otherwise need find_unused_parameters)."""
    layers = vlm.config.vision_feature_layer
    layers = [layers] if isinstance(layers, int) else list(layers)
    total = vlm.config.vision_config.num_hidden_layers  # hidden_states: embeddings + each layer
    deepest = max(i % (total + 1) for i in layers)  # encoder layers [0, deepest) are used
    unused = set()
    for name, _ in vlm.model.vision_tower.named_parameters():
        layer = re.search(r"\.layers\.(\d+)\.", name)
        if (
            (layer and int(layer.group(1)) >= deepest)
            or "post_layernorm" in name
            or (name.startswith("vision_model.head.") or name.startswith("head."))
        ):
            unused.add(f"vlm.model.vision_tower.{name}")
    return unused


def expected_preference(level_logits: torch.Tensor) -> torch.Tensor:
    """Level logits `(B, 5)` -> P(first preferred to second) `(B,)`, weights 0 .. 1."""
    weights = torch.tensor(PREFERENCE_WEIGHTS, device=level_logits.device)
    return level_logits.float().softmax(-1) @ weights


def pick_anchors(table: pd.DataFrame, n: int = 5, score: str = "score") -> pd.DataFrame:
    """`n` rows of spread quality: the videos at the score quantiles (i + 0.5) / n, best last."""
    if len(table) < n:
        raise ValueError(f"need at least {n} videos to pick {n} anchors, got {len(table)}")
    ranked = table.sort_values(score, kind="stable").reset_index(drop=True)
    positions = np.floor((np.arange(n) + 0.5) / n * len(ranked)).astype(int)
    return ranked.iloc[positions].reset_index(drop=True)


@dataclass(frozen=True)
class LlavaInputs:
    """uint8 frames of one video -> fixed-shape inputs; light enough for data workers to pickle."""

    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    max_seconds: int
    motion: str
    motion_dir: str | None
    chunk_frames: int

    def sampler(self) -> PerSecondFrames:
        return PerSecondFrames(self.max_seconds, self.chunk_frames)

    def __call__(self, frames: np.ndarray, path: str) -> dict[str, torch.Tensor]:
        """-> pixel_values `(max_seconds, 3, H, W)`, mask `(max_seconds,)` (True: a real second),
        motion `(max_seconds, 256)` unless motion is "none"; padded seconds are zeros."""
        keys, chunks = self.sampler().split(frames)
        s, size = min(len(keys), self.max_seconds), self.image_size
        transform = VideoTransform((size, size), crop=None, mean=self.mean, std=self.std)
        pixels = torch.zeros(self.max_seconds, 3, size, size)
        pixels[:s] = transform(keys[:s])
        mask = torch.zeros(self.max_seconds, dtype=torch.bool)
        mask[:s] = True
        out = {"pixel_values": pixels, "mask": mask}
        if self.motion != "none":
            if self.motion == "builtin":
                feats = frame_difference_features(chunks[:s])
            else:
                feats = load_motion_file(self.motion_dir, path)
            out["motion"] = torch.from_numpy(fit_seconds(fit_seconds(feats, s), self.max_seconds))
        return out


@register_student("llava_onevision")
class LlavaOnevisionStudent(Student):
    """LLaVA-OneVision on per-second frames and motion tokens, as a comparator or a scorer."""

    def __init__(
        self,
        model: str,
        readout: Readout = "comparator",
        scorer_head: Literal["rating_words", "regression"] = "rating_words",
        max_seconds: int = 10,
        motion: Literal["builtin", "files", "none"] = "builtin",
        motion_dir: str | None = None,
        motion_frames: int = 8,
        pool_to: int = 14,
        train_parts: list[str] | None = None,
        lora_rank: int = 16,
        gradient_checkpointing: bool = False,
        dtype: Literal["auto", "bfloat16", "float32"] = "auto",
        trust_remote_code: bool = False,
        n_anchors: int = 5,
        thurstone: Method = "paper",
    ) -> None:
        """`model`: local folder or hub id of a LLaVA-OneVision checkpoint. `max_seconds`: seconds
        (frames and motion tokens) per video, padded to it. `motion_dir`: the paper's feature files
        (see datamodules.motion_features) when `motion` is "files"; `motion_frames`: frames per
        second the built-in extractor differences. `pool_to`: frame tokens per side after pooling.
        `train_parts`: subset of PARTS, default the released script's (LLM frozen); a regression
        head always trains. `dtype` "auto" is float32: optimiser updates at lr 2e-6 vanish in bf16
        weights; mixed precision comes from the trainer (DeepSpeed keeps its own fp32 master).
        `trust_remote_code` is for the processor; the model class is transformers' own."""
        from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

        super().__init__()
        train_parts = list(RELEASE_PARTS if train_parts is None else train_parts)
        _check(readout, ("comparator", "scorer"), "readout")
        _check(scorer_head, ("rating_words", "regression"), "scorer_head")
        _check(motion, ("builtin", "files", "none"), "motion")
        _check(dtype, ("auto", "bfloat16", "float32"), "dtype")
        for part in train_parts:
            _check(part, PARTS, "train_parts entry")
        if {"lora", "language_model"} <= set(train_parts):
            raise ValueError("train_parts: choose 'language_model' (all of it) or 'lora', not both")
        if motion == "files" and not motion_dir:
            raise ValueError("motion='files' needs motion_dir, the folder of per-video features")
        if motion == "builtin" and motion_frames < 2:
            raise ValueError("motion_frames must be >= 2: the built-in extractor needs 2 frames")
        self.model, self.readout, self.scorer_head = model, readout, scorer_head
        self.max_seconds, self.motion, self.motion_dir = max_seconds, motion, motion_dir
        self.motion_frames, self.pool_to, self.train_parts = motion_frames, pool_to, train_parts
        self.lora_rank, self.gradient_checkpointing = lora_rank, gradient_checkpointing
        self.dtype, self.trust_remote_code = dtype, trust_remote_code
        self.n_anchors, self.thurstone = n_anchors, thurstone

        torch_dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        self.processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.vlm = LlavaOnevisionForConditionalGeneration.from_pretrained(model, dtype=torch_dtype)
        config = self.vlm.config
        vision, hidden = config.vision_config, config.text_config.hidden_size
        self.grid = vision.image_size // vision.patch_size  # patches per side (27 for SigLIP-384)
        if not 1 <= pool_to <= self.grid:
            raise ValueError(f"pool_to must be in [1, {self.grid}] for this vision tower")
        self.newline = _Newline(self.vlm.model.image_newline)
        self.motion_projector = None
        if motion != "none":
            self.motion_projector = nn.Sequential(
                nn.Linear(MOTION_DIM, hidden), nn.GELU(), nn.Linear(hidden, hidden)
            ).to(torch_dtype)
        self.head = None
        if readout == "scorer" and scorer_head == "regression":
            self.head = nn.Linear(hidden, 1).to(torch_dtype)
        if "lora" in train_parts:
            from peft import LoraConfig, inject_adapter_in_model

            lora = LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules=LORA_TARGETS)
            inject_adapter_in_model(lora, self.vlm.model.language_model)
        self.requires_grad_(False)
        unused = _unused_vision_parameters(self.vlm)
        for name, param in self.named_parameters():
            param.requires_grad_(part_of(name) in (*train_parts, "head") and name not in unused)
        if gradient_checkpointing:
            # transformers 5 renamed it; 4.x has only the old name (the new one warns on the old)
            enable = getattr(self.vlm, "activation_checkpointing_enable", None)
            enable = enable or self.vlm.gradient_checkpointing_enable
            enable({"use_reentrant": False})  # reentrant checkpoints need inputs that need grad

        if readout == "comparator":
            question, prefix, words, weights = (
                COMPARE_QUESTION, COMPARE_ANSWER_PREFIX, COMPARE_WORDS, PREFERENCE_WEIGHTS
            )  # fmt: skip
        else:
            question, prefix = SCORE_QUESTION, ANSWER_PREFIX
            words, weights = tuple(w for w, _ in LEVELS), tuple(w for _, w in LEVELS)
        tokenizer = self.processor.tokenizer
        self.word_ids = rating_token_ids(tokenizer, prefix, words)
        self.register_buffer("word_weights", torch.tensor(weights), persistent=False)
        self.prompt = self._chat(question, prefix)
        self.segments = [  # token ids of the text between videos
            torch.tensor(tokenizer(t, add_special_tokens=False)["input_ids"], dtype=torch.long)
            for t in self.prompt.split(VIDEO)
        ]
        processor = getattr(self.processor, "video_processor", None) or self.processor
        self.preparer = LlavaInputs(
            image_size=vision.image_size,
            mean=tuple(getattr(processor, "image_mean", None) or SIGLIP_MEAN),
            std=tuple(getattr(processor, "image_std", None) or SIGLIP_STD),
            max_seconds=max_seconds,
            motion=motion,
            motion_dir=motion_dir,
            chunk_frames=motion_frames if motion == "builtin" else 0,
        )
        self._anchors: Batch | None = None
        self.anchor_matrix: torch.Tensor | None = None  # (n, n) P(anchor i over anchor j)

    def _chat(self, question: str, answer_prefix: str) -> str:
        """The chat-formatted prompt ending with the pre-filled answer prefix."""
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
            head = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            return f"{head}{answer_prefix}"
        return f"{question}\n{answer_prefix}"

    def sampler(self) -> PerSecondFrames:
        return self.preparer.sampler()

    def prepare(self, frames: np.ndarray, path: str) -> dict[str, torch.Tensor]:
        return self.preparer(frames, path)

    def passes_per_video(self) -> int:
        """Student forward passes one scored video costs: 1 for a scorer, n_anchors otherwise."""
        return 1 if self.readout == "scorer" else self.n_anchors

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if param.requires_grad:
                groups.setdefault(part_of(name), []).append(param)
        return groups

    def _frame_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frames `(V, 3, H, W)` -> pooled, projected tokens `(V, pool_to², D)`."""
        config = self.vlm.config
        out = self.vlm.model.vision_tower(pixels.to(self.vlm.dtype), output_hidden_states=True)
        layers = config.vision_feature_layer
        layers = [layers] if isinstance(layers, int) else layers
        feats = torch.cat([out.hidden_states[i] for i in layers], dim=-1)  # (V, P, C)
        if config.vision_feature_select_strategy == "default":
            feats = feats[:, 1:]  # drop the CLS token (CLIP towers; SigLIP has none)
        feats = self.vlm.model.multi_modal_projector(feats)  # (V, grid², D)
        if self.pool_to == self.grid:
            return feats
        v, _, d = feats.shape
        maps = feats.view(v, self.grid, self.grid, d).permute(0, 3, 1, 2)  # (V, D, g, g)
        maps = F.interpolate(maps, size=(self.pool_to, self.pool_to), mode="bilinear")
        return maps.flatten(2).transpose(1, 2)  # (V, pool_to², D)

    def _video_tokens(self, videos: list[Batch]) -> list[tuple[torch.Tensor, ...]]:
        """Each batched video -> (tokens `(B, N, D)`, mask `(B, N)`), N = S·pool_to² + 1 + S."""
        masks = [v["mask"].bool() for v in videos]  # (B, S) each
        # One vision-tower call for the real seconds of all videos; padding is never encoded.
        real = [v["pixel_values"][m] for v, m in zip(videos, masks, strict=True)]  # (V_i, 3, H, W)
        tokens = self._frame_tokens(torch.cat(real))  # (V, P, D)
        out, start = [], 0
        for video, mask in zip(videos, masks, strict=True):
            (b, s), (p, d), n = mask.shape, tokens.shape[1:], int(mask.sum())
            frames = tokens.new_zeros(b, s, p, d).index_put((mask,), tokens[start : start + n])
            start += n
            newline = self.newline(b).to(tokens.dtype)  # (B, 1, D)
            parts = [frames.flatten(1, 2), newline]
            keep = [mask.repeat_interleave(p, 1), torch.ones_like(mask[:, :1])]
            if self.motion_projector is not None:
                parts.append(self.motion_projector(video["motion"].to(tokens.dtype)))  # (B, S, D)
                keep.append(mask)
            out.append((torch.cat(parts, 1), torch.cat(keep, 1)))
        return out

    def _answer_state(self, videos: list[Batch]) -> torch.Tensor:
        """Last hidden state `(B, D)` at the answer prefix's last token, videos in prompt order."""
        if len(videos) != len(self.segments) - 1:
            raise ValueError(f"the prompt takes {len(self.segments) - 1} videos, got {len(videos)}")
        embed = self.vlm.get_input_embeddings()
        visual = self._video_tokens(videos)
        b, device = visual[0][1].shape[0], visual[0][1].device
        pieces, keep = [], []
        for i, ids in enumerate(self.segments):
            text = embed(ids.to(device))  # (n_i, D)
            pieces.append(text.expand(b, -1, -1))
            keep.append(torch.ones(b, len(ids), dtype=torch.bool, device=device))
            if i < len(visual):
                pieces.append(visual[i][0])
                keep.append(visual[i][1])
        x, mask = torch.cat(pieces, 1), torch.cat(keep, 1)  # (B, L, D), (B, L)
        positions = (mask.long().cumsum(1) - 1).clamp(min=0)  # padding does not advance positions
        out = self.vlm.model.language_model(
            inputs_embeds=x, attention_mask=mask.long(), position_ids=positions, use_cache=False
        )
        return out.last_hidden_state[:, -1]  # the next token is the answer word

    def _word_logits(self, videos: list[Batch]) -> torch.Tensor:
        """Logits `(B, 5)` of the answer words, in `word_ids` order."""
        return self.vlm.lm_head(self._answer_state(videos))[:, self.word_ids].float()

    def compare(self, first: Batch, second: Batch) -> torch.Tensor:
        """Level logits `(B, 5)`: 0 inferior .. 4 superior, how `first` compares with `second`."""
        if self.readout != "comparator":
            return super().compare(first, second)
        # The answer describes the prompt's second video against its first: `first` goes second.
        return self._word_logits([second, first])

    def forward(self, video: Batch) -> torch.Tensor:
        """Scores `(B,)`, higher is better; a comparator's (against anchors) carry no gradient."""
        if self.readout == "comparator":
            return self._score_against_anchors(video)
        if self.head is not None:
            return self.head(self._answer_state([video])).squeeze(-1).float()
        return self._word_logits([video]).softmax(-1) @ self.word_weights

    def _anchor(self, i: int, batch: int, device: torch.device) -> Batch:
        """Anchor `i` repeated `batch` times, on `device`."""
        assert self._anchors is not None
        return {
            k: v[i : i + 1].to(device).expand(batch, *v.shape[1:]) for k, v in self._anchors.items()
        }

    @torch.no_grad()
    def set_anchors(self, anchors: Batch) -> None:
        """Prepared anchor videos batched `(n_anchors, ...)` (see `pick_anchors`); their mutual
        preferences are computed once here (n(n-1)/2 passes) and cached for `forward`."""
        if self.readout != "comparator":
            raise ValueError("anchors are for the comparator read-out; a scorer scores directly")
        n = len(anchors["mask"])
        if n != self.n_anchors:
            raise ValueError(f"expected {self.n_anchors} anchor videos (n_anchors), got {n}")
        self._anchors = {k: v.detach() for k, v in anchors.items()}
        device = self.word_weights.device
        matrix = torch.full((n, n), 0.5, dtype=torch.float64)
        for i in range(n):
            for j in range(i + 1, n):
                logits = self.compare(self._anchor(i, 1, device), self._anchor(j, 1, device))
                p = float(expected_preference(logits)[0])
                matrix[i, j], matrix[j, i] = p, 1 - p
        self.anchor_matrix = matrix

    @torch.no_grad()
    def _score_against_anchors(self, video: Batch) -> torch.Tensor:
        if self._anchors is None or self.anchor_matrix is None:
            raise RuntimeError(
                "a comparator scores a video against anchor videos: call student.set_anchors("
                "default_collate([student.prepare(frames, path) for each anchor])) with "
                f"{self.n_anchors} videos of spread quality (pick_anchors(table) picks them) "
                "before forward(); train with compare()"
            )
        b, device, n = len(video["mask"]), video["mask"].device, self.n_anchors
        # As the released code: the scored video is the prompt's second, each anchor its first.
        wins = [
            expected_preference(self.compare(video, self._anchor(j, b, device))) for j in range(n)
        ]
        wins = torch.stack(wins, dim=1).double().cpu()  # (B, n): P(video over anchor j)
        scores = []
        for row in wins:
            m = torch.full((n + 1, n + 1), 0.5, dtype=torch.float64)  # index 0: the scored video
            m[0, 1:], m[1:, 0], m[1:, 1:] = row, 1 - row, self.anchor_matrix
            scores.append(thurstone_map(m, method=self.thurstone)[0].float())
        return torch.stack(scores).to(device)


class _Newline(nn.Module):
    """LLaVA-OneVision's image-newline parameter, used through a module call: DeepSpeed ZeRO-3
    gathers a partitioned parameter only for the forward of a module that owns it."""

    def __init__(self, weight: nn.Parameter) -> None:
        super().__init__()
        self.weight = weight  # shared with vlm.model.image_newline, not a copy

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight.expand(batch, 1, -1)  # (B, 1, D)


def _check(value: str, allowed: tuple[str, ...], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
