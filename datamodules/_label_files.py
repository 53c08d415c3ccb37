"""Plumbing for reading label files: text, CSV, .xlsx and MATLAB .mat, each failure a DatasetError
naming the file; which of those a file is, from its content; and the cell-level clean-up (relative
paths, paths from another machine, empty cells) the readers share."""

from __future__ import annotations

import csv
import io
import math
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from datamodules.errors import UserError


class DatasetError(UserError, ValueError):
    """A dataset cannot be loaded; the message names the file or folder and says why."""

    __module__ = "datamodules.datasets"  # its public home: tracebacks and docs name it there


# The formats a label file can be in, as `sniff` names them, and how an error message names them.
FORMATS = {
    "csv": "CSV table with a header",
    "list": "headerless text list",
    "xlsx": ".xlsx workbook",
    "parquet": "parquet table",
    "info_mat": "VSFA-style .mat (video_names, scores, index)",
    "mat": "LIVE-style .mat (video_list, mos)",
}
# A file whose name claims a binary format is read as that format even if its content is not one,
# so that a damaged .mat or .xlsx says "cannot read as ..." rather than being parsed as text.
_BY_SUFFIX = {".mat": "mat", ".xlsx": "xlsx", ".xlsm": "xlsx", ".parquet": "parquet"}


def sniff(path: Path) -> str:
    """The format of a label file (a key of FORMATS), from its first bytes (MATLAB's text header,
    a zip for .xlsx, parquet's magic), its variables for a .mat, its first line for text: a line
    with a number in it is data, so the file has no header."""
    try:
        with path.open("rb") as f:
            head = f.read(128)
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err})") from err
    if head.startswith(b"MATLAB"):
        kind = "mat"
    elif head.startswith(b"PK\x03\x04"):
        kind = "xlsx"
    elif head.startswith(b"PAR1"):
        kind = "parquet"
    else:
        kind = _BY_SUFFIX.get(path.suffix.lower(), "text")
    if kind == "mat":
        return "info_mat" if {"video_names", "scores"} <= set(read_mat(path)) else "mat"
    if kind != "text":
        return kind
    first = next((ln for ln in read_text(path).splitlines() if ln.strip()), "")
    return "list" if any(is_number(c) for c in re.split(r"[,;\t ]+", first)) else "csv"


def is_number(text: str) -> bool:
    """Whether `text` parses as a float (a header line has none; a data line does)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err})") from err
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # label files saved by older Windows tools


def text_lines(path: Path) -> list[tuple[str, str]]:
    return [(f"line {i}", ln) for i, ln in enumerate(read_text(path).splitlines(), 1) if ln.strip()]


def read_csv(path: Path) -> tuple[list[str], list[tuple[str, dict[str, str]]], str]:
    """Header, rows as (where, {column: text}) and the delimiter: the commonest of , ; tab in the
    first line. Rows whose cells are all empty (CVD2014's `;;;;;;;`) are skipped."""
    text = read_text(path)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
    header: list[str] | None = None
    rows = []
    try:
        for cells in reader:
            cells = [c.strip() for c in cells]
            if not any(cells):
                continue
            if header is None:
                header = cells
                continue
            cells += [""] * (len(header) - len(cells))
            rows.append((f"line {reader.line_num}", dict(zip(header, cells, strict=False))))
    except csv.Error as err:
        raise DatasetError(f"{path}: cannot read as CSV ({err})") from err
    if header is None:
        raise DatasetError(f"{path}: empty label file")
    return header, rows, delimiter


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name).lower()  # "MOS full" == "MOSFull", "Realignment MOS" ...


def column(path: Path, header: Sequence[str], *wanted: str, required: bool = True) -> str | None:
    """The header's name for the first of `wanted` it has, compared without case, spaces, _ or -."""
    keys = {_key(h): h for h in reversed(header)}
    for name in wanted:
        if _key(name) in keys:
            return keys[_key(name)]
    if required:
        raise DatasetError(
            f"{path}: no {' or '.join(map(repr, wanted))} column (columns: {', '.join(header)})"
        )
    return None


def read_xlsx(path: Path, sheet: str) -> tuple[list[str], list[tuple[str, dict[str, object]]]]:
    import openpyxl
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, InvalidFileException) as err:
        raise DatasetError(f"{path}: cannot read as an .xlsx workbook ({err})") from err
    try:
        if sheet not in book.sheetnames:
            raise DatasetError(f"{path}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})")
        values = book[sheet].iter_rows(values_only=True)
        header = [str(v).strip() if v is not None else "" for v in next(values, ())]
        rows = [
            (f"row {i}", dict(zip(header, cells, strict=False)))
            for i, cells in enumerate(values, 2)
            if any(c is not None and str(c).strip() for c in cells)
        ]
    finally:
        book.close()
    return header, rows


def read_mat(path: Path) -> dict[str, object]:
    """A .mat file's variables, names lower-cased: MATLAB v5 through scipy, v7.3 through h5py."""
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        data = scipy.io.loadmat(path)
    except NotImplementedError:  # v7.3 is HDF5, which scipy leaves to h5py
        return _mat73(path)
    except (MatReadError, ValueError, TypeError, OSError) as err:
        raise DatasetError(f"{path}: cannot read as a MATLAB .mat file ({err})") from err
    return {k.lower(): v for k, v in data.items() if not k.startswith("__")}


def _mat73(path: Path) -> dict[str, object]:
    try:
        import h5py
    except ImportError:
        raise DatasetError(
            f"{path}: a MATLAB v7.3 (HDF5) file; reading it needs h5py (pip install h5py)"
        ) from None

    def value(node: h5py.Dataset) -> object:
        data = node[()]
        if h5py.check_dtype(ref=node.dtype) is not None:  # a cell array: references
            return np.array([value(node.file[ref]) for ref in np.ravel(data)], dtype=object)
        if node.attrs.get("MATLAB_empty"):
            return ""
        if node.attrs.get("MATLAB_class") in (b"char", "char"):
            return "".join(map(chr, np.ravel(data)))  # UTF-16 code units, one string per vector
        return np.asarray(data).T  # HDF5 holds MATLAB's column-major array with its axes reversed

    try:
        with h5py.File(path, "r") as f:
            return {k.lower(): value(f[k]) for k in f if isinstance(f[k], h5py.Dataset)}
    except (OSError, KeyError, ValueError) as err:
        raise DatasetError(f"{path}: cannot read as a MATLAB v7.3 file ({err})") from err


def mat_strings(value: object) -> list[str]:
    """A cell array of strings (or a char matrix) as a list of str."""

    def one(x: object) -> str:
        while isinstance(x, np.ndarray):
            if x.size == 0:
                return ""
            if x.dtype.kind == "U":
                return "".join(x.ravel()).strip()
            x = x.ravel()[0]
        return str(x).strip()

    arr = np.asarray(value)
    if arr.dtype == object:  # a cell array
        return [one(x) for x in arr.ravel()]
    if arr.dtype.kind in "fiu":  # numeric names (KoNViD's flickr_id column saved as is)
        return [f"{v:.0f}" if float(v).is_integer() else f"{v:g}" for v in arr.ravel()]
    return [str(s).strip() for s in arr.ravel()]  # a char matrix, one name per row


def rel_path(name: str) -> str:
    name = name.strip().replace("\\", "/")
    return os.path.normpath(name).replace(os.sep, "/") if name else ""


def tails(name: str) -> tuple[str, ...]:
    """The relative paths a listed name may have under a dataset's root: a relative path as itself;
    an absolute one (written on the machine that made the file: `/home/x/db/AV1/a.mp4`,
    `E:\\db\\a.mp4`) as its trailing components, longest first, so the deepest match wins."""
    name = name.strip().replace("\\", "/")
    if not (name.startswith("/") or re.match(r"[A-Za-z]:/", name)):
        return (rel_path(name),)
    parts = [p for p in name.split("/")[1:] if p]  # without the "" or "E:" before the first /
    return tuple("/".join(parts[i:]) for i in range(len(parts)))


def cell_text(value: object) -> str:
    """A name cell as text: "" for an empty cell (None, or NaN from a parquet or workbook)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()
