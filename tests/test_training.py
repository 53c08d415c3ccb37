"""The training module and stage: the compact student learns to order real blurred footage, the
schedule and guards behave, and what it saves is what `load_student` and `w2svqa score` read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments.train import train_student
from lightning_modules.checkpoints import CheckpointError, load_student, save_student
from lightning_modules.losses import LevelCrossEntropy, OrderedProbit
from lightning_modules.students.compact import CompactStudent
from lightning_modules.training import OptimConfig, PairwiseTrainingModule, warmup_cosine
from lightning_modules.training_callbacks import CURVE_COLUMNS, curve_file
from tests.students import blur_ladder, ladder_pairs

# The packaged ImageNet weights: features that see blur, so a few head steps learn the order.
STUDENT = {"frames": 2, "size": 64, "hidden": 32, "dropout": 0.0}


@pytest.fixture(scope="module")
def ladder(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    folder = tmp_path_factory.mktemp("ladder")
    videos = blur_ladder(folder)
    return videos, ladder_pairs(videos, folder / "pairs.parquet")


@pytest.fixture(scope="module")
def trained(ladder, tmp_path_factory: pytest.TempPathFactory):
    videos, pairs = ladder
    out = tmp_path_factory.mktemp("student") / "student.safetensors"
    cache = str(out.parent / "features")
    student = CompactStudent(**STUDENT, feature_cache=cache)
    logged: list[tuple[dict, int]] = []  # what an MLflow run would get, steps after an offset
    result = train_student(
        student, OrderedProbit(), [pairs], out, val_sets={"ladder": videos},
        optim=OptimConfig(lr=3e-3, warmup=0.1), steps=40, batch_size=8, workers=0, seed=0,
        log_metrics=lambda metrics, step: logged.append((dict(metrics), step)), step_offset=100,
    )  # fmt: skip
    return result, student, videos, logged


def test_compact_student_learns_to_order_blurred_footage(trained) -> None:
    result, *_ = trained
    assert result.steps == 40 and result.checkpoint.is_file()
    assert set(result.before) == {"ladder/srcc", "ladder/plcc", "ladder/krcc"}
    assert result.after["ladder/srcc"] > result.before["ladder/srcc"] + 0.2
    assert result.after["ladder/srcc"] > 0.7


def test_saved_student_scores_like_the_trained_one(trained) -> None:
    result, student, videos, _ = trained
    loaded = load_student(result.checkpoint)
    assert loaded.spec() == student.spec()
    x = torch.stack([student.prepare(*_frames(p)) for p in videos.path[:4]])
    with torch.no_grad():
        assert torch.allclose(loaded(x), student.eval()(x), atol=1e-6)


def test_the_training_curve_goes_to_its_table_and_the_sink(trained) -> None:
    result, _, _, logged = trained
    curve = pd.read_csv(curve_file(result.checkpoint))
    assert curve_file(result.checkpoint).name == "student_curve.csv"
    assert curve.step.tolist() == [10, 20, 30, 40] and list(curve.columns) == list(CURVE_COLUMNS)
    assert curve.loss.iloc[-1] < curve.loss.iloc[0]  # it learns
    assert (curve.grad_norm > 0).all() and (curve.lr > 0).all()
    assert curve.lr.iloc[-1] < curve.lr.max()  # the cosine decays
    train = [(m, step) for m, step in logged if "train/loss" in m]
    assert [step for _, step in train] == [110, 120, 130, 140]
    assert [m["train/loss"] for m, _ in train] == pytest.approx(curve.loss.tolist())
    validation = {step: m for m, step in logged if "val/ladder/srcc" in m}
    assert validation[100]["val/ladder/srcc"] == pytest.approx(result.before["ladder/srcc"])
    assert validation[140]["val/ladder/srcc"] == pytest.approx(result.after["ladder/srcc"])


def test_a_broken_curve_table_is_named_and_written_anew(tmp_path: Path) -> None:
    from lightning_modules.training_callbacks import read_curve, replay_curve

    broken = tmp_path / "student_curve.csv"
    for text in ("step,loss,lr,grad_norm\n10,0.5,oops,1.0\n", "step,loss\n10,0.5\n",
                 "step,loss,lr,grad_norm\n10,0.5\n", "\xff\xfe\x00"):  # fmt: skip
        broken.write_bytes(text.encode("latin-1"))
        with pytest.warns(UserWarning, match=r"student_curve\.csv: not a training curve table"):
            assert read_curve(broken) == []
    sent: list = []
    with pytest.warns(UserWarning, match="written anew"):
        assert replay_curve(broken, lambda m, s: sent.append(s)) == 0 and sent == []


def test_the_step_bar_counts_steps_and_says_what_it_trains(tmp_path: Path, ladder, capsys):
    _, pairs = ladder
    student = CompactStudent(**STUDENT, feature_cache=str(tmp_path / "features"))
    train_student(student, OrderedProbit(), [pairs], tmp_path / "s.safetensors", steps=5,
                  batch_size=4, workers=0, description="round 2: train", progress=True)  # fmt: skip
    err = capsys.readouterr().err
    assert "round 2: train" in err and "5/5" in err
    assert "Epoch" not in err  # one bar over the fit, not Lightning's per pass


def _frames(path: str):
    from datamodules.frame_sampling import UniformFrames, read_clip

    return read_clip(path, UniformFrames(STUDENT["frames"])), path


def test_lightning_checkpoint_loads_as_a_student(tmp_path: Path, ladder) -> None:
    import lightning as L

    _, pairs = ladder
    student = CompactStudent(**STUDENT)
    module = PairwiseTrainingModule(student, OrderedProbit(), total_steps=2)
    trainer = L.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    from datamodules.pair_datamodule import PairDataModule

    trainer.fit(module, datamodule=PairDataModule.for_student(student, [pairs], workers=0))
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    loaded = load_student(tmp_path / "last.ckpt")
    for key, value in student.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_unreadable_checkpoints_name_the_file_and_the_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="notes.ckpt.*weights_only"):
        load_student(text)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt.*no student spec"):
        load_student(foreign)
    with pytest.raises(CheckpointError, match="missing.safetensors.*no such"):
        load_student(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="ends in .safetensors"):
        save_student(CompactStudent(weights=None, hidden=8), tmp_path / "student.pt")


def test_guards_fail_before_training() -> None:
    scorer = CompactStudent(weights=None, hidden=8)
    with pytest.raises(ValueError, match="needs level logits.*scorer"):
        PairwiseTrainingModule(scorer, LevelCrossEntropy())
    module = PairwiseTrainingModule(
        scorer, OrderedProbit(), OptimConfig(part_lr={"vision_tower": 1e-5}), total_steps=10
    )
    with pytest.raises(ValueError, match=r"vision_tower.*trainable parts: \['head'\]"):
        module.configure_optimizers()


def test_optimiser_groups_and_schedule() -> None:
    student = CompactStudent(weights=None, hidden=8, trainable_blocks=1)
    module = PairwiseTrainingModule(
        student, OrderedProbit(), OptimConfig(lr=1e-3, part_lr={"backbone": 1e-5}), total_steps=100
    )
    config = module.configure_optimizers()
    groups = {g["name"]: g for g in config["optimizer"].param_groups}
    assert set(groups) == {"backbone", "head", "loss"}  # the probit's cut-points train too
    assert groups["backbone"]["initial_lr"] == 1e-5 and groups["loss"]["weight_decay"] == 0.0
    # warm-up is linear over 10% of the steps, then a cosine down to min_ratio
    assert warmup_cosine(0, 100, 0.1) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 0.1) == pytest.approx(0.5)
    assert warmup_cosine(100, 100, 0.1, min_ratio=0.1) == pytest.approx(0.1)


def test_a_checkpoint_cut_short_by_a_kill_is_set_aside_and_named(tmp_path: Path, ladder) -> None:
    _, pairs = ladder
    out = tmp_path / "s.safetensors"
    folder = tmp_path / "s.lightning"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 half a zip")
    student = CompactStudent(**STUDENT, feature_cache=str(tmp_path / "features"))
    with pytest.warns(UserWarning, match=r"last\.ckpt: not a whole checkpoint.*last\.broken"):
        result = train_student(student, OrderedProbit(), [pairs], out, steps=3, batch_size=4,
                               workers=0, checkpoint_every=2)  # fmt: skip
    assert result.steps == 3 and out.is_file()  # started over, finished
