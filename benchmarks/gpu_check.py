"""GPU check: the LLaVA-OneVision student trains under ZeRO-2 and ZeRO-3 in bf16, and a 4-bit
(bitsandbytes nf4) Q-Align teacher scores videos. Prints tokens per second, peak memory and model
FLOPs utilisation (MFU). Under 5 minutes on one H100.

The model is real-shaped and randomly initialised (no download): LLaVA-OneVision-0.5B's shapes
(Qwen2 896-d x 24 layers, 151,936-token vocabulary; SigLIP-so400m 1152-d x 26 layers at 384 px,
patch 14, 27x27 -> 14x14 = 196 tokens per frame). Inputs are random prepared videos of
`--seconds` seconds (frames and motion features), so decoding is not measured.

Wheels it needs beyond torch, transformers and lightning (`pip download` them elsewhere and
install with `pip install --no-index --find-links WHEELS ...`): deepspeed (built as a wheel:
`pip wheel --no-deps deepspeed`), bitsandbytes, accelerate, torchmetrics, safetensors, numpy,
pandas, scipy, av (the project's frame sampling imports it), jsonargparse, tqdm, pyarrow.

    python -m benchmarks.gpu_check                  # on a GPU
    python -m benchmarks.gpu_check --smoke          # tiny config on CPU: checks the script runs

MFU counts 6 x parameters x tokens per step (the usual dense-training estimate; the frozen
language model still runs its backward for the activations, so this is close) against the
card's dense bf16 peak.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from benchmarks._table import markdown_table
from datamodules.motion_features import MOTION_DIM
from lightning_modules.losses import LevelCrossEntropy
from lightning_modules.strategies import zero_strategy
from lightning_modules.training import OptimConfig, PairwiseTrainingModule
from tests.tiny_models import build_tiny_llava_onevision

REAL_SHAPED = {
    "text": {"vocab_size": 151_936, "hidden_size": 896, "intermediate_size": 4864,
             "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
             "max_position_embeddings": 32_768},
    "vision": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 26,
               "num_attention_heads": 16},
    "image_size": 384, "patch": 14, "pool_to": 14,
}  # fmt: skip
SMOKE = {"text": {}, "vision": {}, "image_size": 32, "patch": 8, "pool_to": 2}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM


class RandomPairs(Dataset):
    """Random prepared video pairs in the student's input format, with random levels."""

    def __init__(self, n: int, seconds: int, image_size: int) -> None:
        self.n, self.seconds, self.size = n, seconds, image_size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)

        def video() -> dict[str, torch.Tensor]:
            return {
                "pixel_values": torch.randn(self.seconds, 3, self.size, self.size, generator=g),
                "mask": torch.ones(self.seconds, dtype=torch.bool),
                "motion": torch.randn(self.seconds, MOTION_DIM, generator=g),
            }

        level = int(torch.randint(0, 5, (1,), generator=g))
        return {"first": video(), "second": video(), "level": level, "soft_label": level / 4,
                "skipped": 0}  # fmt: skip


def collate(samples: list[dict]) -> dict:
    batch = default_collate(samples)
    batch["soft_label"] = batch["soft_label"].float()
    batch["skipped"] = 0  # random inputs: nothing to skip
    return batch


class StepTimer(L.Callback):
    """Wall time of each training step after `warmup` steps, and the peak GPU memory."""

    def __init__(self, warmup: int = 2) -> None:
        self.warmup, self.times, self.start = warmup, [], 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        _sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        _sync()
        if batch_idx >= self.warmup:
            self.times.append(time.perf_counter() - self.start)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def train_row(model: str, stage: int, args, shape: dict) -> dict:
    from lightning_modules.students.llava_onevision import LlavaOnevisionStudent

    cuda = torch.cuda.is_available() and not args.smoke
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    student = LlavaOnevisionStudent(
        model, readout="comparator", max_seconds=args.seconds, pool_to=shape["pool_to"],
        gradient_checkpointing=True,
    )  # fmt: skip
    module = PairwiseTrainingModule(
        student, LevelCrossEntropy(), OptimConfig(lr=1e-5, part_lr={"vision_tower": 2e-6}),
        total_steps=args.steps,
    )  # fmt: skip
    data = DataLoader(RandomPairs(args.steps * args.batch_size, args.seconds,
                                  shape["image_size"]), batch_size=args.batch_size,
                      collate_fn=collate)  # fmt: skip
    timer = StepTimer(warmup=min(2, args.steps - 1))
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, max_steps=args.steps,
        strategy=zero_strategy(stage, cpu=not cuda), precision="bf16-mixed" if cuda else "32",
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer],
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=data)
    params = sum(p.numel() for p in student.parameters())
    trainable = sum(p.numel() for p in student.parameters() if p.requires_grad)
    per_video = args.seconds * shape["pool_to"] ** 2 + 1 + args.seconds  # frames, newline, motion
    tokens = args.batch_size * (2 * per_video + 64)  # + about 64 prompt tokens (real tokenizer)
    step = float(np.median(timer.times)) if timer.times else float("nan")
    peak = _peak_tflops()
    return {
        "check": f"train comparator, ZeRO-{stage}, {'bf16-mixed' if cuda else 'fp32 (smoke)'}",
        "params (M)": params / 1e6, "trainable (M)": trainable / 1e6,
        "step s": step, "tokens/s": tokens / step,
        "peak mem (GiB)": torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan"),
        "MFU %": 100 * 6 * params * tokens / step / (peak * 1e12) if peak else float("nan"),
    }  # fmt: skip


def _peak_tflops() -> float | None:
    if not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def teacher_rows(model: str, args, shape: dict) -> list[dict]:
    from lightning_modules.teachers.base import VideoItem
    from lightning_modules.teachers.vlm import QAlignTeacher

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (8, 240, 320, 3), dtype=np.uint8) for _ in range(args.videos)]
    rows = []
    for quantization in ("none", "4bit"):
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        teacher = QAlignTeacher(model, frames=8, quantization=quantization)
        footprint = teacher.model.get_memory_footprint()
        teacher.score_native(VideoItem("warmup", "warmup", frames=frames[0]))
        _sync()
        start = time.perf_counter()
        scores = [teacher.score_native(VideoItem(f"v{i}", f"v{i}", frames=f))
                  for i, f in enumerate(frames)]  # fmt: skip
        _sync()
        seconds = time.perf_counter() - start
        rows.append({
            "check": f"qalign teacher, {'nf4 4-bit' if quantization == '4bit' else 'bf16/fp32'}",
            "weights (GiB)": footprint / 2**30, "videos/s": len(frames) / seconds,
            "finite": all(np.isfinite(scores)),
            "peak mem (GiB)": torch.cuda.max_memory_allocated() / 2**30
            if torch.cuda.is_available() else float("nan"),
        })  # fmt: skip
        del teacher
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch_size", type=int, default=2, help="pairs per step (the paper: 2)")
    parser.add_argument("--seconds", type=int, default=8, help="seconds (frames) per video")
    parser.add_argument("--videos", type=int, default=8, help="videos the teacher scores")
    parser.add_argument("--smoke", action="store_true", help="tiny config on CPU")
    args = parser.parse_args()
    if args.smoke:
        args.steps, args.seconds, args.videos = min(args.steps, 4), min(args.seconds, 2), 2
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --smoke to check the script on CPU")
    shape = SMOKE if args.smoke else REAL_SHAPED
    with tempfile.TemporaryDirectory() as tmp:
        model = str(build_tiny_llava_onevision(
            Path(tmp) / "llava_ov", text=shape["text"], vision=shape["vision"],
            image_size=shape["image_size"], patch=shape["patch"],
        ))  # fmt: skip
        train = [train_row(model, stage, args, shape) for stage in (2, 3)]
        teach = teacher_rows(model, args, shape)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"\n{device}; torch {torch.__version__}; batch {args.batch_size} pairs of "
          f"{args.seconds}-s videos; {args.steps} steps (median after warm-up)\n")  # fmt: skip
    print(markdown_table(train, digits=2))
    print()
    print(markdown_table(teach, digits=3))


if __name__ == "__main__":
    main()
