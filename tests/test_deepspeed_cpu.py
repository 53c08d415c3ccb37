"""DeepSpeed ZeRO-2/3 on CPU: the strategy a config picks, fits with one and with two processes
(gloo) that take the same steps as plain training, and ZeRO checkpoints that convert to student
files the scorer loads."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.strategies import DeepSpeedStrategy
from torch.utils.data import DataLoader

from datamodules.pair_datamodule import collate_pairs
from lightning_modules.checkpoints import CheckpointError, load_student
from lightning_modules.strategies import (
    CPUDeepSpeedStrategy,
    ZeroStrategy,
    convert_zero_checkpoint,
    zero_strategy,
)
from lightning_modules.training import OptimConfig, PairwiseTrainingModule
from tests._zero_worker import STUDENT, LossRecorder, fit, make_module, probe

ROOT = Path(__file__).resolve().parents[1]
RUNS = ["2", "3", "3-offload"]  # ZeRO stage, and whether optimiser state and weights live on CPU


# -- what a config picks ---------------------------------------------------------------------
def test_zero_strategy_picks_stage_offload_and_device() -> None:
    plain = zero_strategy(2, cpu=True)
    assert type(plain) is CPUDeepSpeedStrategy
    zero = plain.config["zero_optimization"]
    assert zero["stage"] == 2 and "offload_optimizer" not in zero and "offload_param" not in zero
    assert zero["memory_efficient_linear"] is False  # torch's fused linear: exact steps on CPU
    offloaded = zero_strategy(3, offload=True, cpu=False)
    assert type(offloaded) is ZeroStrategy  # Lightning's own, for GPUs, that cleans up after itself
    zero = offloaded.config["zero_optimization"]
    assert "memory_efficient_linear" not in zero  # DeepSpeed's default (on) saves GPU memory
    assert zero["offload_optimizer"]["device"] == zero["offload_param"]["device"] == "cpu"
    # the module's torch AdamW steps the offloaded state; DeepSpeed must be told that is meant
    assert offloaded.config["zero_force_ds_cpu_optimizer"] is False
    with pytest.raises(ValueError, match="stage must be 2 or 3"):
        zero_strategy(1)


def test_yaml_picks_zero_by_value() -> None:
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy | str, default="auto")
    yaml = """
    strategy:
      class_path: lightning_modules.strategies.zero_strategy
      init_args: {stage: 3, offload: true, cpu: true}
    """
    strategy = parser.instantiate(parser.parse_string(yaml)).strategy
    assert isinstance(strategy, CPUDeepSpeedStrategy)
    assert strategy.config["zero_optimization"]["stage"] == 3
    assert "offload_param" in strategy.config["zero_optimization"]


@pytest.mark.usefixtures("own_process_group")
def test_lightning_alone_refuses_deepspeed_on_cpu() -> None:
    """Why CPUDeepSpeedStrategy exists; should this test fail, Lightning has lifted the check and
    the subclass may be dropped."""
    with pytest.raises(RuntimeError, match="only supported on CUDA GPUs"):
        fit(make_module(), DeepSpeedStrategy(stage=2))


def test_a_folder_that_is_no_zero_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no `latest` file"):
        convert_zero_checkpoint(tmp_path, tmp_path / "student.safetensors")
    with pytest.raises(CheckpointError, match="convert_zero_checkpoint"):  # the scorer says how
        load_student(tmp_path)


# -- one process -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    """The student after the same steps on the same pairs, trained without DeepSpeed."""
    module = make_module()
    fit(module)
    return module.student.state_dict()


@pytest.fixture(scope="module")
def own_process_group() -> Iterator[None]:
    """In-process DeepSpeed fits share one gloo process group (DeepSpeed caches groups made from
    it, so it cannot be torn down between fits); at the end it goes, and so do the rank variables
    Lightning exported (MASTER_PORT, RANK, LOCAL_RANK, ...), so later tests inherit neither."""
    env = dict(os.environ)
    yield
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    os.environ.clear()
    os.environ.update(env)


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_group")
@pytest.mark.parametrize("run", RUNS)
def test_one_process_zero_fit_takes_the_plain_steps_and_converts(
    run: str, reference: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    stage, _, offload = run.partition("-")
    module = make_module()
    initial = {k: v.clone() for k, v in module.student.state_dict().items()}
    trainer, losses = fit(module, zero_strategy(int(stage), offload == "offload", cpu=True))
    assert trainer.global_step == len(losses) == 4 and all(map(math.isfinite, losses))

    trainer.save_checkpoint(tmp_path / "run.zero")
    student = load_student(
        convert_zero_checkpoint(tmp_path / "run.zero", tmp_path / "s.safetensors")
    )
    assert student.spec() == module.student.spec()
    weights = student.state_dict()
    assert not torch.equal(weights["head.0.weight"], initial["head.0.weight"])  # it trained
    for key, value in reference.items():  # the very steps of plain AdamW, whatever the stage
        torch.testing.assert_close(weights[key], value, rtol=0, atol=1e-6, msg=key)
    with torch.no_grad():  # under ZeRO-3 the module gathers its sharded weights to score
        assert torch.equal(student(probe()), module.eval().student(probe()))


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_group")
def test_zero3_leaves_torch_linear_as_it_found_it() -> None:
    """DeepSpeed 0.19's ZeRO-3 swaps `F.linear` for its own wrapper process-wide (as on GPUs, where
    zero_strategy keeps it on); after the fit, whatever runs next must get torch's own again."""
    torch_linear = torch.nn.functional.linear
    strategy = zero_strategy(3, cpu=True)
    strategy.config["zero_optimization"]["memory_efficient_linear"] = True
    seen = []

    class SeeLinear(L.Callback):
        def on_train_batch_end(self, *args: object) -> None:
            seen.append(torch.nn.functional.linear)

    module = make_module()
    trainer = L.Trainer(accelerator="cpu", strategy=strategy, max_steps=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[SeeLinear()])  # fmt: skip
    from tests._zero_worker import pair_samples

    trainer.fit(module, DataLoader(pair_samples(4), batch_size=4, collate_fn=collate_pairs))
    assert seen and seen[0] is not torch_linear  # the swap happened during training ...
    assert torch.nn.functional.linear is torch_linear  # ... and was undone after it


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_group")
def test_bf16_zero_fit_converts_to_its_fp32_master_weights(tmp_path: Path) -> None:
    module = make_module()
    trainer, losses = fit(module, zero_strategy(2, cpu=True), precision="bf16-mixed")
    assert all(map(math.isfinite, losses))
    assert module.student.head[0].weight.dtype == torch.bfloat16  # DeepSpeed's bf16: weights too

    trainer.save_checkpoint(tmp_path / "run.zero")
    student = load_student(
        convert_zero_checkpoint(tmp_path / "run.zero", tmp_path / "s.safetensors")
    )
    # the student file keeps the fp32 master weights; the module runs on their bf16 rounding
    assert student.head[0].weight.dtype == torch.float32
    for key, value in module.student.state_dict().items():
        assert torch.equal(student.state_dict()[key].to(value.dtype), value), key
    with torch.no_grad():
        bf16 = module.eval().student(probe().bfloat16()).float()
        torch.testing.assert_close(student(probe()), bf16, rtol=0.05, atol=0.05)


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_group")
def test_a_checkpoint_saved_after_validate_is_refused_with_the_fix(tmp_path: Path) -> None:
    """`trainer.validate` swaps DeepSpeed's training engine for an inference engine, whose ZeRO-2
    checkpoint lacks the optimiser shards that hold the fp32 weights."""
    module = make_module()
    trainer, _ = fit(module, zero_strategy(2, cpu=True))
    videos = [{"video": x, "mos": float(i)} for i, x in enumerate(probe())]
    trainer.validate(module, DataLoader(videos, batch_size=3), verbose=False)
    trainer.save_checkpoint(tmp_path / "run.zero")
    with pytest.raises(CheckpointError, match="right after trainer.fit"):
        convert_zero_checkpoint(tmp_path / "run.zero", tmp_path / "s.safetensors")


@pytest.mark.slow
@pytest.mark.usefixtures("own_process_group")
def test_llava_student_with_gradient_checkpointing_trains_under_bf16_zero3(tmp_path: Path) -> None:
    """The student ZeRO is for: a (tiny, random) LLaVA-OneVision comparator, checkpointing its
    activations, in bf16 with its weights sharded; the level cross-entropy of the paper."""
    from datamodules._ffmpeg import encode_frames
    from datamodules.frame_sampling import read_clip
    from lightning_modules.losses import LevelCrossEntropy
    from lightning_modules.students.llava_onevision import LlavaOnevisionStudent
    from tests.tiny_models import build_tiny_llava_onevision
    from tests.videos import real_clip

    tiny = build_tiny_llava_onevision(tmp_path / "tiny")
    torch.manual_seed(0)
    student = LlavaOnevisionStudent(str(tiny), max_seconds=3, pool_to=2, motion_frames=4,
                                    gradient_checkpointing=True)  # fmt: skip
    clips = [encode_frames(real_clip(name, frames=16, height=32), 8, tmp_path / f"{name}.mp4")
             for name in ("bikes", "carphone")]  # fmt: skip
    bikes, carphone = (student.prepare(read_clip(p, student.sampler()), str(p)) for p in clips)
    pairs = [  # bikes is superior to carphone, and carphone inferior to bikes
        {"first": first, "second": second, "level": level, "soft_label": float(level == 4),
         "first_id": "", "second_id": "", "source": "", "skipped": 0}
        for first, second, level in [(bikes, carphone, 4), (carphone, bikes, 0)] * 4
    ]  # fmt: skip
    module = PairwiseTrainingModule(
        student, LevelCrossEntropy(), OptimConfig(lr=1e-3), total_steps=4
    )
    losses = LossRecorder()
    trainer = L.Trainer(
        accelerator="cpu", strategy=zero_strategy(3, cpu=True), precision="bf16-mixed",
        max_steps=4, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[losses],
    )  # fmt: skip
    trainer.fit(module, DataLoader(pairs, batch_size=2, collate_fn=collate_pairs))
    # every step sees the same two pairs, so the loss must fall
    assert all(map(math.isfinite, losses.values)) and losses.values[-1] < losses.values[0]

    trainer.save_checkpoint(tmp_path / "run.zero")
    loaded = load_student(
        convert_zero_checkpoint(tmp_path / "run.zero", tmp_path / "s.safetensors")
    )
    batch = collate_pairs(pairs[:2])
    with torch.no_grad():
        logits = loaded.compare(batch["first"], batch["second"])  # fp32 master weights
        trained = module.eval().student.compare(batch["first"], batch["second"]).float()  # bf16
    torch.testing.assert_close(logits, trained, rtol=0, atol=0.02)


# -- two processes ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(out: Path, runs: list[str], world: int = 2, timeout: float = 240.0) -> None:
    """Run `tests/_zero_worker.py` as `world` ranks, the way torchrun would start them.

    Lightning's own launcher re-runs the command line (here: pytest) for every extra rank, so the
    test starts each rank itself and can kill them all should one fail and the others wait."""
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()),
           "WORLD_SIZE": str(world), "LOCAL_WORLD_SIZE": str(world),
           "OMP_NUM_THREADS": "1"}  # fmt: skip  # one core per rank: no oversubscription
    logs = [out / f"rank{r}.log" for r in range(world)]
    ranks = []
    for r, log in enumerate(logs):
        with log.open("w") as sink:
            ranks.append(subprocess.Popen(
                [sys.executable, "-m", "tests._zero_worker", str(out), *runs], cwd=ROOT,
                env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=sink, stderr=sink,
            ))  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in ranks]
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.wait()
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
    assert codes == [0] * world, f"ranks exited with {codes}\n{tails}"


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One two-process job that fits every run in turn (each job start costs two imports)."""
    out = tmp_path_factory.mktemp("two_ranks")
    _launch(out, RUNS)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_two_process_zero_fit_takes_the_plain_steps_and_converts(
    run: str, two_process_runs: Path, reference: dict[str, torch.Tensor]
) -> None:
    result = torch.load(two_process_runs / f"{run}.pt", weights_only=True)
    assert len(result["losses"]) == 4 and all(map(math.isfinite, result["losses"]))
    folder = two_process_runs / f"{run}.zero"
    shards = list((folder / "checkpoint").glob("*optim_states.pt"))
    assert len(shards) == 2  # one optimiser shard per rank: the state really was partitioned

    student = load_student(convert_zero_checkpoint(folder, folder.with_suffix(".safetensors")))
    assert STUDENT.items() <= student.spec()["args"].items()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the ranks ran: a GEMM's rounding depends on its thread count
    try:
        with torch.no_grad():
            assert torch.equal(student(probe()), result["scores"])
    finally:
        torch.set_num_threads(threads)
    # Each rank took half of every batch and their averaged gradients are the whole batch's, up
    # to the order of float sums; Adam's normalisation lifts that to ~1e-5 where a gradient is
    # near zero, still far below the ~3e-2 that training moved the weights.
    for key, value in reference.items():
        torch.testing.assert_close(student.state_dict()[key], value, rtol=0, atol=1e-4, msg=key)
