"""A table of videos (`video_id`, `path`) from a folder, a parquet/CSV table or DOVER `labels.txt`.

The video id is stable: a table's own `video_id` column where it has one, else the path relative
to the folder or table it came from (posix, with extension), which survives moving the whole pool.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from datamodules.errors import UserError

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg", ".ts",
     ".3gp", ".y4m", ".ogv"}
)  # fmt: skip


class VideoTableError(UserError, ValueError):
    """A video source (folder or table) cannot be read; the message names it and says why."""


def load_videos(source: str | os.PathLike) -> pd.DataFrame:
    """`video_id`, `path` for every video of a folder (recursive) or a table file.

    Folders: files with a video extension, symlinked folders not followed (no loops), sorted;
    a name that is not valid UTF-8 (no table can store it) and a folder that cannot be listed are
    skipped with a warning.
    Tables: `.parquet` or `.csv` with a `path` column (and optionally `video_id`), a pair table
    (the videos of both sides), or a DOVER-style `.txt` (`path, a, t, score` per line); relative
    paths are relative to the table's folder."""
    source = Path(source)
    if source.is_dir():
        table = _scan_folder(source)
    elif source.is_file():
        table = _read_table(source)
    else:
        raise VideoTableError(f"{source}: no such folder or table")
    if table.empty:
        raise VideoTableError(f"{source}: holds no videos")
    dupes = table.video_id[table.video_id.duplicated()].unique()
    if len(dupes):
        raise VideoTableError(f"{source}: duplicate video ids, e.g. {', '.join(dupes[:3])}")
    return table.reset_index(drop=True)


def _scan_folder(root: Path) -> pd.DataFrame:
    rows, undecodable, unlisted = [], [], []
    for folder, dirs, files in os.walk(root, followlinks=False, onerror=unlisted.append):
        dirs.sort()
        for name in sorted(files):
            path = Path(folder) / name
            if path.suffix.lower() not in VIDEO_EXTENSIONS:
                continue
            if not _is_utf8(str(path)):
                undecodable.append(_printable(path.relative_to(root).as_posix()))
                continue
            rows.append((path.relative_to(root).as_posix(), str(path)))
    if unlisted:  # os.walk would skip a folder it may not read without a word
        warnings.warn(
            f"{root}: could not list {len(unlisted)} folder(s), their videos are left out: "
            + ", ".join(f"{err.filename} ({err.strerror})" for err in unlisted[:3]),
            stacklevel=3,
        )
    if undecodable:  # one odd name must not stop a pool of thousands from being listed
        warnings.warn(
            f"{root}: skipped {len(undecodable)} video(s) whose names are not valid UTF-8 "
            f"(parquet and CSV tables cannot store them; rename them): "
            f"{', '.join(undecodable[:3])}",
            stacklevel=3,
        )
    return pd.DataFrame(rows, columns=["video_id", "path"])


def _is_utf8(name: str) -> bool:
    # Python decodes undecodable bytes of a file name to lone surrogates (PEP 383).
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _printable(name: str) -> str:
    """The name with its undecodable bytes written as \\xNN escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


LABEL_COLUMNS = ("mos", "score", "vmaf")  # looked for in this order when no label column is named


def load_labelled_videos(source: str | os.PathLike, label: str | None = None) -> pd.DataFrame:
    """`video_id`, `path`, `mos` from a labelled table: `.parquet`/`.csv` with a `path` column and
    the label column `label` (default: the first of mos, score, vmaf), or a DOVER `labels.txt`."""
    source = Path(source)
    if not source.is_file():
        raise VideoTableError(f"{source}: no such label table")
    table = _read_table(source, label=label or "auto")
    if table.empty:
        raise VideoTableError(f"{source}: holds no videos")
    bad = table.mos.isna()
    if bad.any():
        raise VideoTableError(
            f"{source}: {int(bad.sum())} rows without a numeric label, e.g. "
            f"{', '.join(table.path[bad].head(3))}"
        )
    return table.reset_index(drop=True)


def _read_table(path: Path, label: str | None = None) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            table = pd.read_parquet(path)
        elif suffix == ".csv":
            table = pd.read_csv(path)
        elif suffix == ".txt":
            cols = [0, 3] if label else [0]  # DOVER: path, a, t, score
            table = pd.read_csv(path, header=None, sep=r",\s*", engine="python", usecols=cols)
            table.columns = ["path", "mos"][: len(cols)]
            label = "mos" if label else None
        else:
            raise VideoTableError(f"{path}: not a folder, .parquet, .csv or labels .txt")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        if isinstance(err, VideoTableError):
            raise
        raise VideoTableError(f"{path}: cannot read as a table ({err})") from err
    if "path" not in table.columns and {"first_path", "second_path"} <= set(table.columns):
        table = pair_table_videos(table)
    if "path" not in table.columns:
        raise VideoTableError(f"{path}: no 'path' column (columns: {', '.join(table.columns)})")
    given = table["path"].astype(str)
    resolved = [str(p if Path(p).is_absolute() else path.parent / p) for p in given]
    ids = table["video_id"].astype(str) if "video_id" in table.columns else given
    out = pd.DataFrame({"video_id": ids.to_numpy(), "path": resolved})
    if label is not None:
        column = _label_column(path, table, label)
        out["mos"] = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float)
    return out


def pair_table_videos(pairs: pd.DataFrame) -> pd.DataFrame:
    """The distinct videos of a pair table (both sides), e.g. synthetic renditions to score."""
    sides = [
        pairs[[f"{side}_id", f"{side}_path"]].set_axis(["video_id", "path"], axis=1)
        for side in ("first", "second")
    ]
    return pd.concat(sides, ignore_index=True).drop_duplicates("video_id")


def _label_column(path: Path, table: pd.DataFrame, label: str) -> str:
    if label != "auto":
        if label not in table.columns:
            raise VideoTableError(
                f"{path}: no label column {label!r} (columns: {', '.join(table.columns)})"
            )
        return label
    for name in LABEL_COLUMNS:
        if name in table.columns:
            return name
    raise VideoTableError(
        f"{path}: no label column; expected one of {', '.join(LABEL_COLUMNS)} "
        f"(columns: {', '.join(table.columns)}); name yours with `label`"
    )
