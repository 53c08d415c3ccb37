"""Quality-aware frame features from a frozen ImageNet CNN: the spatial mean and standard deviation
of every stage's feature map, computed on the frame at its native resolution.

Why these and not the last layer on a 224-pixel crop: an ImageNet network's last layer is trained to
ignore what quality is made of (blur, noise, blocking are nuisances for classification), and
resizing a frame to 224 erases the very artifacts that a quality model must see. The field's answer
is to read the low and middle stages too, and to pool them by mean and spread (VSFA and MDTVSFA pool
the mean and std of deep features; CONTRIQUE and Re-IQA use multi-scale statistics), on pixels that
were never resampled (FAST-VQA's native fragments). `benchmarks/student_features.py` measures the
difference on the sample corpus.

    frame (3, H, W), native (long side capped at `max_side`)
      -> stem -> stage 1 ... stage S -> head conv       each a map (C_s, H_s, W_s)
      -> per map: mean and std over H_s x W_s            (2 C_s,)
      -> concatenated                                    (D,)  D = 2 * sum(C_s), 4128 for Lite0
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def stage_maps(net: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Feature maps after every stage and after the head conv of a timm EfficientNet-family model
    (`conv_stem`, `bn1`, `blocks`, `conv_head`, `bn2`): `(N, 3, H, W)` -> [(N, C_s, H_s, W_s)]."""
    for part in ("conv_stem", "bn1", "blocks", "conv_head", "bn2"):
        if not hasattr(net, part):
            raise ValueError(
                f"{type(net).__name__} has no `{part}`: stage statistics need a timm "
                "EfficientNet-family backbone (efficientnet_*, tf_efficientnet_*, mobilenetv*)"
            )
    h = net.bn1(net.conv_stem(x))
    maps = []
    for stage in net.blocks:
        h = stage(h)
        maps.append(h)
    maps.append(net.bn2(net.conv_head(h)))
    return maps


def stage_widths(net: nn.Module) -> list[int]:
    """Channels of each map that `stage_maps` returns, read off a tiny forward pass."""
    with torch.no_grad():
        return [m.shape[1] for m in stage_maps(net, torch.zeros(1, 3, 64, 64))]


def stage_statistics(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Spatial mean and std of every stage's map: `(N, 3, H, W)` -> `(N, D)`, the means of all
    stages first, then their stds (so a slice of the vector means the same for every backbone)."""
    maps = stage_maps(net, x)
    means = [m.mean(dim=(2, 3)) for m in maps]  # each (N, C_s)
    stds = [m.std(dim=(2, 3), unbiased=False) for m in maps]
    return torch.cat(means + stds, dim=1)


def cap_long_side(x: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """`(N, C, H, W)` as it is, or area-downscaled so that its long side is at most `max_side`: the
    cost of a 4K frame is bounded, and a frame that fits is never resampled."""
    h, w = x.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return x
    scale = max_side / max(h, w)
    size = (max(round(h * scale), 1), max(round(w * scale), 1))
    return F.interpolate(x, size=size, mode="area")


TEMPORAL_STAGES = 3  # the early stages (edges, textures) see a repeated frame or a shake best
REPEAT_THRESHOLD = 1e-3  # a mean absolute pixel change below this (on [0, 1]) is a repeated frame


def temporal_statistics(net: nn.Module, run: torch.Tensor) -> torch.Tensor:
    """How consecutive frames change: `(R, 3, H, W)` normalised frames -> `(K,)`.

    Per map (the normalised pixels, then the first `TEMPORAL_STAGES` stages): the absolute change
    between neighbours, averaged over space per channel, then its mean and std over the run; and
    the fraction of neighbours that barely change at all (stutter, dropped frames). Spread frames
    half a second apart can see none of this. K = 2 * (3 + sum of those stages' widths) + 1."""
    if len(run) < 2:
        raise ValueError("temporal statistics need a run of at least 2 frames")
    h = net.bn1(net.conv_stem(run))
    maps = [run]
    for stage in list(net.blocks)[:TEMPORAL_STAGES]:
        h = stage(h)
        maps.append(h)
    out = []
    for m in maps:
        change = (m[1:] - m[:-1]).abs().mean(dim=(2, 3))  # (R-1, C)
        out += [change.mean(0), change.std(0, unbiased=False)]
    pixel_change = maps[0][1:].sub(maps[0][:-1]).abs().mean(dim=(1, 2, 3))  # (R-1,)
    # pixels are normalised by std 0.5 (Lite0) or ~0.22 (ImageNet): a threshold well below either
    repeats = (pixel_change < REPEAT_THRESHOLD).float().mean()
    return torch.cat([*out, repeats[None]])


def temporal_width(net: nn.Module) -> int:
    """K of `temporal_statistics` for this backbone."""
    return 2 * (3 + sum(stage_widths(net)[:TEMPORAL_STAGES])) + 1
