"""DeepSpeed ZeRO-2/3 for the trainer, on GPUs and, through a thin subclass, on CPU.

`zero_strategy(stage, offload)` is what a config names: on GPUs it is Lightning's own
`DeepSpeedStrategy` (as `ZeroStrategy`, which only cleans up after itself); on CPU (tests,
laptops) it is `CPUDeepSpeedStrategy`, which lets the same
ZeRO code run over gloo. Precision (`bf16-mixed`) stays a trainer setting, as with any strategy.
`convert_zero_checkpoint` turns the folder of shards that a ZeRO run saves into one student file.

What `CPUDeepSpeedStrategy` changes in Lightning's `DeepSpeedStrategy`, and why each is safe:

- `setup_environment` raises unless the accelerator is `CUDAAccelerator`. The subclass skips that
  check and sets DeepSpeed's accelerator to its `CPU_Accelerator` (gloo; device calls are no-ops),
  which DeepSpeed itself picks when it finds no GPU; setting it says so where one is visible too
  (that case is untested: the machines that run the tests have no GPU).
- `setup_distributed` checks that device indices equal local ranks, `[0, 1, ...]`; CPU devices
  have no index (`[None, None]`), so the check cannot pass. The subclass skips only that check:
  every CPU process shares the one "cpu" device, so there is no index to get wrong.
- `deepspeed.initialize` receives `device_rank=root_device.index`, None on CPU, which DeepSpeed
  compares with 0 and fails on (TypeError). The subclass shows DeepSpeed index 0 for the length of
  that call; `CPU_Accelerator.set_device` ignores it and every rank keeps its real rank and world
  size, which DeepSpeed reads from the process group.
- DeepSpeed's ZeRO-3 (0.19 on) replaces `torch.nn.functional.linear` for the whole process with
  its memory-efficient wrapper as soon as a model is sharded, and never restores it. That wrapper
  rounds differently (matmul, then `+= bias`, where torch fuses them), and it stays in force for
  everything that runs later in the process: plain fits, scoring, 4-bit bitsandbytes teachers
  (whose kernels it breaks). On CPU the subclass turns it off (`memory_efficient_linear: false`,
  so ZeRO-3 takes the very steps of plain training); on every ZeRO strategy, `teardown` puts torch's
  own function back (see `ZeroStrategy`).
- DeepSpeed's `TorchBackend` compiles a shared-memory all-reduce op (`deepspeed_shm_comm`) on the
  first CPU run, about 100 s on two cores, and uses it only for inference all-reduce (tensor
  parallel inference). The subclass marks it unavailable, so training uses plain gloo collectives
  and needs no C++ toolchain.

Everything else (ZeRO partitioning, offload, checkpoint saving and loading, the precision plugin,
gradient clipping) is Lightning's and DeepSpeed's own code, unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.fabric.utilities.seed import reset_seed
from lightning.pytorch.strategies import DeepSpeedStrategy

from lightning_modules.checkpoints import (
    SPEC_KEY,
    CheckpointError,
    rebuild_student,
    save_student,
    student_weights,
)

_SHM_OP = "deepspeed_shm_comm"  # DeepSpeed's name for the op builder (ShareMemCommBuilder.NAME)


class ZeroStrategy(DeepSpeedStrategy):
    """Lightning's DeepSpeed strategy that leaves `torch.nn.functional.linear` as it found it.

    ZeRO-3 swaps in DeepSpeed's memory-efficient linear process-wide (it keeps only the sharded
    weight for backward, which matters for a 7B student); the swap is wanted during training and
    nowhere after it, so `teardown` undoes it."""

    def teardown(self) -> None:
        super().teardown()
        restore_torch_linear()


def restore_torch_linear() -> None:
    """Undo DeepSpeed's process-wide swap of `torch.nn.functional.linear`, if it made one."""
    from deepspeed.runtime.zero.partition_parameters import InsertPostInitMethodToModuleSubClasses

    original = getattr(InsertPostInitMethodToModuleSubClasses, "linear_bk", None)
    if original is not None:
        torch.nn.functional.linear = original


class CPUDeepSpeedStrategy(ZeroStrategy):
    """Lightning's DeepSpeed strategy on CPU processes over gloo (see the module docstring)."""

    def setup_environment(self) -> None:
        import deepspeed
        from deepspeed.accelerator import set_accelerator
        from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

        set_accelerator(CPU_Accelerator())
        deepspeed.ops.__compatible_ops__[_SHM_OP] = False  # read when the process group starts
        # DDPStrategy's setup_environment (set up the device, then setup_distributed), without
        # DeepSpeedStrategy's CUDA-only check
        super(DeepSpeedStrategy, self).setup_environment()

    def setup_distributed(self) -> None:
        # DeepSpeedStrategy.setup_distributed minus `_validate_device_index_selection`
        reset_seed()
        self.set_world_ranks()
        self._init_deepspeed_distributed()

    def _setup_model_and_optimizer(self, *args: Any, **kwargs: Any) -> Any:
        with self._indexed_root_device():
            return super()._setup_model_and_optimizer(*args, **kwargs)

    def _initialize_deepspeed_inference(self, model: torch.nn.Module) -> None:
        with self._indexed_root_device():
            super()._initialize_deepspeed_inference(model)

    @contextmanager
    def _indexed_root_device(self) -> Iterator[None]:
        # Lightning passes `root_device.index` to deepspeed.initialize as `device_rank`; a CPU
        # device's index is None, which DeepSpeed cannot compare. Index 0 is the only valid one.
        devices = self.parallel_devices
        assert devices is not None
        self.parallel_devices = [torch.device("cpu", 0)] * len(devices)
        try:
            yield
        finally:
            self.parallel_devices = devices


def zero_strategy(
    stage: Literal[2, 3] = 2, offload: bool = False, cpu: bool | None = None, **kwargs: Any
) -> DeepSpeedStrategy:
    """The Lightning strategy for ZeRO `stage` (2: optimiser state and gradients sharded; 3:
    parameters too), with `offload` of the optimiser state (and with stage 3, the parameters) to
    CPU memory. `cpu`: build the CPU strategy (None: when no CUDA device is visible); `kwargs`
    go to `DeepSpeedStrategy` (e.g. `allgather_bucket_size`, `logging_batch_size_per_gpu`,
    `timeout`), except `config`, a whole DeepSpeed config that would override stage and offload."""
    if stage not in (2, 3):
        raise ValueError(f"ZeRO stage must be 2 or 3, not {stage!r}")
    if "config" in kwargs:
        raise ValueError(
            "zero_strategy sets the stage and offload; for a whole DeepSpeed config use "
            "DeepSpeedStrategy(config=...) (or CPUDeepSpeedStrategy) directly"
        )
    if cpu is None:
        cpu = not torch.cuda.is_available()
    cls = CPUDeepSpeedStrategy if cpu else ZeroStrategy
    strategy = cls(
        stage=stage, offload_optimizer=offload, offload_parameters=offload and stage == 3, **kwargs
    )
    if cpu:
        # torch's fused linear, so a CPU run takes the very steps of plain training (docstring)
        strategy.config["zero_optimization"]["memory_efficient_linear"] = False
    if offload:
        # The LightningModule's own optimiser (torch AdamW) steps on the offloaded CPU state;
        # DeepSpeed refuses a client optimiser with offload unless told this is intended.
        strategy.config["zero_force_ds_cpu_optimizer"] = False
    return strategy


def convert_zero_checkpoint(folder: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Consolidate the ZeRO checkpoint `folder` (from `trainer.save_checkpoint` under DeepSpeed)
    into the student file `out` (`.safetensors`); returns `out`.

    The folder's shards are pickles, and DeepSpeed's reader loads them with weights_only=False,
    so convert only checkpoints you trust. The student file it writes holds tensors and JSON
    only: that one is safe to share. The student is rebuilt from the `student_spec` that
    `PairwiseTrainingModule` stores; conversion holds about three fp32 copies of its weights
    (the consolidated state, the rebuilt student, the copy safetensors writes).

    Save the folder right after `fit`: `trainer.validate` and `trainer.predict` replace DeepSpeed's
    training engine with an inference engine, whose checkpoint has no optimiser shards (ZeRO-2)
    or cannot be written at all (ZeRO-3).
    """
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    folder = Path(folder)
    latest = folder / "latest"
    if not latest.is_file():
        raise CheckpointError(folder, "not a DeepSpeed ZeRO checkpoint folder (no `latest` file)")
    shards = folder / latest.read_text().strip()
    if not any(shards.glob("*optim_states.pt")):  # zero_to_fp32 would fail on a None (TypeError)
        raise CheckpointError(
            folder, f"no optimiser shards in {shards.name}/: saved by an inference engine (after "
            "trainer.validate or predict)? Save the ZeRO checkpoint right after trainer.fit"
        )  # fmt: skip
    # Lightning's own checkpoint entries, the student spec among them, ride in every rank's
    # model-state file (mp_rank_00_* under ZeRO-2, zero_pp_rank_R_* under ZeRO-3); mmap, because
    # under ZeRO-2 that file also holds the whole model.
    model_states = sorted(shards.glob("*model_states.pt"))[0]
    client = torch.load(model_states, map_location="cpu", mmap=True, weights_only=False)
    if SPEC_KEY not in client:
        raise CheckpointError(folder, "not a w2svqa training checkpoint (no student spec)")
    spec = client[SPEC_KEY]
    state = get_fp32_state_dict_from_zero_checkpoint(str(folder))
    hint = " (saved with exclude_frozen_parameters=True?)"
    student = rebuild_student(folder, spec, student_weights(state), hint=hint)
    return save_student(student, out)
