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
