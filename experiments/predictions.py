"""Prediction tables from any tool, matched to a dataset's label list without the videos.

This is how a paper's released predictions are checked: `w2svqa evaluate --predictions FILE`.
- Formats read: our `w2svqa score` CSV (`path, score, error`) and `evaluate`'s per-video CSVs
  (`video_id, path, mos, prediction`), DOVER's CSV (`path, aesthetic score, technical score,
  overall/final score`), DOVER/FAST-VQA `labels.txt` lines (`path, a, t, score`, no header), and any
  CSV or parquet of a name and a score (header optional). The score is the first column named
  `prediction`, `score`, `pred`, `predicted_score` or `predicted_mos`, else one starting with
  `overall` (DOVER's); a label column (`mos`) is never taken for a prediction.
- A row names its video by every name column it has (`video_id` first, then `path`, `name`, ...):
  each is tried in turn. Names match by file name without video extensions, compared without case
  (`/data/x/747.mp4`, `747` and `yfcc-batch1/747.MP4` all name LSVQ's `yfcc-batch1/747`); where one
  file name fits several labelled videos, the one sharing the most trailing folders wins, and a tie
  is ambiguous (the row is left unmatched, saying so).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from datamodules.errors import UserError
from datamodules.video_table import VIDEO_EXTENSIONS

NAME_COLUMNS = ("video_id", "path", "name", "filename", "file_name", "video", "video_name", "vid")
SCORE_COLUMNS = ("prediction", "score", "pred", "predicted_score", "predicted_mos")
NO_MATCH = "no labelled video of that name"


class PredictionError(UserError, ValueError):
    """A prediction table cannot be read; the message names the file and says why."""


@dataclass(frozen=True)
class PredictionTable:
    """One file's usable rows (`where`, `names`, `score`) and the rows left out, with why."""

    file: Path
    score_column: str
    rows: pd.DataFrame  # where ("line 5", "row 5"), names (tuple of str, tried in order), score
    skipped: list[str]  # "<where> (<name>): <why>"


def read_predictions(
    file: str | Path, score_column: str | None = None, name_column: str | None = None
) -> PredictionTable:
    """Read a prediction table (see the module docstring for the formats); rows without a finite
    score (e.g. a video our `score` failed on) are left out and listed in `skipped`."""
    file = Path(file)
    if not file.is_file():
        raise PredictionError(f"{file}: no such prediction table")
    header, records, has_header = _records(file)
    if has_header:
        names = [_pick(file, header, name_column)] if name_column else _present(header)
        score = _pick(file, header, score_column) if score_column else _score_column(file, header)
        if not names:
            raise PredictionError(
                f"{file}: no name column ({', '.join(NAME_COLUMNS)}; columns: "
                f"{', '.join(header)}); choose one with --name_column"
            )
    elif len(header) in (2, 4) and score_column is None and name_column is None:
        # no header: `name, score`, or labels.txt's `path, a, t, score`
        names, score = [header[0]], header[-1]
    else:
        raise PredictionError(
            f"{file}: no header row and {len(header)} fields a line; without a header a table is "
            "`name, score` or `path, a, t, score` (add a header to name other columns)"
        )
    rows, skipped = [], []
    for where, record in records:
        keys = tuple(k for k in (_text(record.get(c)) for c in names) if k)
        value, why = _number(record.get(score))
        label = f"{where} ({keys[0] if keys else 'no name'})"
        if not keys:
            skipped.append(f"{label}: no video name")
        elif why:
            error = _text(record.get("error"))
            skipped.append(f"{label}: {why}" + (f" (error: {error})" if error else ""))
        else:
            rows.append({"where": where, "names": keys, "score": value})
    if not rows:
        raise PredictionError(f"{file}: no row with a name and a numeric {score!r}")
    table = pd.DataFrame(rows, columns=["where", "names", "score"])
    return PredictionTable(file, score, table, skipped)


def _records(file: Path) -> tuple[list[str], list[tuple[str, dict]], bool]:
    """Column names, rows as (where, {column: value}), and whether the file had a header."""
    if file.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(file)
        except (OSError, ValueError) as err:
            raise PredictionError(f"{file}: cannot read as parquet ({err})") from err
        header = [str(c) for c in frame.columns]
        records = frame.set_axis(header, axis=1).to_dict("records")
        return header, [(f"row {i}", r) for i, r in enumerate(records, 1)], True
    try:
        text = file.read_text(encoding="utf-8-sig")  # -sig: spreadsheet exports start with a BOM
    except (OSError, UnicodeDecodeError) as err:
        raise PredictionError(f"{file}: cannot read the prediction table ({err})") from err
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    if not lines:
        raise PredictionError(f"{file}: empty prediction table")
    delimiter = "\t" if lines[0][1].count("\t") > lines[0][1].count(",") else ","
    cells = [
        [c.strip() for c in next(csv.reader(io.StringIO(ln), delimiter=delimiter))]
        for _, ln in lines
    ]
    # a header is a first row without any number in it; every data row has its score
    has_header = not any(_number(c)[1] is None for c in cells[0])
    header = cells[0] if has_header else [str(i) for i in range(len(cells[0]))]
    body = zip(lines[1:], cells[1:], strict=True) if has_header else zip(lines, cells, strict=True)
    records = []
    for (n, _), row in body:
        if len(row) != len(header):
            raise PredictionError(f"{file}:{n}: expected {len(header)} fields, found {len(row)}")
        records.append((f"line {n}", dict(zip(header, row, strict=True))))
    return header, records, has_header


def _key(column: str) -> str:
    return column.strip().lower().replace(" ", "_")


def _present(header: Sequence[str]) -> list[str]:
    keys = {_key(h): h for h in reversed(header)}
    return [keys[c] for c in NAME_COLUMNS if c in keys]


def _pick(file: Path, header: Sequence[str], wanted: str) -> str:
    keys = {_key(h): h for h in reversed(header)}
    if _key(wanted) not in keys:
        raise PredictionError(f"{file}: no column {wanted!r}; columns: {', '.join(header)}")
    return keys[_key(wanted)]


def _score_column(file: Path, header: Sequence[str]) -> str:
    keys = {_key(h): h for h in reversed(header)}
    for wanted in SCORE_COLUMNS:
        if wanted in keys:
            return keys[wanted]
    overall = [h for h in header if _key(h).startswith("overall")]  # DOVER's overall/final score
    if len(overall) == 1:
        return overall[0]
    raise PredictionError(
        f"{file}: no score column ({', '.join(SCORE_COLUMNS)}, or DOVER's overall score; "
        f"columns: {', '.join(header)}); choose one with --score_column"
    )


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _number(value: object) -> tuple[float, str | None]:
    text = _text(value)
    if not text:
        return math.nan, "no score"
    try:
        number = float(text)
    except ValueError:
        return math.nan, f"score {text!r} is not a number"
    return (number, None) if math.isfinite(number) else (math.nan, f"score is {text}")


# ---------------------------------------------------------------------------------------------
# Matching names to a label list


def name_parts(name: str) -> tuple[str, ...]:
    """A name's folders and file name, compared without case, video extensions stripped from the
    file name (all of them: LSVQ's `Some_Name.mov` is on disk as `Some_Name.mov.mp4`)."""
    parts = [p for p in name.strip().replace("\\", "/").casefold().split("/") if p not in ("", ".")]
    if not parts:
        return ()
    last = parts[-1]
    while Path(last).suffix in VIDEO_EXTENSIONS and Path(last).stem:
        last = Path(last).stem
    return (*parts[:-1], last)


class LabelIndex:
    """Finds the labelled video a name refers to, among a set's video ids and label-file names."""

    def __init__(self, names: Sequence[Sequence[str]]) -> None:
        """names: per labelled video (by position), every name it goes by (id, listed paths)."""
        self._by_stem: dict[str, list[tuple[tuple[str, ...], int]]] = {}
        for index, aliases in enumerate(names):
            for parts in dict.fromkeys(name_parts(a) for a in aliases if a):
                if parts:
                    self._by_stem.setdefault(parts[-1], []).append((parts, index))

    def find(self, name: str) -> tuple[int | None, str | None]:
        """(the labelled video's position, None), or (None, why no single one fits)."""
        parts = name_parts(name)
        candidates = self._by_stem.get(parts[-1], []) if parts else []
        if not candidates:
            return None, NO_MATCH
        shared = {}
        for aliases, index in candidates:
            n = _shared_tail(parts, aliases)
            shared[index] = max(shared.get(index, 0), n)
        best = max(shared.values())
        winners = sorted(i for i, n in shared.items() if n == best)
        if len(winners) > 1:
            return None, f"ambiguous: fits {len(winners)} labelled videos"
        return winners[0], None


def _shared_tail(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


@dataclass(frozen=True)
class Matching:
    """A prediction table matched to labelled sets: what is scored and what is not, named."""

    scores: pd.DataFrame  # video_id (a set's), score: one row per labelled video matched
    matched: dict[str, int]  # per set, labelled videos with a prediction
    without: dict[str, list[str]]  # per set, the video ids of labelled videos without one
    unmatched: list[str]  # "<where> (<name>): <why>" for rows that fit no labelled video
    repeated: list[str]  # rows that fit a video an earlier row already fitted (left out)


def match_predictions(table: PredictionTable, sets: Mapping[str, pd.DataFrame]) -> Matching:
    """Match every row of `table` to the labelled videos of each set (`video_id`, `names`); a
    row may fit videos of several sets, and counts as unmatched only when it fits none."""
    indexes = {name: LabelIndex(labels.names.tolist()) for name, labels in sets.items()}
    found: dict[str, dict[int, int]] = {name: {} for name in sets}  # video position -> row
    unmatched, repeated = [], []
    for i, row in enumerate(table.rows.itertuples()):
        reasons, fits = [], False
        for name, index in indexes.items():
            position = None
            for alias in row.names:
                position, why = index.find(alias)
                if position is not None:
                    break
                reasons.append(why)
            if position is None:
                continue
            fits = True
            first = found[name].setdefault(position, i)
            if first != i:
                video, earlier = sets[name].video_id.iloc[position], table.rows["where"].iloc[first]
                repeated.append(f"{row.where} ({row.names[0]}): {video} again (first at "
                                f"{earlier}); left out")  # fmt: skip
        if not fits:
            why = next((r for r in reasons if r.startswith("ambiguous")), NO_MATCH)
            unmatched.append(f"{row.where} ({row.names[0]}): {why}")
    scores = pd.DataFrame(
        [(sets[name].video_id.iloc[p], table.rows.score.iloc[i])
         for name, hits in found.items() for p, i in hits.items()],
        columns=["video_id", "score"],
    )  # fmt: skip
    without = {
        name: [v for p, v in enumerate(sets[name].video_id) if p not in found[name]]
        for name in sets
    }
    return Matching(scores, {n: len(f) for n, f in found.items()}, without, unmatched, repeated)
