"""Benchmark VQA datasets, read from their official label files exactly as distributed.

`load_dataset(name, root)` finds the dataset's label file under `root`, reads it, finds each listed
video on disk and returns a table `video_id, path, mos, mos01`:

- `mos` is the score as published; `mos01 = (mos - low) / (high - low)` with the dataset's native
  scale `DatasetSpec.mos_range`, not clipped: a score outside the nominal scale (CVD2014 has a few
  negative ones) stays outside [0, 1] rather than being hidden.
- `video_id` is the name the label file gives (LSVQ `yfcc-batch1/747`, KoNViD-1k `flickr_id`,
  YouTube-UGC `vid`, a relative path for path lists): stable wherever the videos are kept.
- The label file's format is found from its content (`_label_files.sniff`), not its name; each
  dataset reads the formats in `DatasetSpec.formats` (the official ones and those public code
  ships, e.g. VSFA-style `*info.mat`), and any other is a DatasetError naming both.
- A listed name without a video extension matches any video extension (.mp4 first); one with an
  extension that is not on disk also matches `<name>.<ext>` (LSVQ lists `ia-batch2/x.mov` for the
  file `x.mov.mp4`). An absolute path from another machine is matched by its trailing components.
  Datasets whose folder layout varies between copies (`DatasetSpec.by_name`) also find a video by
  file name anywhere under the root when it is not where the label file implies.
- `read_splits` reads the published train/test permutations (`index`) of a VSFA-style .mat, so
  that fine-tuning can use the splits papers report on.
- Videos listed but not on disk are left out and named in `missing` (one warning). Rows that cannot
  be used (no MOS or one that is not a number, a name listed twice, a path that leaves the dataset
  folder, a name found in several places) are left out and described in `problems` (one warning).
  A label file that cannot be read, or a set with no video on disk, is a DatasetError.

Paths are checked lexically (`..`, absolute paths): a symlinked folder inside the root is followed.
"""

from __future__ import annotations

import inspect
import math
import numbers
import os
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from datamodules._label_files import (
    FORMATS,
    DatasetError,
    cell_text,
    column,
    mat_strings,
    read_csv,
    read_mat,
    read_xlsx,
    rel_path,
    sniff,
    tails,
    text_lines,
)
from datamodules.video_table import VIDEO_EXTENSIONS

# A name without extension is completed in this order: the common containers first.
_EXT_ORDER = (".mp4", ".mkv", ".webm", ".mov", ".avi")
_EXT_ORDER += tuple(sorted(VIDEO_EXTENSIONS - set(_EXT_ORDER)))
_EXT_RANK = {ext: i for i, ext in enumerate(_EXT_ORDER)}


class _Row(NamedTuple):
    where: str  # where the label file has it: "line 5", "row 5" (xlsx), "entry 5" (.mat)
    video_id: str
    names: tuple[str, ...]  # relative paths to try, in order
    mos: object  # as read; made a number (or a problem) in one place, `_usable`
    # Names to look for by file name anywhere under the root (`DatasetSpec.by_name`); None: all.
    # Not a path's file name where several folders hold that name (Waterloo-IVC-4K's encoders).
    by_name: tuple[str, ...] | None = None


_Read = Callable[..., tuple[list[_Row], list[str]]]


@dataclass(frozen=True)
class DatasetSpec:
    """One benchmark dataset: its native MOS scale, its official label files, its folder layout."""

    name: str
    mos_range: tuple[float, float] | None
    """Native MOS scale (low, high); None where the format has none (give `mos_range=`)."""
    description: str
    label_files: tuple[str, ...]
    """Label files looked for under the root, in this order, when `labels` is not given."""
    formats: dict[str, _Read] = field(repr=False, compare=False)
    """The reader of each format it accepts (keys of `_label_files.FORMATS`), official first."""
    video_dirs: tuple[str, ...] = ("",)
    """Folders under the root where the videos usually are, tried in this order."""
    by_name: bool = False
    """Find a video by file name anywhere under the root when it is not where expected."""


@dataclass(frozen=True)
class LoadedDataset:
    """A dataset's usable videos, plus what was listed but left out and why."""

    name: str
    table: pd.DataFrame  # video_id, path, mos, mos01; in label-file order
    missing: list[str]  # video ids listed but not on disk
    problems: list[str]  # rows left out: "<label file>: <where> (<id>): <reason>; left out"
    labels: Path  # the label file that was read


# ---------------------------------------------------------------------------------------------
# One reader per format. Each returns (rows, problems found while parsing).


def _with_ext(name: str, ext: str) -> str:
    return name if Path(name).suffix.lower() in VIDEO_EXTENSIONS else name + ext


def _read_mat_list(path: Path, names: str, scores: str) -> tuple[list[_Row], list[str]]:
    data = read_mat(path)
    for var in (names, scores):
        if var.lower() not in data:
            raise DatasetError(f"{path}: no {var!r} variable (variables: {', '.join(data)})")
    listed = mat_strings(data[names.lower()])
    mos = np.asarray(data[scores.lower()]).ravel()
    if len(listed) != len(mos):
        raise DatasetError(f"{path}: {len(listed)} names in {names!r} but {len(mos)} in {scores!r}")
    pairs = enumerate(zip(listed, mos, strict=True), 1)
    return [_Row(f"entry {i}", n, (n,), m) for i, (n, m) in pairs], []


# How a name listed in a VSFA-style .mat becomes (video id, paths to try): the id is the one the
# dataset's official file gives, so that labels, splits and predictions from either file agree.
_Names = Callable[[str], tuple[str, tuple[str, ...]]]
_UGC_H264 = "_crf_10_ss_00_t_20.0"  # YouTube-UGC's H.264 transcodes: <vid>_crf_10_ss_00_t_20.0.mp4


def _as_listed(name: str) -> tuple[str, tuple[str, ...]]:
    paths = tails(name)
    return (paths[0] if len(paths) == 1 else os.path.basename(paths[0])), paths


def _konvid_names(name: str) -> tuple[str, tuple[str, ...]]:
    """`3337642103.mp4`, `3337642103_original_centercrop_960x540_8s.mp4` or `3337642103`: the id
    is the flickr_id, the leading digits."""
    paths = tails(name)
    stem = Path(paths[0]).stem
    flickr = re.match(r"\d+", stem)
    vid = flickr[0] if flickr else stem
    return vid, (*paths, vid)


def _ugc_names(name: str) -> tuple[str, tuple[str, ...]]:
    """`Animation_1080P-01b3` (with or without extension, or the transcode's name): the id is
    the `vid`; the original and the transcode are both tried."""
    paths = tails(name)
    base = os.path.basename(paths[0])
    vid = Path(base).stem if Path(base).suffix.lower() in VIDEO_EXTENSIONS else base
    vid = vid.removesuffix(_UGC_H264)
    return vid, (*paths, vid, vid + _UGC_H264)


def _cvd2014_names(name: str) -> tuple[str, tuple[str, ...]]:
    """`Test1/City/Test01_City_D01.avi` (VSFA's CVD2014info.mat): the id is the File_name."""
    paths = tails(name)
    base = os.path.basename(paths[0])
    return Path(base).stem, (*paths, base)


def _info_mat(path: Path) -> tuple[dict[str, object], list[str], np.ndarray]:
    data = read_mat(path)
    listed = mat_strings(data["video_names"])
    scores = np.asarray(data["scores"]).ravel()  # N x 1 or 1 x N
    if len(listed) != len(scores):
        raise DatasetError(
            f"{path}: {len(listed)} names in 'video_names' but {len(scores)} in 'scores'"
        )
    return data, listed, scores


def _read_info_mat(path: Path, names: _Names = _as_listed) -> tuple[list[_Row], list[str]]:
    """A VSFA-style `<dataset>info.mat` (the layout most public VQA code builds its datasets
    from): `video_names` (cell array of names, relative or absolute paths), `scores` (N x 1 or
    1 x N, as the file's maker scaled them) and usually `index`, `ref_ids` (`read_splits`)."""
    _, listed, scores = _info_mat(path)
    return [_Row(f"entry {i}", *names(n), m) for i, (n, m) in
            enumerate(zip(listed, scores, strict=True), 1)], []  # fmt: skip


def _read_lsvq(path: Path) -> tuple[list[_Row], list[str]]:
    """LSVQ_whole_{train,test,test_1080p}.csv: `name` (no extension, e.g. `yfcc-batch1/747`) and
    `mos` among the patch columns; the video is `<root>/<name>.mp4`, also where the name has an
    extension of its own (`ia-batch2/x.mov` is `x.mov.mp4`: `_matches` completes it)."""
    header, rows, _ = read_csv(path)
    name, mos = column(path, header, "name"), column(path, header, "mos")
    return [_Row(w, rel_path(r[name]), (rel_path(r[name]),), r[mos]) for w, r in rows], []


def _read_konvid(path: Path) -> tuple[list[_Row], list[str]]:
    """KoNViD_1k_mos.csv (`flickr_id, mos`; video `<flickr_id>.mp4`) or KoNViD_1k_attributes.csv
    (`flickr_id, ..., file_name, MOS, ...`; older copies name the video `file_name`). The id is the
    flickr_id either way."""
    header, rows, _ = read_csv(path)
    flickr, mos = column(path, header, "flickr_id"), column(path, header, "mos")
    file = column(path, header, "file_name", required=False)
    out = []
    for where, r in rows:
        names = (r[file], r[flickr]) if file and r[file] else (r[flickr],)
        out.append(_Row(where, r[flickr], names, r[mos]))
    return out, []


def _read_youtube_ugc(path: Path, sheet: str = "MOS") -> tuple[list[_Row], list[str]]:
    """The official .xlsx (sheet `sheet`, columns `vid, category, MOS full, ...`) or its CSV mirror
    (`vid, category, resolution, MOSFull, ...`). The video is `<vid>.<ext>` (the originals, e.g.
    `.mkv`) or the H.264 transcode `<vid>_crf_10_ss_00_t_20.0.mp4`, in any folder under the root;
    where a copy holds both, choose with `videos=` (e.g. "original_videos_h264")."""
    if sniff(path) == "xlsx":
        header, rows = read_xlsx(path, sheet)
    else:
        header, rows, _ = read_csv(path)
    vid, mos = column(path, header, "vid"), column(path, header, "MOS full")
    out = []
    for where, r in rows:
        v = cell_text(r[vid])
        out.append(_Row(where, v, (v, f"{v}_crf_10_ss_00_t_20.0"), r[mos]))
    return out, []


def _read_live_vqc(path: Path) -> tuple[list[_Row], list[str]]:
    """data.mat: `video_list` (cell array, `A001.mp4` ...) and `mos`; videos in `<root>/Video/`."""
    return _read_mat_list(path, "video_list", "mos")


def _read_live_yt_gaming(path: Path) -> tuple[list[_Row], list[str]]:
    """LIVEYTGaming.mat: `video_list` (names, without extension in the copies public code reads)
    and `MOS`; videos `<name>.mp4`."""
    return _read_mat_list(path, "video_list", "MOS")


def _read_kvq(path: Path) -> tuple[list[_Row], list[str]]:
    """train_data.csv / truth.csv: a header (`filename, score`), then the relative path (e.g.
    `train/0001.mp4`) and the score; without those header names, the first two columns."""
    header, rows, _ = read_csv(path)
    if len(header) < 2:
        raise DatasetError(f"{path}: expected two columns, filename and score (got {header})")
    name = column(path, header, "filename", required=False) or header[0]
    mos = column(path, header, "score", required=False) or header[1]
    return [_Row(w, rel_path(r[name]), (rel_path(r[name]),), r[mos]) for w, r in rows], []


WATERLOO_PATTERN = "{encoder}_{video}_{resolution}_{level}"


def _read_waterloo(path: Path, pattern: str = WATERLOO_PATTERN) -> tuple[list[_Row], list[str]]:
    """scores.txt, no header: `encoder, video, resolution, distortion level, mos` per line (comma or
    blank separated). The file name is `pattern` filled with those fields (any video extension);
    the default naming is NOT verified against a real copy: set `pattern` to match yours."""
    rows, problems = [], []
    for where, line in text_lines(path):
        parts = [p.strip() for p in (line.split(",") if "," in line else line.split())]
        if len(parts) != 5:
            problems.append(
                f"{path}: {where}: expected 5 fields (encoder, video, resolution, distortion "
                f"level, mos), got {len(parts)}; left out"
            )
            continue
        name = _waterloo_name(pattern, *parts[:4])
        rows.append(_Row(where, name, (name,), parts[4]))
    return rows, problems


def _waterloo_name(pattern: str, encoder: str, video: str, resolution: str, level: str) -> str:
    try:
        return rel_path(pattern.format(encoder=encoder, video=video, resolution=resolution,
                                       level=level))  # fmt: skip
    except (KeyError, IndexError, ValueError) as err:
        raise DatasetError(
            f"pattern {pattern!r}: {err!r}; its fields are encoder, video, resolution, level"
        ) from err


_WATERLOO_COLUMNS = ("Encoder", "Video Number", "Resolution", "Distortion Level", "MOS")


def _read_waterloo_csv(path: Path, pattern: str = WATERLOO_PATTERN) -> tuple[list[_Row], list[str]]:
    """The CSV with a header, `Encoder, Video Number, Resolution, Distortion Level, MOS, path`,
    whose `path` is absolute on the machine that wrote it: the video is found under the root by
    the path's trailing components (then by file name). The id is `pattern` filled with the other
    fields, as for scores.txt, so both files give the same ids."""
    header, rows, _ = read_csv(path)
    encoder, video, resolution, level, mos = (column(path, header, c) for c in _WATERLOO_COLUMNS)
    where_is = column(path, header, "path", required=False)
    out = []
    for where, r in rows:
        name = _waterloo_name(pattern, r[encoder], r[video], r[resolution], r[level])
        listed = tails(r[where_is]) if where_is and r[where_is] else ()
        # the same file name recurs in every encoder's folder: only the path tells them apart
        out.append(_Row(where, name, (*listed, name), r[mos], by_name=(name,)))
    return out, []


def _read_cvd2014(path: Path) -> tuple[list[_Row], list[str]]:
    """CVD2014_ratings/Realignment_MOS.csv as public code reads it: `;`-separated, decimal commas,
    blank `;;;;;;;` rows, columns `File_name` (e.g. `Test01_City_D01`), `Realignment MOS` and
    `Content`; the video is `Test<n>/<Content>/<File_name>.avi`, found by name wherever it is. A
    plain CSV of `File_name, MOS` also reads."""
    header, rows, delimiter = read_csv(path)
    name = column(path, header, "File_name")
    mos = column(path, header, "Realignment MOS", "MOS")
    content = column(path, header, "Content", required=False)
    out = []
    for where, r in rows:
        file = _with_ext(r[name], ".avi")
        test = re.match(r"Test0*(\d+)_", file)
        names = []
        if test and content and r[content]:  # folders: "Talking head" may be "Talking_head"
            for folder in dict.fromkeys((r[content], re.sub(r"[:\s]", "_", r[content]))):
                names.append(f"Test{test[1]}/{folder}/{file}")
        score = r[mos].replace(",", ".") if delimiter == ";" else r[mos]
        out.append(_Row(where, r[name], (*names, file), score))
    return out, []


def _read_labels_txt(path: Path) -> tuple[list[_Row], list[str]]:
    """DOVER / FAST-VQA labels.txt: `relative/path.mp4, a, t, score` per line."""
    rows, problems = [], []
    for where, line in text_lines(path):
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 4:
            problems.append(f"{path}: {where}: expected 'path, a, t, score': {line!r}; left out")
            continue
        rows.append(_Row(where, rel_path(parts[0]), (rel_path(parts[0]),), parts[3]))
    return rows, problems


_PATH_COLUMNS = ("path", "name", "filename", "file_name", "video", "video_name")
_MOS_COLUMNS = ("mos", "score")


def _read_generic(
    path: Path, path_column: str | None = None, mos_column: str | None = None
) -> tuple[list[_Row], list[str]]:
    """A .csv or .parquet with a path column (default: the first of path, name, filename,
    file_name, video, video_name) and a score column (default: mos, then score)."""
    if sniff(path) == "parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError) as err:
            raise DatasetError(f"{path}: cannot read as parquet ({err})") from err
        header = [str(c) for c in frame.columns]
        records = frame.set_axis(header, axis=1).to_dict("records")
        rows = [(f"row {i}", r) for i, r in enumerate(records, 1)]
    else:
        header, rows, _ = read_csv(path)
    name = column(path, header, *([path_column] if path_column else _PATH_COLUMNS))
    mos = column(path, header, *([mos_column] if mos_column else _MOS_COLUMNS))
    return [
        _Row(w, rel_path(cell_text(r[name])), (rel_path(cell_text(r[name])),), r[mos])
        for w, r in rows
    ], []


def _info(names: _Names = _as_listed) -> _Read:
    return partial(_read_info_mat, names=names)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        *(
            DatasetSpec(
                f"lsvq_{split}", (0, 100), f"LSVQ {what}: `name, ..., mos, ...` CSV, 0-100",
                (f"LSVQ_whole_{split}.csv",), {"csv": _read_lsvq},
            )
            for split, what in (
                ("train", "official train list (28,056 videos)"),
                ("test", "test list (about 7,200 videos)"),
                ("test_1080p", "1080p test list (about 3,570 videos)"),
            )
        ),
        DatasetSpec(
            "konvid_1k", (1, 5), "KoNViD-1k: 1,200 Flickr videos, 960x540, 8 s; MOS 1-5",
            ("KoNViD_1k_mos.csv", "KoNViD_1k_attributes.csv",
             "KoNViD_1k_metadata/KoNViD_1k_mos.csv", "KoNViD_1k_metadata/KoNViD_1k_attributes.csv",
             "KoNViD-1kinfo.mat"),
            {"csv": _read_konvid, "info_mat": _info(_konvid_names)},
            video_dirs=("", "KoNViD_1k_videos"), by_name=True,
        ),
        DatasetSpec(
            "youtube_ugc", (1, 5), "YouTube-UGC: 1,380 videos (originals or H.264); MOS full 1-5",
            ("original_videos_MOS_for_YouTube_UGC_dataset.xlsx",
             "original_videos_MOS_for_YouTube_UGC_dataset.csv", "YouTube-UGCinfo.mat"),
            {"xlsx": _read_youtube_ugc, "csv": _read_youtube_ugc, "info_mat": _info(_ugc_names)},
            by_name=True,
        ),
        DatasetSpec(
            "live_vqc", (0, 100), "LIVE-VQC: 585 mobile captures; data.mat, MOS 0-100",
            ("data.mat", "LIVE-VQCinfo.mat"), {"mat": _read_live_vqc, "info_mat": _info()},
            video_dirs=("Video", ""), by_name=True,
        ),
        DatasetSpec(
            "live_yt_gaming", (0, 100), "LIVE-YT-Gaming: 600 gaming videos; .mat, MOS 0-100",
            ("LIVEYTGaming.mat",), {"mat": _read_live_yt_gaming, "info_mat": _info()},
            by_name=True,
        ),
        DatasetSpec(
            "kvq", (1, 5), "KVQ (NTIRE 2024 short-form): `filename, score` CSV; 1-5 (unverified)",
            ("train_data.csv", "truth.csv"), {"csv": _read_kvq},
        ),
        DatasetSpec(
            "waterloo_ivc_4k", (0, 100),
            "Waterloo-IVC-4K: 1,200 encodes; headerless scores.txt or a CSV with a header, 0-100; "
            "file naming unverified (option `pattern`)",
            ("scores.txt",), {"list": _read_waterloo, "csv": _read_waterloo_csv}, by_name=True,
        ),
        DatasetSpec(
            "cvd2014", (0, 100), "CVD2014: 234 .avi in Test<n>/<content>/; realigned MOS ~0-100",
            ("CVD2014_ratings/Realignment_MOS.csv", "Realignment_MOS.csv",
             "CVD2014_Realignment_MOS.csv", "CVD2014info.mat"),
            {"csv": _read_cvd2014, "info_mat": _info(_cvd2014_names)}, by_name=True,
        ),
        DatasetSpec(
            "labels_txt", None, "DOVER/FAST-VQA labels.txt: `path, a, t, score`; scale from you",
            ("labels.txt",), {"list": _read_labels_txt},
        ),
        DatasetSpec(
            "generic", None,
            "Any .csv/.parquet with a path and a score column, or a VSFA-style .mat; your scale",
            (), {"csv": _read_generic, "parquet": _read_generic, "info_mat": _info()},
        ),
    )
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Finding the videos


class _Finder:
    """Locates label names under `anchor`: direct paths through cached folder listings, then (if
    `by_name`) by file name through one walk of the whole tree, made only when first needed."""

    def __init__(self, anchor: Path, dirs: Sequence[str], by_name: bool):
        self.anchor = os.path.abspath(anchor)
        self.dirs = [os.path.normpath(os.path.join(self.anchor, d)) for d in dirs]
        self.by_name = by_name
        self._folders: dict[str, dict[str, list[str]]] = {}
        self._tree: dict[str, list[str]] | None = None

    def locate(
        self, names: Sequence[str], by_name: Sequence[str] | None = None
    ) -> tuple[str | None, str | None]:
        """(path, None) if found, (None, None) if not on disk, (None, why) if it is unusable.
        `by_name`: the names looked for by file name (default: `names`)."""
        for name in names:
            for base in self.dirs:
                full = os.path.normpath(os.path.join(base, name))
                if os.path.commonpath((full, self.anchor)) != self.anchor:
                    return None, f"path {name!r} leaves the dataset folder {self.anchor}"
                folder, base_name = os.path.split(full)
                hits = _matches(self._listing(folder), base_name)
                if hits:
                    return os.path.join(folder, hits[0]), None
        if self.by_name:
            for name in names if by_name is None else by_name:
                hits = _matches(self._index(), os.path.basename(name))
                if len(hits) == 1:
                    return hits[0], None
                if hits:
                    return None, (
                        f"found in several places ({', '.join(hits[:3])}); "
                        "choose the folder with videos=..."
                    )
        return None, None

    def expected(self, name: str) -> str:
        full = os.path.join(self.dirs[0], name)
        return full if Path(name).suffix.lower() in VIDEO_EXTENSIONS else full + ".mp4"

    def _listing(self, folder: str) -> dict[str, list[str]]:
        if folder not in self._folders:
            try:
                files = sorted(os.listdir(folder))
            except OSError:
                files = []
            self._folders[folder] = _by_stem(files)
        return self._folders[folder]

    def _index(self) -> dict[str, list[str]]:
        if self._tree is None:
            paths, seen = [], set()
            for folder, dirs, files in os.walk(self.anchor, followlinks=True):
                real = os.path.realpath(folder)
                if real in seen:  # a symlink loop
                    dirs.clear()
                    continue
                seen.add(real)
                dirs.sort()
                paths += [os.path.join(folder, f) for f in sorted(files)]
            self._tree = _by_stem(paths)
        return self._tree


def _by_stem(paths: Sequence[str]) -> dict[str, list[str]]:
    """Video files (by path or name) keyed by name without extension, best extension first."""
    out: dict[str, list[str]] = {}
    for p in paths:
        stem, ext = os.path.splitext(os.path.basename(p))
        if ext.lower() in _EXT_RANK:
            out.setdefault(stem, []).append(p)
    for group in out.values():
        group.sort(key=lambda p: _EXT_RANK[os.path.splitext(p)[1].lower()])
    return out


def _matches(stems: dict[str, list[str]], name: str) -> list[str]:
    """Files for `name`: itself if it has a video extension and is there, else `name.<ext>` of
    the best extension present (several only when that extension is in several folders)."""
    stem, ext = os.path.splitext(name)
    if ext.lower() in _EXT_RANK:
        exact = [p for p in stems.get(stem, []) if os.path.basename(p) == name]
        if exact or name not in stems:
            return exact
    group = stems.get(name, [])  # `name.<ext>`: also LSVQ's `x.mov` stored as `x.mov.mp4`
    rank = [_EXT_RANK[os.path.splitext(p)[1].lower()] for p in group]
    return [p for p, r in zip(group, rank, strict=True) if r == rank[0]]


# ---------------------------------------------------------------------------------------------
# The entry point


def read_labels(
    name: str, root: str | os.PathLike, labels: str | os.PathLike | None = None, **options: object
) -> tuple[Path, list, list[str]]:
    """The first half of `load_dataset`: the label file of dataset `name` under `root`, read by
    its format's reader, and its usable rows `[(row, mos)]` with the problems found (one line
    each), without looking for any video (`w2svqa evaluate --predictions` needs no videos)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such dataset folder")
    own = {kind: set(inspect.signature(read).parameters) - {"path"}
           for kind, read in spec.formats.items()}  # fmt: skip
    if unknown := sorted(set(options) - set().union(*own.values())):
        names = ", ".join(sorted(set().union(*own.values()))) or "none"
        raise DatasetError(
            f"{name}: unknown option {', '.join(unknown)} (its own: {names}; for all datasets: "
            "labels, videos, mos_range)"
        )
    path = _label_file(spec, root, labels)
    kind = _format(spec, path)
    if unused := sorted(set(options) - own[kind]):
        raise DatasetError(
            f"{path}: option {', '.join(unused)} does not apply to a {FORMATS[kind]}"
        )
    rows, problems = spec.formats[kind](path, **options)
    if not rows and not problems:
        raise DatasetError(f"{path}: lists no videos")
    usable = _usable(path, rows, problems)
    if not usable:
        raise DatasetError(f"{path}: no usable row; e.g. {problems[0]}")
    return path, usable, problems


def load_dataset(
    name: str,
    root: str | os.PathLike,
    labels: str | os.PathLike | None = None,
    *,
    videos: str | os.PathLike | None = None,
    mos_range: tuple[float, float] | None = None,
    **options: object,
) -> LoadedDataset:
    """Read dataset `name` (a key of DATASETS) whose copy is at `root`.

    labels: the label file (relative paths: under `root` first, then as given); default: the first
        of the dataset's `label_files` that exists under `root`.
    videos: the folder holding the videos (relative to `root`), instead of the dataset's usual ones.
    mos_range: the native MOS scale used for `mos01`, instead of the dataset's.
    options: the reader's own (youtube_ugc `sheet`; waterloo_ivc_4k `pattern`; generic
        `path_column`, `mos_column`)."""
    if name in DATASETS:  # a bad scale is the caller's mistake: said before any file is read
        low, high = _scale(DATASETS[name], mos_range)
    path, usable, problems = read_labels(name, root, labels, **options)
    spec, root = DATASETS[name], Path(root)

    anchor = root / videos if videos is not None else root
    finder = _Finder(anchor, ("",) if videos is not None else spec.video_dirs, spec.by_name)
    found, missing = [], []
    for row, mos in usable:
        hit, why = finder.locate(row.names, row.by_name)
        if why:
            problems.append(f"{path}: {row.where} ({row.video_id}): {why}; left out")
        elif hit is None:
            missing.append(row.video_id)
        else:
            found.append((row.video_id, str(anchor / os.path.relpath(hit, finder.anchor)), mos))
    if not found:
        raise DatasetError(
            f"{anchor}: none of the {len(usable)} videos listed in {path} is there; expected "
            f"e.g. {finder.expected(usable[0][0].names[0])}"
        )
    if missing:
        warnings.warn(
            f"{name}: {len(missing)} of {len(usable)} videos listed in {path} are not under "
            f"{anchor}, e.g. {', '.join(missing[:3])}; left out (see .missing)",
            stacklevel=2,
        )
    if problems:
        warnings.warn(
            f"{name}: {len(problems)} row(s) left out, e.g. {problems[0]} (see .problems)",
            stacklevel=2,
        )
    ids, paths, mos = zip(*found, strict=True)
    table = pd.DataFrame({"video_id": list(ids), "path": list(paths), "mos": np.array(mos)})
    table["mos01"] = (table["mos"] - low) / (high - low)
    table.attrs["dataset"] = name  # lets `finetune_protocol` read published splits by its rules
    return LoadedDataset(name, table, missing, problems, path)


def read_splits(name: str, path: str | os.PathLike) -> list[list[tuple[str, ...]]]:
    """The published random splits in a VSFA-style .mat: for each row of its `index`, the groups
    of video ids (named as `load_dataset(name, ...)` names them) in that row's order.

    `index` (R x G) holds one permutation per row of the content ids `ref_ids` (N x 1; default
    1..N, or 0..N-1 where `index` starts at 0): a group is the videos of one content, so that no
    content is in both parts. A file written with one permutation per column also reads. Which
    share of a row is tested is the protocol's choice (`experiments.finetune`)."""
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    path = Path(path)
    if (kind := sniff(path)) != "info_mat":
        raise DatasetError(
            f"{path}: a {FORMATS[kind]}; published splits are read from a {FORMATS['info_mat']}"
        )
    data, _, _ = _info_mat(path)
    if "index" not in data:
        raise DatasetError(f"{path}: no 'index' variable (variables: {', '.join(data)})")
    rows, _ = DATASETS[name].formats.get("info_mat", _read_info_mat)(path)
    index = np.atleast_2d(np.asarray(data["index"]))
    default = np.arange(len(rows)) + (0 if index.size and index.min() == 0 else 1)
    refs = np.asarray(data.get("ref_ids", default)).ravel()
    if len(refs) != len(rows):
        raise DatasetError(f"{path}: {len(rows)} videos but {len(refs)} 'ref_ids'")
    groups: dict[float, list[str]] = {}
    for ref, row in zip(refs.tolist(), rows, strict=True):
        groups.setdefault(ref, []).append(row.video_id)
    if index.shape[1] != len(groups) and index.shape[0] == len(groups):
        index = index.T  # one permutation per column
    for i, perm in enumerate(index, 1):
        if sorted(perm.tolist()) != sorted(groups):
            raise DatasetError(
                f"{path}: row {i} of 'index' ({index.shape[0]} x {index.shape[1]}) is not a "
                f"permutation of the {len(groups)} content ids of 'ref_ids' (or 1..N)"
            )
    return [[tuple(groups[ref]) for ref in perm.tolist()] for perm in index]


def _format(spec: DatasetSpec, path: Path) -> str:
    kind = sniff(path)
    if kind not in spec.formats:
        accepted = "; ".join(FORMATS[k] for k in spec.formats)
        raise DatasetError(f"{path}: a {FORMATS[kind]}; {spec.name} reads: {accepted}")
    return kind


def _scale(spec: DatasetSpec, given: tuple[float, float] | None) -> tuple[float, float]:
    scale = given if given is not None else spec.mos_range
    if scale is None:
        raise DatasetError(
            f"{spec.name}: its format has no native MOS scale; give mos_range=(low, high)"
        )
    low, high = map(float, scale)
    if not high > low:
        raise DatasetError(f"{spec.name}: mos_range {scale} is empty (high must exceed low)")
    return low, high


def _label_file(spec: DatasetSpec, root: Path, labels: str | os.PathLike | None) -> Path:
    if labels is not None:
        for path in dict.fromkeys((root / labels, Path(labels))):
            if path.is_file():
                return path
        raise DatasetError(f"{labels}: no such label file (looked under {root} and as given)")
    if not spec.label_files:
        raise DatasetError(f"{spec.name}: no default label file; name yours with labels=...")
    for rel in spec.label_files:
        if (root / rel).is_file():
            return root / rel
    raise DatasetError(
        f"{root}: no {spec.name} label file; looked for {', '.join(spec.label_files)} "
        "(name yours with labels=...)"
    )


def _number(raw: object) -> tuple[float, str | None]:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return math.nan, "no MOS"
    if isinstance(raw, numbers.Real) and not isinstance(raw, bool):
        value = float(raw)
    else:
        try:
            value = float(str(raw).strip())
        except ValueError:
            return math.nan, f"MOS {raw!r} is not a number"
    if not math.isfinite(value):
        return math.nan, f"MOS is {value}"
    return value, None


def _usable(path: Path, rows: list[_Row], problems: list[str]) -> list[tuple[_Row, float]]:
    """Rows with a name and a numeric MOS, each name once: a name listed again with the same MOS
    keeps its first row; one listed with different MOS is left out altogether (which is right?)."""
    scored = []
    for row in rows:
        mos, why = _number(row.mos) if row.video_id else (math.nan, "no video name")
        if why:
            problems.append(f"{path}: {row.where} ({row.video_id}): {why}; left out")
        else:
            scored.append((row, mos))
    groups: dict[str, list[tuple[_Row, float]]] = {}
    for row, mos in scored:
        groups.setdefault(row.video_id, []).append((row, mos))
    usable = []
    for row, mos in scored:
        group = groups[row.video_id]
        first = group[0][0]
        if len({m for _, m in group}) > 1:
            listed = ", ".join(f"{m:g} ({r.where})" for r, m in group)
            problems.append(
                f"{path}: {row.where} ({row.video_id}): listed {len(group)} times with different "
                f"MOS: {listed}; all left out"
            )
        elif row is first:
            usable.append((row, mos))
        else:
            problems.append(
                f"{path}: {row.where} ({row.video_id}): listed again (first at {first.where}); "
                "left out"
            )
    return usable
