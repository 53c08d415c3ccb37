"""Vision-language teachers prompted in the Q-Align recipe.

Q-Align (Wu et al. 2023, "Q-Align: Teaching LMMs for Visual Scoring via Discrete Text-Defined
Levels") asks a multimodal LLM to rate a video and reads the next-token distribution at the answer
position, restricted to the five rating words. The score is the expectation of the levels:

    score = sum_k softmax(logits[ids])_k * w_k,  w = (1, .75, .5, .25, 0)  for
    (excellent, good, fair, poor, bad)

so the native range is [0, 1], higher is better. Any transformers image-text/video-text model that
`AutoModelForImageTextToText` loads and whose processor takes `videos=` works (LLaVA-OneVision,
Qwen2-VL, ...). The assistant turn is pre-filled with "The quality of the video is" so the very next
token is the rating word.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from datamodules.frame_sampling import UniformFrames
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher

if TYPE_CHECKING:
    import torch

LEVELS: tuple[tuple[str, float], ...] = (
    ("excellent", 1.0),
    ("good", 0.75),
    ("fair", 0.5),
    ("poor", 0.25),
    ("bad", 0.0),
)
QUESTION = "How would you rate the quality of this video?"
ANSWER_PREFIX = "The quality of the video is"


def rating_token_ids(tokenizer: Any, prefix: str, words: tuple[str, ...]) -> list[int]:
    """First token id of each word as it follows `prefix` (" word" after the prefix).

    Taken in context rather than from the bare word because BPE and SentencePiece tokenizers give a
    word a different first token after a space than at the start of a text."""
    base = tokenizer(prefix, add_special_tokens=False)["input_ids"]
    ids = []
    for word in words:
        full = tokenizer(f"{prefix} {word}", add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise ValueError(f"tokenizer does not extend {prefix!r} by {word!r} token-wise")
        ids.append(int(full[len(base)]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"rating words {words} share first tokens {ids}")
    return ids


@register_teacher("qalign")
class QAlignTeacher(Teacher):
    """A multimodal LLM rating a video Q-Align style; native score in [0, 1], higher is better."""

    higher_is_better = True
    native_range = (0.0, 1.0)

    def __init__(
        self,
        model: str,
        frames: int = 8,
        quantization: Literal["none", "4bit"] = "none",
        dtype: Literal["auto", "bfloat16", "float32"] = "auto",
        trust_remote_code: bool = False,
        question: str = QUESTION,
        answer_prefix: str = ANSWER_PREFIX,
    ) -> None:
        """`model`: a local folder or hub id; `frames`: frames sampled uniformly over the video;
        `dtype` "auto": bf16 on GPU, float32 on CPU (bf16 matmuls are slow on most CPUs)."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if quantization not in ("none", "4bit"):
            raise ValueError(f"quantization must be 'none' or '4bit', got {quantization!r}")
        if dtype not in ("auto", "bfloat16", "float32"):
            raise ValueError(f"dtype must be 'auto', 'bfloat16' or 'float32', got {dtype!r}")
        self.frames = frames
        self.question = question
        self.answer_prefix = answer_prefix
        import torch

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            torch_dtype = torch.bfloat16 if self.device.type == "cuda" else torch.float32
        else:
            torch_dtype = getattr(torch, dtype)

        self.load_kwargs: dict[str, Any] = {
            "dtype": torch_dtype,
            "trust_remote_code": trust_remote_code,
        }
        if quantization == "4bit":
            from transformers import BitsAndBytesConfig

            self.load_kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch_dtype
            )
            # bnb places weights while loading; they cannot be moved with .to() afterwards.
            self.load_kwargs["device_map"] = {"": str(self.device)}
        self.processor = AutoProcessor.from_pretrained(model, trust_remote_code=trust_remote_code)
        self.model = AutoModelForImageTextToText.from_pretrained(model, **self.load_kwargs)
        if quantization == "none":
            self.model.to(self.device)
        self.model.eval().requires_grad_(False)  # frozen: never trained, never in train mode

        tokenizer = self.processor.tokenizer
        self.words = tuple(w for w, _ in LEVELS)
        self.token_ids = rating_token_ids(tokenizer, answer_prefix, self.words)
        self.weights = torch.tensor([w for _, w in LEVELS], dtype=torch.float32)
        self.prompt = self._prompt()

    def sampler(self) -> UniformFrames:
        return UniformFrames(self.frames)

    def _prompt(self) -> str:
        """The chat-formatted prompt, ending with the pre-filled answer prefix."""
        if getattr(self.processor, "chat_template", None):
            messages = [
                {
                    "role": "user",
                    "content": [{"type": "video"}, {"type": "text", "text": self.question}],
                }
            ]
            head = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            return f"{head}{self.answer_prefix}"
        # Without a chat template: the processor's own video placeholder, question, answer.
        token = getattr(self.processor, "video_token", "<video>")
        return f"{token}\n{self.question}\n{self.answer_prefix}"

    def level_probs(self, frames: np.ndarray) -> torch.Tensor:
        import torch

        """uint8 `(T, H, W, 3)` frames -> probabilities `(5,)` over LEVELS' words."""
        inputs = self.processor(text=[self.prompt], videos=[frames], return_tensors="pt")
        inputs = inputs.to(self.device)
        for key, value in inputs.items():  # pixels follow the model's dtype; ids stay integer
            if torch.is_floating_point(value):
                inputs[key] = value.to(self.model.dtype)
        with torch.inference_mode():
            logits = self.model(**inputs).logits  # (1, L, V)
        last = logits[0, -1, self.token_ids].float().cpu()  # (5,) next token after the prefix
        return last.softmax(-1)

    def score_native(self, item: VideoItem) -> float:
        f = item.frames
        if f is None or f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
            raise ValueError(f"{item.video_id}: qalign needs uint8 (T, H, W, 3) frames")
        return float(self.level_probs(f) @ self.weights)
