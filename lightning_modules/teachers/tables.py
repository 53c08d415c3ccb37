"""Score-table teachers: scores that another tool already wrote, looked up by video path.

This is how users bring the paper's real teachers (DOVER, FAST-VQA, anything else) without running
them here. Formats, as the tools write them (reference/datasets.md):
- `dover_csv`: DOVER's `evaluate_a_set_of_videos.py` output, a header
  `path, aesthetic score, technical score, overall/final score` (older versions: `overall score`)
  then one `path, a, t, o` line per video, with or without a space after each comma.
- `labels_txt`: DOVER's and FAST-VQA's list format, `relative/path.mp4, a, t, score`, no header.
- `fastvqa`: the same as `labels_txt`. FAST-VQA writes no per-video table of its own: `vqa.py`
  prints one score per run without the path, and its test scripts only print correlations; the
  lists its loaders read, and that its users write predictions back into, are `labels.txt`.
- `generic`: a CSV of `path, score` (quoted fields allowed), with or without a header row; columns
  chosen by header name or by 0-based number.

The tools split on commas without quoting, so `dover_csv`, `labels_txt` and `fastvqa` lines must
have exactly four fields. A table is read and checked when the teacher is created: a missing file,
wrong columns, or a score that is not a finite number fail there, naming the file and line.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from datamodules._label_files import is_number
from lightning_modules.teachers.base import Teacher, VideoItem, register_teacher

TableFormat = Literal["dover_csv", "fastvqa", "labels_txt", "generic"]
DOVER_COLUMNS = ("aesthetic", "technical", "overall")


class ScoreNotFoundError(KeyError):
    """A video cannot be looked up in a score table (absent, or its file name is ambiguous)."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


@dataclass(frozen=True)
class _Row:
    line: int  # 1-based line in the table file, for messages
    path: str  # as written in the table
    score: float


@register_teacher("score_table")
class ScoreTableTeacher(Teacher):
    """Looks each video's score up in a table that another tool wrote; decodes nothing.

    A video matches a row by path (both made relative to `root` where they lie under it; rows
    written relative are taken as relative to `root`), else by file name stem, because DOVER
    writes the paths it was given and users' pools usually live elsewhere. A stem shared by two
    rows cannot be resolved that way and fails naming both rows."""

    def __init__(
        self,
        table: str | os.PathLike,
        format: TableFormat = "generic",
        name: str | None = None,
        score_column: str | int | None = None,
        path_column: str | int | None = None,
        higher_is_better: bool = True,
        root: str | os.PathLike | None = None,
    ) -> None:
        """
        Args:
            table: the score table file.
            format: `dover_csv`, `fastvqa`, `labels_txt` or `generic` (see the module docstring).
            name: the teacher's name in score tables and the ensemble; default: the file's stem
                (with the score column appended where one is chosen).
            score_column: `dover_csv`: `aesthetic`, `technical` or `overall` (default), or a
                header name; `generic`: a header name (default `score`) or a 0-based column
                number (default 1 in a table without header). Not used by the other formats.
            path_column: `generic` only: header name (default `path`) or column number (default 0).
            higher_is_better: False for tables of lower-is-better values (flipped by `to_score`).
            root: the folder the table's relative paths are relative to; paths under it match
                whatever folder they were written from.
        """
        self.table = Path(table)
        self.format = format
        self.root = Path(root) if root is not None else None
        self.higher_is_better = higher_is_better
        if format not in ("dover_csv", "fastvqa", "labels_txt", "generic"):
            raise ValueError(f"{self.table}: unknown score table format {format!r}")
        if path_column is not None and format != "generic":
            raise ValueError(f"{self.table}: path_column applies to the generic format only")
        if score_column is not None and format in ("fastvqa", "labels_txt"):
            raise ValueError(f"{self.table}: {format} has one score column; drop score_column")
        lines = _read_lines(self.table)
        if format == "dover_csv":
            rows = _parse_dover(self.table, lines, score_column)
        elif format == "generic":
            rows = _parse_generic(self.table, lines, path_column, score_column)
        else:
            rows = _parse_fixed(self.table, lines, 4, 3, "path, a, t, score")
        if not rows:
            raise ValueError(f"{self.table}: holds no scores")
        self.name = name or self.table.stem + (
            f":{score_column}" if score_column is not None else ""
        )
        self._by_key: dict[str, _Row] = {}
        self._by_stem: dict[str, list[_Row]] = {}
        for row in rows:
            key = self._key(row.path, row=True)
            seen = self._by_key.get(key)
            if seen is not None:
                if seen.score != row.score:
                    raise ValueError(
                        f"{self.table}:{row.line}: {row.path} is listed again with another score "
                        f"(line {seen.line}: {seen.score}, line {row.line}: {row.score})"
                    )
                continue
            self._by_key[key] = row
            self._by_stem.setdefault(_stem(row.path), []).append(row)

    def __len__(self) -> int:
        return len(self._by_key)

    def score_native(self, item: VideoItem) -> float:
        """The table's value for `item`; `ScoreNotFoundError` (a KeyError) where it has none."""
        row = self._by_key.get(self._key(item.path))
        if row is not None:
            return row.score
        stem = _stem(item.path)
        candidates = self._by_stem.get(stem, [])
        if len(candidates) > 1:
            a, b = candidates[:2]
            raise ScoreNotFoundError(
                f"{self.name}: {item.path} matches no path in {self.table}, and its file name "
                f"{stem!r} is ambiguous there: line {a.line} ({a.path}) and line {b.line} "
                f"({b.path}); set `root` so that paths match"
            )
        if not candidates:
            where = f" relative to root {self.root}" if self.root else ""
            raise ScoreNotFoundError(
                f"{self.name}: video {item.video_id} ({item.path}) is not in {self.table} "
                f"(looked up by path{where} and by file name {stem!r})"
            )
        return candidates[0].score

    def _key(self, path: str, row: bool = False) -> str:
        # Normalised so that `./a/b.mp4`, `a//b.mp4` and `/root/a/b.mp4` (root=/root) agree. A
        # row written relative is relative to root already; a video's relative path is relative
        # to the working folder.
        p = Path(os.path.normpath(path))
        if self.root is not None and (p.is_absolute() or not row):
            root = Path(os.path.abspath(self.root))
            absolute = Path(os.path.abspath(p))
            if absolute.is_relative_to(root):
                p = absolute.relative_to(root)
        return p.as_posix()


def _stem(path: str) -> str:
    return Path(path.replace("\\", "/")).stem


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; a missing or unreadable file fails here."""
    if not path.is_file():
        raise ValueError(f"{path}: no such score table")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the score table ({err})") from err
    return [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _score(table: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{table}:{line}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{table}:{line}: score is {text.strip()}, not a finite number")
    return value


def _row(table: Path, line: int, path: str, score: str) -> _Row:
    if not path:
        raise ValueError(f"{table}:{line}: empty path")
    return _Row(line, path, _score(table, line, score))


def _parse_fixed(
    table: Path, lines: list[tuple[int, str]], n_fields: int, score_at: int, layout: str
) -> list[_Row]:
    rows = []
    for n, line in lines:
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != n_fields:
            raise ValueError(
                f"{table}:{n}: expected {n_fields} comma-separated fields ({layout}), "
                f"found {len(fields)}"
            )
        rows.append(_row(table, n, fields[0], fields[score_at]))
    return rows


def _parse_dover(
    table: Path, lines: list[tuple[int, str]], score_column: str | int | None
) -> list[_Row]:
    if not lines:
        return []
    n, header_line = lines[0]
    header = [f.strip() for f in header_line.split(",")]
    if len(header) != 4 or header[0].lower() != "path":
        raise ValueError(
            f"{table}:{n}: expected DOVER's header 'path, aesthetic score, technical score, "
            f"overall score', found {header_line!r}"
        )
    at = _column(table, n, header, "overall" if score_column is None else score_column)
    if at == 0:
        raise ValueError(f"{table}:{n}: the score column cannot be the path column")
    return _parse_fixed(table, lines[1:], 4, at, ", ".join(header))


def _parse_generic(
    table: Path,
    lines: list[tuple[int, str]],
    path_column: str | int | None,
    score_column: str | int | None,
) -> list[_Row]:
    # One line at a time, so that a stray quote cannot swallow the lines after it.
    records = [next(csv.reader([line], skipinitialspace=True)) for _, line in lines]
    if not records:
        return []
    # A header is a first row without any number in it; a data row always has its score.
    has_header = not any(is_number(f) for f in records[0])
    n_fields, first = len(records[0]), lines[0][0]
    if has_header:
        header = [f.strip() for f in records[0]]
        path_at = _column(table, first, header, "path" if path_column is None else path_column)
        score_at = _column(table, first, header, "score" if score_column is None else score_column)
        body = list(zip(lines[1:], records[1:], strict=True))
    else:
        named = [c for c in (path_column, score_column) if isinstance(c, str)]
        if named:
            raise ValueError(
                f"{table}: has no header row, so column {named[0]!r} cannot be found; "
                "give path_column and score_column as 0-based column numbers"
            )
        header = [str(i) for i in range(n_fields)]
        path_at = _column(table, first, header, 0 if path_column is None else path_column)
        score_at = _column(table, first, header, 1 if score_column is None else score_column)
        body = list(zip(lines, records, strict=True))
    if path_at == score_at:
        raise ValueError(f"{table}: the path and score columns are the same column")
    rows = []
    for (n, _), fields in body:
        if len(fields) != n_fields:
            raise ValueError(f"{table}:{n}: expected {n_fields} fields, found {len(fields)}")
        rows.append(_row(table, n, fields[path_at].strip(), fields[score_at]))
    return rows


def _column(table: Path, line: int, header: list[str], column: str | int) -> int:
    """Index of `column` (a 0-based number, a header name, or a name's first word: `overall`
    finds `overall/final score`) in `header`."""
    if isinstance(column, int):
        if not 0 <= column < len(header):
            raise ValueError(f"{table}:{line}: no column {column}; the table has {len(header)}")
        return column
    wanted = column.strip().lower()
    names = [h.lower() for h in header]
    if wanted in names:
        return names.index(wanted)
    prefixed = [i for i, h in enumerate(names) if h.startswith(wanted)]
    if len(prefixed) == 1:
        return prefixed[0]
    raise ValueError(f"{table}:{line}: no column {column!r}; columns: {', '.join(header)}")
