"""The distortion simulator: known-severity renditions of a clip for synthetic quality pairs.

The nine default types and their levels are the paper's table (reference/paper.md, "Synthetic
distortion simulators"); the extra families (`default=False`) are for out-of-distribution tests.
Every type maps a uint8 RGB clip `(T, H, W, 3)` to one of the same shape and dtype: temporal types
keep the frame count (a dropped frame is replaced by a repeat), codecs pad odd sizes and crop back.

Random types use common random numbers across levels: one seed draws the same noise field, the
same shift directions and the same frame order at every level, and the level only scales them. So
for a fixed seed the damage at level k+1 contains the damage at level k, and the severity order
holds clip by clip, not just on average - which is what a synthetic pair label claims.
Encoders run single-threaded so that their output does not depend on the machine's core count.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from datamodules._ffmpeg import encode_frames, file_url, run_ffmpeg
from datamodules.video_reader import VideoReader


@dataclass(frozen=True)
class DistortionType:
    """One kind of distortion and its parameter at each level, mildest first."""

    name: str
    family: str  # "spatial" | "temporal" | "compression" (paper); others are extra families
    levels: tuple[float, ...]  # the parameter per level, ordered by increasing severity
    default: bool  # True: one of the paper's nine types, used by pair generation by default


# name -> (type, function(frames, fps, parameter, rng, options) -> frames)
_Fn = Callable[[np.ndarray, float, float, np.random.Generator, dict], np.ndarray]
_REGISTRY: dict[str, tuple[DistortionType, _Fn]] = {}


def _register(name: str, family: str, levels: Sequence[float], default: bool) -> Callable:
    def wrap(fn: _Fn) -> _Fn:
        _REGISTRY[name] = (DistortionType(name, family, tuple(levels), default), fn)
        return fn

    return wrap


# ----------------------------------------------------------------------------------------------
# Spatial (paper)


@_register("resize", "spatial", (2, 3, 4, 8, 16), default=True)
def _resize(frames, fps, s, rng, opts):
    # Down with area averaging (what a real downscaler does), back up with bicubic (a player).
    h, w = frames.shape[1:3]
    small = (max(1, round(w / s)), max(1, round(h / s)))
    out = [
        cv2.resize(cv2.resize(f, small, interpolation=cv2.INTER_AREA), (w, h), cv2.INTER_CUBIC)
        for f in frames
    ]
    return np.stack(out)


@_register("blur", "spatial", (0.1, 0.5, 1, 2, 5), default=True)
def _blur(frames, fps, sigma, rng, opts):
    # Per frame, not across frames or channels; edges replicated. Note that the paper's mildest
    # level is no blur at all in 8 bits: at sigma 0.1 a neighbour's weight is exp(-50), so the
    # output equals the input exactly (any sampled Gaussian does the same).
    x = gaussian_filter(frames.astype(np.float32), sigma=(0, sigma, sigma, 0), mode="nearest")
    return _to_uint8(x)


@_register("noise", "spatial", (0.001, 0.002, 0.003, 0.005, 0.01), default=True)
def _noise(frames, fps, variance, rng, opts):
    # The levels are variances on [0, 1] pixels. The paper's table calls them sigma, but they are
    # KADID-10k's white-noise levels, which are imnoise variances there; read as standard
    # deviations (0.26-2.6 grey levels) they move VMAF by under one point across all five levels,
    # read as variances (sigma 8-25 grey levels) they span 94 to 75 on real footage.
    # One standard-normal field for every level: level only scales it (common random numbers).
    z = rng.standard_normal(frames.shape, dtype=np.float32)
    return _to_uint8(frames.astype(np.float32) + (255.0 * np.sqrt(variance)) * z)


@_register("darken", "spatial", (0.05, 0.1, 0.2, 0.4, 0.8), default=True)
def _darken(frames, fps, p, rng, opts):
    # Interpolate each pixel toward black by p: luminance and chroma scale together, as when the
    # scene gets less light, so hue is kept and nothing leaves the gamut.
    return _to_uint8(frames.astype(np.float32) * (1.0 - p))


@_register("brighten", "spatial", (0.1, 0.2, 0.4, 0.7, 1.1), default=True)
def _brighten(frames, fps, p, rng, opts):
    # p reaches 1.1, so "interpolate toward white by p" cannot be meant (it would pass white).
    # A gamma curve on [0, 1], y = x ** (1 / (1 + p)), lifts shadows and mid-tones while black and
    # white stay fixed: p = 1.1 is gamma 1/2.1, a strongly washed-out picture but no clipping.
    x = frames.astype(np.float32) / 255.0
    return _to_uint8(255.0 * np.power(x, 1.0 / (1.0 + p)))


# ----------------------------------------------------------------------------------------------
# Temporal (paper)


# Jitter: the largest shift, as a fraction of the frame's width (x) and height (y). The paper does
# not publish its magnitudes. 1% / 2% / 4% of the frame is mild / clear / strong hand shake (about
# 19 / 38 / 77 px on a 1920-wide frame); relative, so a level means the same at any resolution.
@_register("jitter", "temporal", (0.01, 0.02, 0.04), default=True)
def _jitter(frames, fps, a, rng, opts):
    # Each frame is shifted by a random (dx, dy) within +-a of its size, then a margin of a is
    # cropped on every side (so no border shows) and the rest resized back: one affine warp.
    t, h, w, _ = frames.shape
    u = rng.uniform(-1.0, 1.0, size=(t, 2))  # same directions at every level
    scale = 1.0 - 2.0 * a  # the crop window's size relative to the frame
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        # Inverse map, output pixel centre -> source position: src = m + d + scale * dst.
        ox = a * w * (1.0 + u[i, 0]) + 0.5 * scale - 0.5
        oy = a * h * (1.0 + u[i, 1]) + 0.5 * scale - 0.5
        m = np.array([[scale, 0.0, ox], [0.0, scale, oy]], dtype=np.float64)
        out[i] = cv2.warpAffine(
            f, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
    return out


# Stutter: the fraction of frames replaced by the previous shown frame. Not published either.
# 10% / 25% / 50% are an occasional hiccup / a visibly uneven clip / half the motion lost. Exactly
# round(p * (T - 1)) frames (at least one) are replaced rather than each with probability p, so a
# short clip always stutters and, with one random frame order per seed, levels nest.
@_register("stutter", "temporal", (0.1, 0.25, 0.5), default=True)
def _stutter(frames, fps, p, rng, opts):
    t = len(frames)
    order = rng.permutation(np.arange(1, t))  # frame 0 has no previous frame to repeat
    k = max(1, round(p * (t - 1))) if t > 1 else 0
    replaced = np.zeros(t, dtype=bool)
    replaced[order[:k]] = True
    source = np.arange(t)
    for i in range(1, t):  # a run of replaced frames freezes on the last frame shown before it
        if replaced[i]:
            source[i] = source[i - 1]
    return frames[source]


# ----------------------------------------------------------------------------------------------
# Compression (paper): the real encoders, decoded back with the suite's reader.


# x264 clamps CRF to 51 (its maximum for 8-bit video): the paper's "CRF 63" is encoded as CRF 51
# by ffmpeg + x264 - we checked that -crf 63 and -crf 51 give byte-identical files - so the last
# level is written as 51, which is what the paper's videos actually got.
@_register("h264", "compression", (24, 36, 48, 51), default=True)
def _h264(frames, fps, crf, rng, opts):
    args = ["-c:v", "libx264", "-preset", "fast", "-crf", f"{crf:g}", "-threads", "1"]
    return _codec_roundtrip(frames, fps, args, ".mp4")


_X265_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
                 "veryslow", "placebo")  # fmt: skip


# The paper uses preset "veryslow"; it is kept configurable (h265_preset=) and defaults to
# "medium", x265's own default: veryslow took 3.7x the time of medium on a 144p test clip (and
# single-threaded, see below) for a picture within about 3-6 VMAF of it at these CRFs. A faithful
# reproduction config passes "veryslow".


@_register("h265", "compression", (36, 40, 44, 48), default=True)
def _h265(frames, fps, crf, rng, opts):
    # pools=1 and frame-threads=1: x265's output depends on its thread layout, which otherwise
    # follows the machine's core count.
    params = "log-level=error:pools=1:frame-threads=1:lookahead-slices=0"
    args = ["-c:v", "libx265", "-preset", opts.get("h265_preset", "medium"), "-crf", f"{crf:g}"]
    return _codec_roundtrip(frames, fps, [*args, "-tag:v", "hvc1", "-x265-params", params], ".mp4")


# ----------------------------------------------------------------------------------------------
# Extra families (default=False): distortions the paper's student never sees in training.


# VP9 (libvpx) at constant quality, CRF 0-63: from a soft picture to the encoder's worst.
@_register("vp9", "codec", (40, 48, 56, 63), default=False)
def _vp9(frames, fps, crf, rng, opts):
    args = ["-c:v", "libvpx-vp9", "-crf", f"{crf:g}", "-b:v", "0", "-deadline", "good"]
    args += ["-cpu-used", "4", "-threads", "1", "-row-mt", "0"]
    return _codec_roundtrip(frames, fps, args, ".webm")


# AV1 (libaom, the reference encoder) at constant quality, CRF 0-63: its in-loop filters (CDEF,
# loop restoration) smear detail rather than block it, unlike the paper's two codecs. cpu-used 8
# is libaom's fastest; these are distortions, not an efficiency test.
@_register("av1", "codec", (40, 48, 56, 63), default=False)
def _av1(frames, fps, crf, rng, opts):
    args = ["-c:v", "libaom-av1", "-crf", f"{crf:g}", "-b:v", "0", "-cpu-used", "8"]
    args += ["-threads", "1", "-row-mt", "0"]
    return _codec_roundtrip(frames, fps, args, ".mkv")


# Frame-rate reduction: keep every k-th frame and hold it (25 fps -> 12.5, 8.3, 6.25, 4.2 fps).
@_register("framerate", "frame_rate", (2, 3, 4, 6), default=False)
def _framerate(frames, fps, k, rng, opts):
    t = len(frames)
    return frames[(np.arange(t) // int(k)) * int(k)]


# Contrast reduction toward each frame's mean grey: a flat, hazy picture (bad exposure, cheap
# screens, veiling glare). c is the fraction of contrast removed.
@_register("contrast", "colour", (0.1, 0.2, 0.3, 0.4), default=False)
def _contrast(frames, fps, c, rng, opts):
    x = frames.astype(np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)  # (T, 1, 1, 1)
    return _to_uint8(mean + (1.0 - c) * (x - mean))


# Transmission errors: packets lost on the way. Each picture is coded as 4 slices (horizontal
# bands), one slice per packet as in RTP streaming; a fraction of the slices is dropped, the decoder
# conceals the holes (motion-guessed copies from the previous picture), and the damage drifts
# until the next keyframe. One random order of slices per seed, so levels nest. (A picture's
# first slice, its top band, always arrives: see _droppable_slices.) Losing bytes inside
# a slice instead (bit errors) was tried first: CABAC garbage versus concealment made more errors
# score better about half the time, so the level did not mean more damage.
@_register("packet_loss", "transmission", (0.05, 0.1, 0.2, 0.4), default=False)
def _packet_loss(frames, fps, fraction, rng, opts):
    t = len(frames)
    padded, (h, w) = _pad_even(frames)
    ph, pw = padded.shape[1:3]
    with tempfile.TemporaryDirectory(prefix="w2svqa_loss_") as tmp:
        path = Path(tmp) / "clip.h264"  # Annex B elementary stream: NAL units after start codes
        args = ["-c:v", "libx264", "-preset", "fast", "-crf", "18", "-threads", "1"]
        args += ["-x264-params", "slices=4", "-f", "h264"]
        nals = _split_nal_units(encode_frames(padded, fps, path, args).read_bytes())
        droppable = _droppable_slices(nals)
        order = rng.permutation(droppable)
        lost = set(order[: max(1, round(fraction * len(order)))].tolist()) if len(order) else set()
        path.write_bytes(
            b"".join(b"\x00\x00\x00\x01" + n for i, n in enumerate(nals) if i not in lost)
        )
        raw = run_ffmpeg(
            ["-threads", "1", "-f", "h264", "-i", file_url(path), "-f", "rawvideo", "-pix_fmt",
             "rgb24", "-frames:v", str(t), "pipe:1"]
        )  # fmt: skip
    out = np.frombuffer(raw, dtype=np.uint8)
    out = out[: (out.size // (ph * pw * 3)) * ph * pw * 3].reshape(-1, ph, pw, 3)
    if len(out) < t:  # a picture the decoder could not rebuild: a player holds the last one shown
        out = np.concatenate([out, np.repeat(out[-1:], t - len(out), axis=0)])
    return np.ascontiguousarray(out[:, :h, :w])


def _split_nal_units(stream: bytes) -> list[bytes]:
    """The NAL units of an Annex B stream, without their start codes."""
    data = np.frombuffer(stream, dtype=np.uint8)
    starts = np.flatnonzero((data[:-3] == 0) & (data[1:-2] == 0) & (data[2:-1] == 1)) + 3
    ends = np.append(starts[1:] - 3, len(data))
    # A 4-byte start code leaves its leading zero at the end of the previous unit: strip it.
    return [stream[s:e].rstrip(b"\x00") for s, e in zip(starts, ends, strict=True)]


def _droppable_slices(nals: list[bytes]) -> np.ndarray:
    """Indices of slices that may be lost: not in the first picture, not a picture's first slice.

    The first picture (and the parameter sets) arrive, as after a clean channel change; a picture's
    first slice (first_mb_in_slice = 0, coded as the single bit 1) always arrives, so the decoder
    still sees every picture and the frame count is kept."""
    picture = -1
    keep: list[int] = []
    for i, nal in enumerate(nals):
        if len(nal) > 1 and nal[0] & 0x1F in (1, 5):  # coded slice, non-IDR or IDR
            if nal[1] & 0x80:
                picture += 1
            elif picture >= 1:
                keep.append(i)
    return np.array(keep, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Plumbing


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _pad_even(frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Edge-replicate to even height and width (4:2:0 needs it); returns the original size."""
    h, w = frames.shape[1:3]
    pad = ((0, 0), (0, h % 2), (0, w % 2), (0, 0))
    return (np.pad(frames, pad, mode="edge") if h % 2 or w % 2 else frames), (h, w)


def _codec_roundtrip(
    frames: np.ndarray, fps: float, args: Sequence[str], suffix: str
) -> np.ndarray:
    """Encode with the real encoder into a temporary file and decode it back, cropped to size."""
    padded, (h, w) = _pad_even(frames)
    with tempfile.TemporaryDirectory(prefix="w2svqa_codec_") as tmp:
        path = encode_frames(padded, fps, Path(tmp) / f"clip{suffix}", args)
        with VideoReader(path) as reader:
            if len(reader) != len(frames):
                raise RuntimeError(f"{args[1]} returned {len(reader)} of {len(frames)} frames")
            out = reader.get_frames(np.arange(len(frames)))
    return np.ascontiguousarray(out[:, :h, :w])


DISTORTIONS: dict[str, DistortionType] = {name: dt for name, (dt, _) in _REGISTRY.items()}


def list_distortions(default_only: bool = False) -> list[DistortionType]:
    """All registered types (or only the paper's nine), in registration order."""
    return [d for d in DISTORTIONS.values() if d.default or not default_only]


def apply_distortion(
    frames: np.ndarray,
    fps: float,
    name: str,
    level: int,
    seed: int = 0,
    *,
    h265_preset: str = "medium",
) -> np.ndarray:
    """`frames` (uint8 `(T, H, W, 3)`) with distortion `name` at 0-based `level`; same shape."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
        raise ValueError(
            f"frames must be a uint8 numpy array, got {getattr(frames, 'dtype', type(frames))}"
        )
    if frames.ndim != 4 or frames.shape[-1] != 3 or 0 in frames.shape:
        raise ValueError(
            f"frames must have shape (T, H, W, 3) with T, H, W > 0, got {frames.shape}"
        )
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown distortion {name!r}; known: {', '.join(DISTORTIONS)}")
    if h265_preset not in _X265_PRESETS:
        raise ValueError(f"unknown h265_preset {h265_preset!r}; known: {', '.join(_X265_PRESETS)}")
    kind, fn = _REGISTRY[name]
    if not isinstance(level, (int, np.integer)) or not 0 <= level < len(kind.levels):
        raise ValueError(f"level {level!r} out of range for {name!r}: 0..{len(kind.levels) - 1}")
    rng = np.random.default_rng(seed)
    out = fn(np.ascontiguousarray(frames), float(fps), kind.levels[level], rng,
             {"h265_preset": h265_preset})  # fmt: skip
    if out.shape != frames.shape or out.dtype != np.uint8:  # a broken type, not bad input
        raise RuntimeError(f"{name} returned {out.dtype} {out.shape} for {frames.shape}")
    return out


def apply_chain(
    frames: np.ndarray,
    fps: float,
    steps: Sequence[tuple[str, int]],
    seed: int = 0,
    **kwargs: str,
) -> np.ndarray:
    """Apply `(name, level)` steps in order; each step gets its own seed derived from `seed`."""
    for i, (name, level) in enumerate(steps):
        # Distinct streams per step: two noise steps in a chain must not add the same noise twice.
        step_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        frames = apply_distortion(frames, fps, name, level, step_seed, **kwargs)
    return frames
