"""Readers for the published file formats of the real data sets.

Each reader turns a file into numpy arrays and nothing more; a malformed file
raises :class:`DataError` with one line naming the file (and the line, for text
tables). No reader downloads anything.
"""

import csv
import math
import re
import warnings
from pathlib import Path

import numpy as np

from admmlab.data.base import DataError

# Tokens that mean "no value" in a table cell: such records are incomplete.
MISSING = frozenset({"", "na", "nan", "null", "none"})
DELIMITERS = ("\t", ",", ";")
_PGM_FIELD = re.compile(rb"(?:\s|#[^\n]*(?:\n|$))+(\d+)")  # separator(s), then a number


def sniff_delimiter(header: str, path: Path) -> str:
    """The delimiter of a header line: whichever of tab, comma, semicolon it uses most."""
    counts = {d: header.count(d) for d in DELIMITERS}
    best = max(counts, key=counts.__getitem__)
    if counts[best] == 0:
        raise DataError(f"{path} line 1: expected a tab- or comma-separated header, got {header!r}")
    return best


def read_table(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A delimited text table with a header: the column names and ``(line, fields)`` rows."""
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        header = handle.readline()
        delimiter = sniff_delimiter(header, path)
        handle.seek(0)
        reader = csv.reader(handle, delimiter=delimiter)
        names = [name.strip() for name in next(reader)]
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    return names, rows


def parse_number(text: str, path: Path, line: int, column: str) -> float:
    """A finite float, or NaN for a missing cell; anything else is a malformed row."""
    text = text.strip()
    if text.lower() in MISSING:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise DataError(f"{path} line {line}: column {column} must be a number, got {text!r}")
    return value


def read_numeric_csv(path: Path) -> np.ndarray:
    """A header-less comma-separated table of numbers with a fixed number of columns."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # an empty file: reported below
            array = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        _raise_first_bad_line(path)
        raise DataError(f"{path}: {str(err).splitlines()[0]}") from None
    if array.size == 0:
        raise DataError(f"{path}: the file holds no rows")
    if not np.isfinite(array).all():
        line = int(np.nonzero(~np.isfinite(array).all(axis=1))[0][0]) + 1
        raise DataError(f"{path} line {line}: every value must be a finite number")
    return array


def _raise_first_bad_line(path: Path) -> None:
    """numpy only says *that* a row is bad; find which one, for the user."""
    width = None
    with path.open(errors="replace", newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            width = width or len(row)
            if len(row) != width:
                raise DataError(
                    f"{path} line {line}: expected {width} comma-separated values "
                    f"(as line 1), got {len(row)}"
                )
            for cell in row:
                try:
                    float(cell)
                except ValueError:
                    raise DataError(
                        f"{path} line {line}: expected numbers only, got {cell.strip()!r}"
                    ) from None


def read_pgm(path: Path) -> np.ndarray:
    """A greyscale PGM image, binary (P5) or plain (P2), as a float64 ``(height, width)``."""
    data = path.read_bytes()
    magic = data[:2]
    if magic not in (b"P5", b"P2"):
        raise DataError(f"{path}: not a PGM image (expected magic P5 or P2, got {magic!r})")
    (width, height, maxval), end = _pgm_header(data, path)
    count = width * height
    if magic == b"P5":
        dtype = np.dtype(">u2" if maxval > 255 else "u1")
        body = data[end + 1 : end + 1 + count * dtype.itemsize]  # one whitespace byte, then pixels
        if len(body) < count * dtype.itemsize:
            raise DataError(f"{path}: truncated PGM: {width}x{height} pixels expected")
        pixels = np.frombuffer(body, dtype=dtype)
    else:
        tokens = re.sub(rb"#[^\n]*", b"", data[end:]).split()
        if len(tokens) < count or not all(t.isdigit() for t in tokens[:count]):
            raise DataError(f"{path}: plain PGM must hold {count} integer pixels")
        pixels = np.array([int(t) for t in tokens[:count]])
    return pixels.reshape(height, width).astype(np.float64)


def _pgm_header(data: bytes, path: Path) -> tuple[tuple[int, int, int], int]:
    """Width, height and maxval after the magic (comments allowed), and where they end."""
    fields, position = [], 2
    for _ in range(3):
        match = _PGM_FIELD.match(data, position)
        if match is None:
            raise DataError(f"{path}: malformed PGM header (width, height, maxval expected)")
        fields.append(int(match.group(1)))
        position = match.end()
    width, height, maxval = fields
    if min(fields) <= 0 or maxval > 65535:
        raise DataError(f"{path}: malformed PGM header {width}x{height}, maxval {maxval}")
    return (width, height, maxval), position
